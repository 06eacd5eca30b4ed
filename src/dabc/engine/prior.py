"""Priors: independent scipy.stats distributions, one per named parameter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.stats

from .._compat.scipy import parse_args
from ..errors import InputError

# Fast per-draw samplers for common distributions: scipy's rvs costs ~20 us per call,
# a numpy Generator method under 1 us. Each maps (rng, loc, scale, *shape args) -> float.
_FAST = {
    "norm": lambda rng, loc, scale: rng.normal(loc, scale),
    "uniform": lambda rng, loc, scale: loc + scale * rng.random(),
    "expon": lambda rng, loc, scale: loc + scale * rng.standard_exponential(),
    "lognorm": lambda rng, loc, scale, s: loc + scale * np.exp(s * rng.standard_normal()),
    "gamma": lambda rng, loc, scale, a: loc + scale * rng.standard_gamma(a),
    "beta": lambda rng, loc, scale, a, b: loc + scale * rng.beta(a, b),
    "laplace": lambda rng, loc, scale: rng.laplace(loc, scale),
}


class RV:
    """A named scipy.stats distribution, e.g. ``RV("norm", 0, 1)`` or ``RV("uniform", -1, 2)``.

    Parameters
    ----------
    name : str
        The name of a continuous or discrete distribution of :mod:`scipy.stats`, such as
        ``"norm"``, ``"uniform"``, ``"gamma"``, ``"beta"``, ``"lognorm"`` or ``"randint"``.
    *args
        Its shape arguments, then ``loc`` and ``scale``, exactly as scipy documents them.
    **kwargs
        The same by keyword (``loc=``, ``scale=``, shape names).

    Raises
    ------
    InputError
        When scipy.stats has no such distribution, or rejects the arguments.

    Examples
    --------
    >>> import dabc
    >>> dabc.RV("uniform", -1, 2).upper  # uniform on [loc, loc + scale]
    1.0
    """

    def __init__(self, name: str, *args, **kwargs):
        dist = getattr(scipy.stats, name, None)
        if not isinstance(dist, scipy.stats.rv_continuous | scipy.stats.rv_discrete):
            raise InputError(
                f"RV({name!r}): no such scipy.stats distribution; use a name such as "
                "'norm', 'uniform', 'gamma', 'beta', 'lognorm' or 'randint'."
            )
        try:
            self.frozen = dist(*args, **kwargs)
            self.frozen.support()
        except Exception as exc:  # scipy raises many types for bad shape arguments
            raise InputError(f"RV({name!r}, {args}, {kwargs}): {exc}") from exc
        self.name, self.args, self.kwargs = name, args, kwargs
        self.discrete = isinstance(dist, scipy.stats.rv_discrete)
        lo, hi = self.frozen.support()
        self.lower, self.upper = float(lo), float(hi)
        self._fast = self._fast_sampler()

    def _fast_sampler(self):
        fn = _FAST.get(self.name)
        if fn is None:
            return None
        shapes = self.frozen.dist.shapes
        n_shapes = len(shapes.split(",")) if shapes else 0
        try:
            shape_args, loc, scale = parse_args(self.frozen.dist, self.args, self.kwargs)
        except Exception:
            return None
        if len(shape_args) != n_shapes:
            return None
        loc, scale = float(loc), float(scale)
        shape_args = tuple(float(a) for a in shape_args)
        return lambda rng: fn(rng, loc, scale, *shape_args)

    def __reduce__(self):
        return _rebuild_rv, (self.name, self.args, self.kwargs)

    def get_config(self) -> dict[str, Any]:
        """How stored runs describe this distribution: its scipy.stats name and arguments.

        Returns
        -------
        dict
            ``{"distribution": name, "args": [...], "kwargs": {...}}``; ``RV(name, *args,
            **kwargs)`` rebuilds it.
        """
        return {"distribution": self.name, "args": list(self.args), "kwargs": dict(self.kwargs)}

    def draw(self, rng: np.random.Generator) -> float:
        """One draw, using a fast numpy path for common distributions.

        Parameters
        ----------
        rng : numpy.random.Generator
            The random stream.

        Returns
        -------
        float
        """
        if self._fast is not None:
            return float(self._fast(rng))
        return float(self.frozen.rvs(random_state=rng))

    def rvs(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` draws as a float array.

        Parameters
        ----------
        size : int
            How many.
        rng : numpy.random.Generator
            The random stream.

        Returns
        -------
        numpy.ndarray
            Shape (size,).
        """
        return np.asarray(self.frozen.rvs(size=size, random_state=rng), dtype=float)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density (log mass for discrete distributions).

        Parameters
        ----------
        x : numpy.ndarray
            Values.

        Returns
        -------
        numpy.ndarray
            Same shape as ``x``; ``-inf`` outside the support.
        """
        if self.discrete:
            return self.frozen.logpmf(x)
        return self.frozen.logpdf(x)

    def __repr__(self) -> str:
        args = ", ".join([repr(self.name)] + [repr(a) for a in self.args]
                         + [f"{k}={v!r}" for k, v in self.kwargs.items()])
        return f"RV({args})"


def _rebuild_rv(name, args, kwargs) -> RV:
    return RV(name, *args, **kwargs)


def _as_rv(name: str, value) -> RV:
    if isinstance(value, RV):
        return value
    if hasattr(value, "dist") and hasattr(value, "rvs") and hasattr(value, "support"):
        rv = RV.__new__(RV)  # a frozen scipy distribution given directly
        rv.frozen, rv.name, rv.args, rv.kwargs = value, value.dist.name, value.args, value.kwds
        rv.discrete = isinstance(value.dist, scipy.stats.rv_discrete)
        lo, hi = value.support()
        rv.lower, rv.upper = float(lo), float(hi)
        rv._fast = rv._fast_sampler()
        return rv
    raise InputError(
        f"Prior parameter {name!r} is {value!r} ({type(value).__name__}), not a distribution. "
        f"Write {name}=dabc.RV('norm', 0, 1) or pass a frozen scipy.stats distribution."
    )


class Prior:
    """Independent priors on named parameters: ``Prior(theta=RV("norm", 0, 1), ...)``.

    Parameters
    ----------
    mapping : mapping or None, default None
        Parameter name -> distribution, for names that are not Python identifiers or to
        keep an order built elsewhere (positional only).
    **rvs
        Parameter name -> distribution: an :class:`RV` or a frozen scipy.stats
        distribution. Parameters are ordered as given, ``mapping`` first.

    Raises
    ------
    InputError
        When no parameter is given, a value is not a distribution, or a name is given twice
        (in ``mapping`` and as a keyword, or twice in ``mapping`` once names are strings).

    Examples
    --------
    >>> import dabc
    >>> prior = dabc.Prior({"log k": dabc.RV("norm", 0, 1)}, sigma=dabc.RV("gamma", 2))
    >>> prior.names
    ['log k', 'sigma']
    """

    def __init__(self, mapping: Mapping | None = None, /, **rvs):
        items: dict[str, Any] = {}
        for source, pairs in (("the mapping", (mapping or {}).items()),
                              ("the keyword arguments", rvs.items())):
            for k, v in pairs:
                name = str(k)
                if name in items:
                    raise InputError(
                        f"Prior: parameter {name!r} is given twice (again in {source}); each "
                        "parameter needs exactly one distribution: remove one of them.")
                items[name] = v
        if not items:
            raise InputError("Prior() needs at least one parameter, e.g. "
                             "Prior(x=RV('norm', 0, 1)).")
        self.dists = {k: _as_rv(k, v) for k, v in items.items()}
        self.names = list(self.dists)
        self._lower = np.array([rv.lower for rv in self.dists.values()])
        self._upper = np.array([rv.upper for rv in self.dists.values()])

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return len(self.names)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One parameter vector, in the order of ``names``.

        Parameters
        ----------
        rng : numpy.random.Generator
            The random stream.

        Returns
        -------
        numpy.ndarray
            Shape (dim,).
        """
        return np.array([rv.draw(rng) for rv in self.dists.values()])

    def rvs(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` parameter vectors as a (size, dim) array.

        Parameters
        ----------
        size : int
            How many.
        rng : numpy.random.Generator
            The random stream.

        Returns
        -------
        numpy.ndarray
        """
        return np.column_stack([rv.rvs(size, rng) for rv in self.dists.values()])

    def in_support(self, theta: np.ndarray) -> np.ndarray | bool:
        """Whether theta (one vector or rows) has positive prior density (bounds only).

        Parameters
        ----------
        theta : numpy.ndarray
            Shape (dim,) or (n, dim).

        Returns
        -------
        bool or numpy.ndarray
            One answer, or one per row.
        """
        ok = (theta >= self._lower) & (theta <= self._upper)
        return ok.all(axis=-1)

    def logpdf(self, theta: np.ndarray) -> np.ndarray:
        """Joint log density of each row of ``theta``.

        Parameters
        ----------
        theta : numpy.ndarray
            Shape (n, dim) (or (dim,) for one vector).

        Returns
        -------
        numpy.ndarray
            Shape (n,).
        """
        theta = np.atleast_2d(theta)
        return sum(rv.logpdf(theta[:, j]) for j, rv in enumerate(self.dists.values()))

    def __repr__(self) -> str:
        return "Prior(" + ", ".join(f"{k}={v!r}" for k, v in self.dists.items()) + ")"
