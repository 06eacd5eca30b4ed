"""The one private name of scikit-learn dabc uses, behind one door.

:class:`dabc.learn.SAGAClassifier` takes ``decision_function`` and ``predict`` for numpy and
scipy inputs from ``sklearn.linear_model._base.LinearClassifierMixin``, the mixin of
scikit-learn's own linear classifiers (``LogisticRegression``, ``SGDClassifier``), so that its
predictions follow scikit-learn's exactly (input validation, sparse products, the shape of the
scores, the labels returned). scikit-learn does not export the mixin publicly.

Relies on: the module ``sklearn.linear_model._base`` defining ``LinearClassifierMixin``, a
``ClassifierMixin`` whose methods read ``coef_``, ``intercept_`` and ``classes_``. Checked on
scikit-learn 1.9.1 (the version installed when this was written; the mixin has had this name and
place since scikit-learn 0.22, and dabc.learn needs scikit-learn >= 1.6 for ``validate_data``).

Fallback, when the private module or name is gone: :class:`LinearClassifierFallback`, the same
two methods written with public scikit-learn API only (``validate_data``, ``safe_sparse_dot``),
for numpy and scipy.sparse inputs (the inputs dabc.learn takes besides Dask arrays, which it
handles itself). ``tests/test_compat.py`` checks that it returns the same as the private mixin.
Which one is in use is :data:`USES_PRIVATE`; the fallback is logged once (``dabc.learn``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["LinearClassifierMixin", "LinearClassifierFallback", "USES_PRIVATE"]

log = logging.getLogger("dabc.learn")


class LinearClassifierFallback(ClassifierMixin):
    """``decision_function`` and ``predict`` of a linear classifier from public API only.

    Reads the fitted attributes ``coef_`` (k x n_features), ``intercept_`` (k) and ``classes_``.
    """

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores ``X coef_^T + intercept_``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        numpy.ndarray
            Shape (n_samples,) when ``coef_`` has one row, else (n_samples, k).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` is not valid input (wrong number of features, NaN, ...).
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        coef_t = self.coef_.T if self.coef_.ndim == 2 else self.coef_
        scores = safe_sparse_dot(X, coef_t, dense_output=True) + self.intercept_
        return scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest score (of a positive score, for one row of ``coef_``).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        numpy.ndarray
            Shape (n_samples,), values from ``classes_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        """
        scores = self.decision_function(X)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return np.take(self.classes_, indices, axis=0)


try:
    from sklearn.linear_model._base import LinearClassifierMixin

    USES_PRIVATE = True
except ImportError:  # pragma: no cover - only on a scikit-learn that moved the mixin
    LinearClassifierMixin = LinearClassifierFallback
    USES_PRIVATE = False
    log.info("sklearn.linear_model._base.LinearClassifierMixin not found (checked on "
             "scikit-learn 1.9.1): SAGAClassifier predicts with dabc's public-API fallback")
