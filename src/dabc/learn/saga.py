"""SAGA estimators: ridge / lasso / elastic-net regression and logistic regression.

Both estimators minimise, over coefficients ``W`` (k x n_features) and intercepts ``b`` (k)::

    F(W, b) = (1/n) sum_i loss(W x_i + b, y_i) + alpha * (l1_ratio |W|_1 + (1 - l1_ratio)/2 |W|_F^2)

with ``l1_ratio`` forced to 0 for ``penalty="l2"`` and to 1 for ``penalty="l1"``, and
``alpha = 0`` for ``penalty=None``. The intercept is not penalised. Losses:

* :class:`SAGARegressor`: ``loss(z, y) = |z - y|^2 / 2`` (``k`` outputs, each with its own row
  of ``W``).
* :class:`SAGAClassifier`: binary ``loss = log(1 + exp(-s z))`` with ``s = +-1`` (``k = 1``);
  multinomial ``loss = logsumexp(z) - z_y`` over all ``k = n_classes`` rows (no reference class).

This is scikit-learn's per-sample scaling (as in ``ElasticNet`` and ``SGDRegressor``). The same
problem in scikit-learn's own parametrisations is

* ``Ridge(alpha=A, solver="saga")`` (``|y - Xw|^2 + A |w|^2``): ``alpha = A / n``, ``"l2"``;
* ``Lasso(alpha=A)`` / ``ElasticNet(alpha=A, l1_ratio=r)``: ``alpha = A``, same ``l1_ratio``;
* ``LogisticRegression(C=C, l1_ratio=r, solver="saga")`` (``C sum_i loss_i + r |w|_1 +
  (1 - r)/2 |w|^2``): ``alpha = 1 / (C n)``, same ``l1_ratio``.

:meth:`objective` evaluates ``F`` for any data, so fits can be compared directly.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._compat.sklearn import LinearClassifierMixin
from . import _core
from .kernels import LOGISTIC, MULTINOMIAL, SQUARED

__all__ = ["SAGARegressor", "SAGAClassifier"]

_PENALTIES = ("l2", "l1", "elasticnet", None)


def _is_dask(X: Any) -> bool:
    """True for a ``dask.array.Array`` (without importing dask when it is not loaded)."""
    import sys

    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


class _BaseSAGA(BaseEstimator):
    """Parameters, validation and the solver loop shared by both estimators."""

    def __init__(self, *, alpha: float = 1e-4, penalty: str | None = "l2",
                 l1_ratio: float = 0.15, fit_intercept: bool = True, max_iter: int = 1000,
                 tol: float = 1e-4, random_state: int | np.random.RandomState | None = None):
        self.alpha = alpha
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # --- validation -------------------------------------------------------------------
    def _penalty_weights(self) -> tuple[float, float]:
        """Validate the parameters; return ``(a1, a2)`` = alpha times the L1 and L2 shares."""
        name = type(self).__name__
        if self.penalty not in _PENALTIES:
            raise ValueError(f"{name}: penalty must be one of 'l2', 'l1', 'elasticnet' or None, "
                             f"got {self.penalty!r}.")
        a = self.alpha
        if (not isinstance(a, numbers.Real) or isinstance(a, bool) or not np.isfinite(a)
                or a < 0):
            raise ValueError(f"{name}: alpha must be a finite number >= 0, got {a!r}.")
        r = self.l1_ratio
        if (not isinstance(r, numbers.Real) or isinstance(r, bool) or not np.isfinite(r)
                or not 0 <= r <= 1):
            raise ValueError(f"{name}: l1_ratio must be a number in [0, 1], got {r!r}.")
        m = self.max_iter
        if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1:
            raise ValueError(f"{name}: max_iter must be an integer >= 1, got {m!r}.")
        t = self.tol
        if not isinstance(t, numbers.Real) or isinstance(t, bool) or not t >= 0:
            raise ValueError(f"{name}: tol must be a number >= 0, got {t!r}.")
        if not isinstance(self.fit_intercept, bool | np.bool_):
            raise ValueError(f"{name}: fit_intercept must be True or False, "
                             f"got {self.fit_intercept!r}.")
        share = {"l2": 0.0, "l1": 1.0, "elasticnet": float(r), None: 0.0}[self.penalty]
        alpha = 0.0 if self.penalty is None else float(a)
        return alpha * share, alpha * (1.0 - share)

    def _validate_X_y(self, X, y, reset: bool, **kw):
        """Validated ``(X, y)``: numpy/CSR through scikit-learn, Dask arrays lazily."""
        if _is_dask(X):
            from .dask import validate_dask

            return validate_dask(self, X, y, reset=reset)
        return validate_data(self, X, y, reset=reset, accept_sparse="csr", dtype=np.float64,
                             order="C", **kw)

    # --- solving ----------------------------------------------------------------------
    def _solve(self, X, Y: np.ndarray, loss: int, k: int, W: np.ndarray, b: np.ndarray,
               partial: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run SAGA from ``(W, b)``; store ``coef``/``intercept`` (2-D) and ``n_iter_``.

        ``partial``: one epoch, the gradient memory initialised at ``(W, b)``; otherwise up to
        ``max_iter`` epochs from a zero memory, stopping by :func:`dabc.learn._core.converged`
        (weights: ``max|change| / max|weight|`` over an epoch at most ``tol``; intercepts the
        same on their own scale). Returns the new ``(W, b)``.
        """
        a1, a2 = self._penalty_weights()
        b_scale = _intercept_scale(Y, loss)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        max_iter, tol = (1, -1.0) if partial else (int(self.max_iter), float(self.tol))
        fit_intercept = bool(self.fit_intercept)
        if _is_dask(X):
            from .dask import solve_dask

            W, b, n_iter, converged = solve_dask(X, Y, loss, k, W, b, a1, a2, fit_intercept,
                                                 max_iter, tol, seed, partial, b_scale)
        else:
            W, b, n_iter, converged = _solve_in_memory(X, Y, loss, k, W, b, a1, a2,
                                                       fit_intercept, max_iter, tol, seed,
                                                       partial, b_scale)
        if not converged and not partial:
            warnings.warn(f"{type(self).__name__} did not converge in max_iter={max_iter} "
                          f"epochs (tol={tol}); increase max_iter or tol.", ConvergenceWarning,
                          stacklevel=3)
        self.n_iter_ = int(n_iter) + (int(getattr(self, "n_iter_", 0)) if partial else 0)
        return W, b

    def _objective_terms(self, X, Y: np.ndarray, loss: int) -> float:
        """``F(coef_, intercept_)`` on validated data."""
        a1, a2 = self._penalty_weights()
        W, b = self._weights()
        if _is_dask(X):
            from .dask import total_loss

            total = total_loss(X, Y, W, b, loss)
        else:
            total = _core.chunk_loss(X, Y, W, b, loss)
        return total / X.shape[0] + _core.penalty(W, a1, a2)

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``coef_`` and ``intercept_`` as (k, n_features) and (k,) float arrays."""
        return (np.atleast_2d(np.asarray(self.coef_, dtype=np.float64)),
                np.atleast_1d(np.asarray(self.intercept_, dtype=np.float64)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _intercept_scale(Y: np.ndarray, loss: int) -> float:
    """The scale against which the intercepts' change is judged when they are near zero: the
    largest standard deviation of the regression targets, one logit for classifiers."""
    if loss != SQUARED:
        return 1.0
    return float(np.max(np.std(Y, axis=0))) if Y.size else 0.0


def _solve_in_memory(X, Y, loss, k, W, b, a1, a2, fit_intercept, max_iter, tol, seed,
                     partial, b_scale):
    """SAGA epochs over one in-memory chunk (numpy array or CSR matrix)."""
    X, Y = _core.kernel_input(X), _core.kernel_array(Y)  # once per fit, not per epoch
    n_rows, max_sq, counts, _ = _core.chunk_stats(X)
    colscale = None
    if counts is not None:
        colscale = np.where(counts > 0, n_rows / np.maximum(counts, 1), 0.0)
    problem = _core.Problem(loss=loss, k=k, a1=a1, a2=a2,
                            step=_core.step_size(loss, max_sq, fit_intercept), n_total=n_rows,
                            fit_intercept=fit_intercept, colscale=colscale)
    if partial:
        mem, sg, sb = _core.chunk_grad_table(X, Y, W, b, loss)
        gbar, gbar_b = sg / n_rows, (sb / n_rows if fit_intercept else np.zeros(k))
    else:
        mem, gbar, gbar_b = None, np.zeros_like(W), np.zeros(k)
    state = (W, b, gbar, gbar_b)
    for epoch in range(max_iter):
        mem, state = _core.chunk_epoch(X, Y, mem, state, _core.epoch_seed(seed, epoch, 0),
                                       problem)
        if _core.converged(W, b, state[0], state[1], tol, b_scale):
            return state[0], state[1], epoch + 1, True
        W, b = state[0], state[1]
    return state[0], state[1], max_iter, False


class SAGARegressor(RegressorMixin, _BaseSAGA):
    """Linear least squares with an L2, L1 or elastic-net penalty, fitted by (proximal) SAGA.

    Minimises ``(1/n) sum_i |W x_i + b - y_i|^2 / 2 + alpha (l1_ratio |W|_1 + (1 - l1_ratio)/2
    |W|_F^2)`` (see the module docstring for the mapping to ``Ridge``/``ElasticNet``). ``y`` may
    be 1-D (``coef_`` (n_features,), ``intercept_`` float) or 2-D (n, k) (``coef_`` (k,
    n_features), ``intercept_`` (k,)), as in ``Ridge``. ``X`` may be a numpy array, a
    ``scipy.sparse`` matrix (CSR kernel, cost per step proportional to the row's nonzeros) or a
    ``dask.array.Array`` (block-sequential over its row chunks on the current
    ``distributed.Client``, or in this process if there is none).

    Parameters
    ----------
    alpha : float, default=1e-4
        Penalty strength (per-sample scaling, like ``ElasticNet``).
    penalty : {"l2", "l1", "elasticnet"} or None, default="l2"
        Regulariser; ``"elasticnet"`` mixes by ``l1_ratio``; ``None`` means ``alpha = 0``.
    l1_ratio : float, default=0.15
        L1 share of the elastic-net penalty (used only for ``penalty="elasticnet"``).
    fit_intercept : bool, default=True
        Fit an unpenalised intercept.
    max_iter : int, default=1000
        Maximum number of epochs (passes over the data).
    tol : float, default=1e-4
        Stop when ``max|weight change| / max|weight|`` over an epoch is at most ``tol`` (the
        criterion of scikit-learn's saga, on the weights only) and the intercepts changed by at
        most ``tol * max(max|intercept|, s)``, ``s`` the largest standard deviation of the
        targets (one logit for the classifier).
    random_state : int, RandomState or None
        Seeds the order in which samples (and Dask chunks) are visited.

    Attributes
    ----------
    coef_, intercept_ : arrays
        Fitted coefficients and intercepts.
    n_iter_ : int
        Epochs run (accumulated over ``partial_fit`` calls).
    n_features_in_ : int
        Number of features seen in ``fit``.

    See Also
    --------
    SAGAClassifier : Logistic regression by the same solver.

    Examples
    --------
    >>> import numpy as np
    >>> from dabc.learn import SAGARegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    >>> SAGARegressor(alpha=1e-6, random_state=0).fit(X, y).coef_.round(1)
    array([ 1. , -2. ,  0.5])
    """

    def fit(self, X, y) -> SAGARegressor:
        """Fit from zero weights and a zero gradient memory.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Training data; sparse input is used as CSR, a Dask array block by block over its
            row chunks.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets; 1-D gives a 1-D ``coef_`` and a float ``intercept_``.

        Returns
        -------
        SAGARegressor
            ``self``, fitted.

        Raises
        ------
        ValueError
            For an invalid parameter (the message names it) or unusable data.
        """
        return self._fit(X, y, partial=False)

    def partial_fit(self, X, y) -> SAGARegressor:
        """One SAGA epoch over ``(X, y)`` starting from the current weights.

        The gradient memory is initialised with the exact gradients at the current weights
        (one extra pass), so repeated calls on the same data converge to the optimum, and calls
        on different batches follow them.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            A batch of training data; sparse input is used as CSR, a Dask array block by
            block over its row chunks.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets, of the same number of outputs on every call.

        Returns
        -------
        SAGARegressor
            ``self``, updated.

        Raises
        ------
        ValueError
            When ``y`` has another number of outputs than on the first call.
        """
        return self._fit(X, y, partial=True)

    def _fit(self, X, y, partial: bool) -> SAGARegressor:
        warm = partial and hasattr(self, "coef_")
        self._penalty_weights()
        X, y = self._validate_X_y(X, y, reset=not warm, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        Y = np.ascontiguousarray(y.reshape(-1, 1) if y.ndim == 1 else y)
        k = Y.shape[1]
        if warm:
            W, b = self._weights()
            if k != W.shape[0] or (y.ndim == 1) != (np.ndim(self.coef_) == 1):
                raise ValueError(f"SAGARegressor.partial_fit: y has shape {y.shape[1:]} per "
                                 f"sample, the model was fitted with "
                                 f"{np.shape(self.intercept_)}.")
        else:
            W, b = np.zeros((k, X.shape[1])), np.zeros(k)
        W, b = self._solve(X, Y, SQUARED, k, W, b, partial)
        if y.ndim == 1:
            self.coef_, self.intercept_ = W[0], float(b[0])
        else:
            self.coef_, self.intercept_ = W, b
        return self

    def predict(self, X):
        """Predicted targets ``X coef_^T + intercept_``.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray or dask.array.Array
            Shape (n_samples,) for 1-D training targets, else (n_samples, n_outputs); lazy for
            a Dask ``X``.
        """
        check_is_fitted(self)
        if _is_dask(X):
            from .dask import map_rows

            cols = None if np.ndim(self.coef_) == 1 else np.shape(self.coef_)[0]
            return map_rows(self.predict, X, cols, np.float64)
        X = validate_data(self, X, reset=False, accept_sparse="csr", dtype=np.float64)
        Z = _core.predictions(X, *self._weights())
        return Z[:, 0] if np.ndim(self.coef_) == 1 else Z

    def objective(self, X, y) -> float:
        """The minimised objective ``F`` (see the module docstring) at the fitted weights.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        float
            Mean loss over the samples plus the penalty, so fits by different solvers can be
            compared directly.
        """
        check_is_fitted(self)
        X, y = self._validate_X_y(X, y, reset=False, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        Y = np.ascontiguousarray(y.reshape(-1, 1) if y.ndim == 1 else y)
        return self._objective_terms(X, Y, SQUARED)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class SAGAClassifier(LinearClassifierMixin, _BaseSAGA):
    """Logistic regression (binary or multinomial) with an L2, L1 or elastic-net penalty, by SAGA.

    Minimises ``(1/n) sum_i loss_i + alpha (l1_ratio |W|_1 + (1 - l1_ratio)/2 |W|_F^2)`` with
    the binary logistic loss (two classes: ``coef_`` (1, n_features), ``intercept_`` (1,)) or
    the multinomial cross-entropy over all classes (``coef_`` (n_classes, n_features)), the
    same model as ``LogisticRegression(C=1 / (alpha n), l1_ratio=..., solver="saga")``.
    Inputs as for :class:`SAGARegressor`.

    Parameters
    ----------
    alpha : float, default=1e-4
        Penalty strength (per-sample scaling: ``LogisticRegression``'s ``C`` is
        ``1 / (alpha n)``).
    penalty : {"l2", "l1", "elasticnet"} or None, default="l2"
        Regulariser; ``"elasticnet"`` mixes by ``l1_ratio``; ``None`` means ``alpha = 0``.
    l1_ratio : float, default=0.15
        L1 share of the elastic-net penalty (used only for ``penalty="elasticnet"``).
    fit_intercept : bool, default=True
        Fit an unpenalised intercept per output.
    max_iter : int, default=1000
        Maximum number of epochs (passes over the data).
    tol : float, default=1e-4
        Stop when ``max|weight change| / max|weight|`` over an epoch is at most ``tol`` and
        the intercepts changed by at most ``tol * max(max|intercept|, 1)``.
    random_state : int, RandomState or None
        Seeds the order in which samples (and Dask chunks) are visited.

    Attributes
    ----------
    classes_ : ndarray
        Class labels, sorted.
    coef_, intercept_ : ndarray
        Fitted weights, shapes (1 or n_classes, n_features) and (1 or n_classes,).
    n_iter_ : int
        Epochs run (accumulated over ``partial_fit`` calls).

    See Also
    --------
    SAGARegressor : Least squares by the same solver.

    Examples
    --------
    >>> import numpy as np
    >>> from dabc.learn import SAGAClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = (X[:, 0] - X[:, 1] > 0).astype(int)
    >>> clf = SAGAClassifier(random_state=0).fit(X, y)
    >>> float(clf.score(X, y)) > 0.95
    True
    """

    def fit(self, X, y) -> SAGAClassifier:
        """Fit from zero weights and a zero gradient memory.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Training data; sparse input is used as CSR, a Dask array block by block over its
            row chunks.
        y : array-like of shape (n_samples,)
            Class labels; at least two distinct ones.

        Returns
        -------
        SAGAClassifier
            ``self``, fitted.

        Raises
        ------
        ValueError
            For an invalid parameter (the message names it), fewer than two classes or
            unusable data.
        """
        return self._fit(X, y, partial=False, classes=None)

    def partial_fit(self, X, y, classes=None) -> SAGAClassifier:
        """One SAGA epoch over ``(X, y)`` from the current weights (memory at those weights).

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            A batch of training data; sparse input is used as CSR, a Dask array block by
            block over its row chunks.
        y : array-like of shape (n_samples,)
            Class labels, each one of ``classes``.
        classes : array-like, optional
            All labels that will ever occur: required on the first call, as for
            ``SGDClassifier``; on later calls, if given, it must name the same labels.

        Returns
        -------
        SAGAClassifier
            ``self``, updated.

        Raises
        ------
        ValueError
            When ``classes`` is missing on the first call or differs later, or ``y`` has a
            label not in ``classes``.
        """
        return self._fit(X, y, partial=True, classes=classes)

    def _fit(self, X, y, partial: bool, classes) -> SAGAClassifier:
        warm = partial and hasattr(self, "coef_")
        self._penalty_weights()
        X, y = self._validate_X_y(X, y, reset=not warm)
        y = np.asarray(y)
        check_classification_targets(y)
        if warm:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError("SAGAClassifier.partial_fit: classes differ from those of "
                                 "the first call.")
            all_classes = self.classes_
        elif partial:
            if classes is None:
                raise ValueError("SAGAClassifier.partial_fit: pass classes= (all labels) on "
                                 "the first call.")
            all_classes = np.unique(classes)
        else:
            all_classes = np.unique(y)
        if all_classes.size < 2:
            raise ValueError(f"SAGAClassifier needs samples of at least 2 classes; got one "
                             f"class: {all_classes[0]!r}." if all_classes.size else
                             "SAGAClassifier: y is empty.")
        idx_c = _encode_labels(all_classes, y, "SAGAClassifier.partial_fit")
        binary = all_classes.size == 2
        loss, k = (LOGISTIC, 1) if binary else (MULTINOMIAL, all_classes.size)
        Y = np.ascontiguousarray(idx_c.astype(np.float64).reshape(-1, 1))
        if warm:
            W, b = self._weights()
        else:
            W, b = np.zeros((k, X.shape[1])), np.zeros(k)
        self.coef_, self.intercept_ = self._solve(X, Y, loss, k, W, b, partial)
        self.classes_ = all_classes
        return self

    def _loss_code(self) -> int:
        return LOGISTIC if self.classes_.size == 2 else MULTINOMIAL

    def decision_function(self, X):
        """Linear scores ``X coef_^T + intercept_``.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray or dask.array.Array
            Shape (n_samples,) for two classes (the score of ``classes_[1]``), else
            (n_samples, n_classes); lazy for a Dask ``X``.
        """
        check_is_fitted(self)
        if _is_dask(X):
            from .dask import map_rows

            cols = None if self.classes_.size == 2 else self.classes_.size
            return map_rows(self.decision_function, X, cols, np.float64)
        return super().decision_function(X)

    def predict(self, X):
        """Most probable class per sample.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray or dask.array.Array
            Labels from ``classes_``, shape (n_samples,); lazy for a Dask ``X``.
        """
        if _is_dask(X):
            from .dask import map_rows

            check_is_fitted(self)
            return map_rows(self.predict, X, None, self.classes_.dtype)
        return super().predict(X)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray or dask.array.Array
            Shape (n_samples, n_classes), columns in the order of ``classes_``; lazy for a
            Dask ``X``.
        """
        check_is_fitted(self)
        if _is_dask(X):
            from .dask import map_rows

            return map_rows(self.predict_proba, X, self.classes_.size, np.float64)
        z = self.decision_function(X)
        if z.ndim == 1:
            p = expit(z)
            return np.column_stack([1.0 - p, p])
        return softmax(z, axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray or dask.array.Array
            Shape (n_samples, n_classes), columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        if _is_dask(X):
            from .dask import map_rows

            return map_rows(self.predict_log_proba, X, self.classes_.size, np.float64)
        z = self.decision_function(X)
        if z.ndim == 1:
            return np.column_stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
        return log_softmax(z, axis=1)

    def objective(self, X, y) -> float:
        """The minimised objective ``F`` (see the module docstring) at the fitted weights.

        Parameters
        ----------
        X : array-like, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
            Data.
        y : array-like of shape (n_samples,)
            Class labels, each one of ``classes_``.

        Returns
        -------
        float
            Mean loss over the samples plus the penalty.

        Raises
        ------
        ValueError
            When ``y`` has a label not in ``classes_``.
        """
        check_is_fitted(self)
        X, y = self._validate_X_y(X, y, reset=False)
        y = np.asarray(y)
        idx_c = _encode_labels(self.classes_, y, "SAGAClassifier.objective")
        Y = np.ascontiguousarray(idx_c.astype(np.float64).reshape(-1, 1))
        return self._objective_terms(X, Y, self._loss_code())


def _encode_labels(classes: np.ndarray, y: np.ndarray, where: str) -> np.ndarray:
    """Index of each label of ``y`` in the sorted ``classes``; a clear ``ValueError`` for labels
    not in ``classes``, including labels of an incomparable type (strings vs numbers)."""
    message = f"{where}: y has labels not in classes {classes.tolist()}."
    try:
        idx = np.searchsorted(classes, y)
        idx_c = np.minimum(idx, classes.size - 1)
        unknown = np.any(classes[idx_c] != y)
    except (TypeError, np.exceptions.DTypePromotionError) as exc:
        raise ValueError(f"{message} (label types {y.dtype} and {classes.dtype} do not "
                         f"compare)") from exc
    if unknown:
        raise ValueError(message)
    return idx_c
