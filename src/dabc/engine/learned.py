"""Learned summary statistics: regress the parameters on the simulated statistics and
compare simulations through the predicted parameters.

A regression from statistics to parameters approximates the posterior mean, which is an
excellent low-dimensional summary: statistics that carry no information about the
parameters get (near) zero coefficients instead of swamping the distance.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .distance import Distance
from .model import StatLayout


class LearnedStatisticsDistance(Distance):
    """Euclidean distance between the parameters predicted from the statistics.

    At each generation in ``fit_generations`` the regressor is fitted to all simulations of
    that generation, accepted and rejected (statistics as features, parameters as targets,
    both standardised), and from the next generation on the distance is
    ``|| f(x) - f(x0) ||``: one coordinate per parameter, in units of that parameter's spread.
    Before the first fit it is the ``initial`` distance. The regression approximates the
    posterior mean, a low-dimensional summary in which statistics that carry no information
    about the parameters get (near) zero coefficients instead of swamping the distance.

    All models of the run must share the same parameter names (checked when the run
    starts). A fit generation with fewer than ``min_simulations`` finished simulations is
    skipped with a warning, and the fit happens at the next generation instead.

    Parameters
    ----------
    regressor : estimator, optional
        Any scikit-learn style regressor with multi-output ``fit``/``predict``; it is cloned
        before each fit. Default: ``dabc.learn.SAGARegressor(alpha=1e-4, tol=1e-4,
        max_iter=1000, random_state=0)`` (extra ``learn``).
    fit_generations : iterable of int, default (0,)
        The generations whose simulations the regressor is fitted to; the fit is used from
        the next generation on. Refitting later (e.g. ``(0, 3)``) adapts the statistics to
        the narrower region the posterior occupies by then.
    initial : Distance, optional
        The distance used until the first fit. Default: the Euclidean
        :class:`PNormDistance`.
    dask_chunks : int, optional
        Fit on a Dask array with row chunks of this size (block-sequential SAGA on the
        cluster of the current Dask client, or a local one), for generations too large for
        one process. Default: fit in this process on NumPy arrays.
    min_simulations : int, default 20
        A fit generation with fewer finished simulations is not used for fitting.

    Raises
    ------
    InputError
        When ``fit_generations`` is empty or names a negative generation.

    See Also
    --------
    dabc.learn.SAGARegressor : The default regressor.
    PNormDistance, AdaptivePNormDistance : Distances on the raw statistics.

    Examples
    --------
    >>> import dabc
    >>> distance = dabc.LearnedStatisticsDistance(fit_generations=(0, 2))
    >>> # dabc.ABCSMC(model, prior, distance=distance)
    """

    def __init__(self, regressor=None, fit_generations: Iterable[int] = (0,),
                 initial: Distance | None = None, dask_chunks: int | None = None,
                 min_simulations: int = 20):
        self.regressor = regressor
        self.fit_generations = sorted({int(t) for t in fit_generations})
        if not self.fit_generations or self.fit_generations[0] < 0:
            raise InputError("LearnedStatisticsDistance: fit_generations must name generations "
                             f"0, 1, ..., got {list(fit_generations)!r}.")
        self.initial = initial
        self.dask_chunks = dask_chunks
        self.min_simulations = int(min_simulations)
        self.fitted_ = None  # (regressor, x mean, x scale) once fitted
        self.fitted_at_: list[int] = []
        self._owed = False  # a fit generation had too few simulations: fit at the next one

    def initialize(self, layout: StatLayout) -> None:
        super().initialize(layout)
        if self.initial is None:
            from .distance import PNormDistance
            self.initial = PNormDistance(2)
        self.initial.initialize(layout)

    def check_priors(self, priors) -> None:
        names = [tuple(p.names) for p in priors]
        if len(set(names)) > 1:
            raise InputError(
                "LearnedStatisticsDistance regresses the parameters on the statistics, so all "
                f"models must have the same parameters; got {[list(n) for n in names]}. Use "
                "one LearnedStatisticsDistance per model comparison with shared parameters, "
                "or another distance.")

    def update(self, stats: np.ndarray, theta: np.ndarray | None = None,
               t: int | None = None) -> None:
        due = t is not None and (t in self.fit_generations or self._owed)
        if not due:
            if self.fitted_ is None:
                self.initial.update(stats, theta, t)
            return
        if theta is None:
            raise InputError("LearnedStatisticsDistance needs the parameters of the simulations.")
        keep = np.all(np.isfinite(stats), axis=1) & np.all(np.isfinite(theta), axis=1)
        if len(keep) and not keep.any() and np.isfinite(stats).all():
            raise InputError("LearnedStatisticsDistance: the simulations' parameters are "
                             "missing (models with different parameters?).")
        x, y = stats[keep], theta[keep]
        if len(x) < self.min_simulations:
            warnings.warn(f"LearnedStatisticsDistance: generation {t} has only {len(x)} finished "
                          f"simulations (min_simulations={self.min_simulations}); fitting at "
                          "the next generation instead.", stacklevel=2)
            self._owed = True
            if self.fitted_ is None:
                self.initial.update(stats, theta, t)
            return
        self.fitted_ = _fit(self._regressor(), x, y, self.dask_chunks)
        self.fitted_at_.append(int(t))
        self._owed = False

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``regressor`` (stored as code), ``fit_generations``,
        ``initial``, ``dask_chunks``, ``min_simulations``.

        Returns
        -------
        dict
        """
        return {"regressor": self.regressor, "fit_generations": list(self.fit_generations),
                "initial": self.initial, "dask_chunks": self.dask_chunks,
                "min_simulations": self.min_simulations}

    def get_state(self) -> dict[str, Any]:
        """What was learned: the generations fitted at, whether a fit is owed, the fitted
        regressor (stored as code) with the statistics' mean and scale, and the state of the
        ``initial`` distance.

        Returns
        -------
        dict
        """
        state: dict[str, Any] = {"fitted_at": list(self.fitted_at_), "owed": self._owed}
        if self.fitted_ is not None:
            reg, xm, xs = self.fitted_
            state.update(regressor=reg, x_mean=xm, x_scale=xs)
        if self.initial is not None:
            state["initial"] = self.initial.get_state()
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (after ``initialize``).

        Parameters
        ----------
        state : mapping
            The fields returned by :meth:`get_state`.

        Raises
        ------
        InputError
            When a fitted regressor comes without the statistics' mean and scale.
        """
        self.fitted_at_ = [int(t) for t in state.get("fitted_at", [])]
        self._owed = bool(state.get("owed", False))
        if "regressor" in state:
            try:
                xm, xs = state["x_mean"], state["x_scale"]
            except KeyError as exc:
                raise InputError("A stored LearnedStatisticsDistance has a fitted regressor "
                                 f"but no {exc}; the database is damaged.") from exc
            self.fitted_ = (state["regressor"], np.asarray(xm), np.asarray(xs))
        else:
            self.fitted_ = None
        if "initial" in state and self.initial is not None:
            self.initial.set_state(state["initial"])

    def _regressor(self):
        if self.regressor is not None:
            from sklearn.base import clone
            return clone(self.regressor)
        try:
            from ..learn import SAGARegressor
        except ImportError as exc:  # numba or scikit-learn missing
            raise InputError("LearnedStatisticsDistance uses dabc.learn.SAGARegressor by "
                             "default: pip install 'dabc[learn]', or pass regressor=...") from exc
        return SAGARegressor(alpha=1e-4, tol=1e-4, max_iter=1000, random_state=0)

    def predict(self, stats: np.ndarray) -> np.ndarray:
        """The learned statistics (standardised predicted parameters) of each row.

        Parameters
        ----------
        stats : numpy.ndarray
            Flat statistics vectors, shape (n, n_statistics) or (n_statistics,).

        Returns
        -------
        numpy.ndarray
            Shape (n, n_parameters).
        """
        reg, xm, xs = self.fitted_
        pred = np.asarray(reg.predict((np.atleast_2d(stats) - xm) / xs))
        return pred.reshape(len(np.atleast_2d(stats)), -1)

    def batch(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        if self.fitted_ is None:
            return self.initial.batch(stats, observed)
        ok = np.all(np.isfinite(stats), axis=1)
        out = np.full(len(stats), np.inf)
        if ok.any():
            diff = self.predict(stats[ok]) - self.predict(observed[None, :])
            out[ok] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out


def _fit(reg, x, y, dask_chunks):
    """Fit ``reg`` on standardised (x, y); returns what ``predict`` needs (predictions stay
    in standardised units, so every parameter weighs the same in the distance)."""
    xm, xs = x.mean(axis=0), x.std(axis=0)
    xs[xs == 0] = 1.0
    ym, ys = y.mean(axis=0), y.std(axis=0)
    ys[ys == 0] = 1.0
    xz, yz = (x - xm) / xs, (y - ym) / ys
    if dask_chunks:
        try:
            import dask.array as da
        except ImportError as exc:
            raise InputError("LearnedStatisticsDistance(dask_chunks=...) needs Dask arrays: "
                             "pip install 'dabc[learn]'.") from exc
        xz = da.from_array(xz, chunks=(int(dask_chunks), xz.shape[1]))
        yz = da.from_array(yz, chunks=(int(dask_chunks), yz.shape[1]))
    reg.fit(xz, yz if yz.shape[1] > 1 else yz[:, 0])
    return reg, xm, xs
