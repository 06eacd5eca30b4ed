"""Priors: independent scipy.stats distributions, one per named parameter."""

from __future__ import annotations

import difflib
import inspect
import itertools
import numbers
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import scipy.stats

from .._compat.scipy import parse_args, shape_domains, shapes_valid
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


@cache
def _distribution_names() -> tuple[str, ...]:
    """The names of every distribution in scipy.stats (what a mistyped one is compared with)."""
    return tuple(sorted(n for n in dir(scipy.stats) if not n.startswith("_") and isinstance(
        getattr(scipy.stats, n, None), scipy.stats.rv_continuous | scipy.stats.rv_discrete)))


def _unknown_distribution(name) -> InputError:
    if not isinstance(name, str):
        return InputError(f"RV({name!r}): the first argument is the name of a scipy.stats "
                          "distribution, e.g. RV('norm', 0, 1); to use a frozen scipy "
                          "distribution, give it to dabc.Prior directly.")
    close = difflib.get_close_matches(name, _distribution_names(), n=3, cutoff=0.6)
    if not close:  # 'Gamma', 'normal', 'lognormal': compare without case, as prefixes
        low = name.lower()
        close = [n for n in _distribution_names() if n == low or low.startswith(n)][:3]
    hint = ""
    if close:
        others = f" (or {', '.join(map(repr, close[1:]))})" if len(close) > 1 else ""
        hint = f" Did you mean {close[0]!r}{others}?"
    return InputError(f"RV({name!r}): no such scipy.stats distribution.{hint} Use a name such "
                      "as 'norm', 'uniform', 'gamma', 'beta', 'lognorm' or 'randint' (any "
                      "distribution of scipy.stats).")


def _call_text(name: str, args: tuple, kwargs: dict) -> str:
    return "RV(" + ", ".join([repr(name), *map(repr, args),
                              *(f"{k}={v!r}" for k, v in kwargs.items())]) + ")"


def _domain_text(d) -> str:
    """"a must be > 0", "p must be in [0, 1]", "n must be a whole number >= 0"."""
    def num(x):
        return f"{x:g}"
    whole = "a whole number " if d.integer else ""
    lo, hi = np.isfinite(d.low), np.isfinite(d.high)
    if lo and hi:
        return (f"{d.name} must be {whole}in {'[' if d.low_inclusive else '('}{num(d.low)}, "
                f"{num(d.high)}{']' if d.high_inclusive else ')'}")
    if lo:
        return f"{d.name} must be {whole}{'>=' if d.low_inclusive else '>'} {num(d.low)}"
    if hi:
        return f"{d.name} must be {whole}{'<=' if d.high_inclusive else '<'} {num(d.high)}"
    return f"{d.name} must be {whole or 'a number '}".rstrip()


def _in_domain(d, x: float) -> bool:
    if d.integer and x != np.round(x):
        return False
    above = x >= d.low if d.low_inclusive else x > d.low
    below = x <= d.high if d.high_inclusive else x < d.high
    return bool(above and below)


def _example_shapes(dist, shapes: list[str]) -> list:
    """Shape values scipy accepts, for the example in a message (e.g. 2.0 for gamma's a)."""
    domains = shape_domains(dist) or []
    by_name = {d.name: d for d in domains}
    options = []
    for s in shapes:
        d = by_name.get(s)
        cands = [2.0, 0.5, 1.0, 5.0, 0.0]
        if d is not None:
            cands = [c for c in cands if _in_domain(d, c)] or cands
            if d.integer:
                cands = [int(c) for c in cands if c == int(c)] or [2]
        options.append(cands)
    for combo in itertools.islice(itertools.product(*options), 200):
        if shapes_valid(dist, combo):
            return list(combo)
    return [opt[0] for opt in options]


def _check_arguments(dist, name: str, args: tuple, kwargs: dict, label: str) -> None:
    """Reject, with the distribution's own parameter names, what scipy would freeze and then
    only draw NaN from (or fail on with its internal ``_parse_args()`` message): missing
    shape parameters, unknown ones, a scale <= 0, shape values outside their domain."""
    shapes = [s.strip() for s in dist.shapes.split(",")] if dist.shapes else []
    discrete = isinstance(dist, scipy.stats.rv_discrete)
    names = [*shapes, "loc"] + ([] if discrete else ["scale"])
    its = f"{name}'s parameters are {', '.join(names)}"
    pos = inspect.Parameter.POSITIONAL_OR_KEYWORD
    sig = inspect.Signature([inspect.Parameter(n, pos) for n in names])
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError as exc:
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]}=?)" if close else ""
            raise InputError(f"{label}: {name} has no parameter {unknown[0]!r}{hint}; "
                             f"{its}.") from None
        if len(args) > len(names):
            raise InputError(f"{label}: {name} takes at most {len(names)} arguments "
                             f"({len(args)} given); {its}.") from None
        raise InputError(f"{label}: {exc}; {its}.") from None
    missing = [s for s in shapes if s not in bound.arguments]
    if missing:
        example = _example_shapes(dist, shapes)
        given = {k: bound.arguments[k] for k in shapes if k in bound.arguments}
        values = [given.get(s, e) for s, e in zip(shapes, example, strict=True)]
        positional = _call_text(name, tuple(values), {})
        tail = {"loc": 0} if discrete else {"scale": 1.0}
        keywords = _call_text(name, (), {**dict(zip(shapes, values, strict=True)), **tail})
        what = (f"its shape parameter {shapes[0]}" if len(shapes) == 1 else
                f"its shape parameters {', '.join(shapes)}"
                + (f" ({', '.join(missing)} missing)" if len(missing) < len(shapes) else ""))
        raise InputError(f"{label} needs {what}: e.g. {positional} or {keywords}.")
    values = {"loc": 0.0, "scale": 1.0, **bound.arguments}
    for k in names:
        v = values[k]
        ok = isinstance(v, numbers.Real) or (isinstance(v, np.ndarray) and v.ndim == 0
                                             and np.issubdtype(v.dtype, np.number))
        if not ok or not np.isfinite(float(v)):
            raise InputError(f"{label}: {k} must be a finite number (got {v!r}); {its}.")
    if not discrete and not float(values["scale"]) > 0:
        raise InputError(f"{label}: scale must be > 0 (got {values['scale']!r}); {its}.")
    shape_values = tuple(float(values[s]) for s in shapes)
    if shapes and not shapes_valid(dist, shape_values):
        domains = {d.name: d for d in shape_domains(dist) or []}
        bad = [domains[s] for s, x in zip(shapes, shape_values, strict=True)
               if s in domains and not _in_domain(domains[s], x)]
        if bad:
            rules = "; ".join(f"{_domain_text(d)} (got {values[d.name]!r})" for d in bad)
            raise InputError(f"{label}: {rules}; {its}.")
        given = ", ".join(f"{s}={values[s]!r}" for s in shapes)
        raise InputError(f"{label}: scipy.stats.{name} rejects the shape parameters {given} "
                         f"together (see its documentation for their ranges); {its}.")


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
        When scipy.stats has no such distribution (the message suggests the closest
        names), a shape parameter is missing or unknown, the scale is not > 0, or a shape
        parameter is outside its domain; the message names the distribution's parameters,
        e.g. "RV('uniform', 0, -1): scale must be > 0 (got -1); uniform's parameters are
        loc, scale".

    Examples
    --------
    >>> import dabc
    >>> dabc.RV("uniform", -1, 2).upper  # uniform on [loc, loc + scale]
    1.0
    """

    def __init__(self, name: str, *args, **kwargs):
        dist = getattr(scipy.stats, name, None) if isinstance(name, str) else None
        if not isinstance(dist, scipy.stats.rv_continuous | scipy.stats.rv_discrete):
            raise _unknown_distribution(name)
        label = _call_text(name, args, kwargs)
        _check_arguments(dist, name, args, kwargs, label)
        try:
            self.frozen = dist(*args, **kwargs)
            self.frozen.support()
        except Exception as exc:  # scipy raises many types for bad shape arguments
            raise InputError(f"{label}: {exc}") from exc
        self.name, self.args, self.kwargs = name, args, kwargs
        self._derive()

    _uniform: tuple[float, float, float] | None = None

    def _derive(self) -> None:
        """What follows from ``frozen``, ``name``, ``args`` and ``kwargs``: the kind, the
        support bounds and the fast paths (for ``__init__`` and frozen scipy priors)."""
        self.discrete = isinstance(self.frozen.dist, scipy.stats.rv_discrete)
        lo, hi = self.frozen.support()
        self.lower, self.upper = float(lo), float(hi)
        self._fast = self._fast_sampler()
        self._uniform = self._uniform_density()

    def _uniform_density(self) -> tuple[float, float, float] | None:
        """(loc, scale, log density) of a uniform prior, for :meth:`logpdf` without scipy's
        per-call argument handling (about 80 us a call); None for other distributions.

        The log density is scipy's own arithmetic, ``0.0 - log(scale)`` with numpy's log,
        and the support test is on ``(x - loc) / scale`` as scipy's, so the values are the
        same bits (``tests/test_fast_path.py`` compares them)."""
        if self.name != "uniform" or self.discrete:
            return None
        try:
            _, loc, scale = parse_args(self.frozen.dist, self.args, self.kwargs)
            loc, scale = float(loc), float(scale)
        except Exception:
            return None
        return loc, scale, float(0.0 - np.log(np.array([scale]))[0])

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
        if (self._uniform is not None and isinstance(x, np.ndarray) and x.ndim
                and x.dtype == np.float64):
            loc, scale, value = self._uniform
            z = (x - loc) / scale
            out = np.where((z >= 0.0) & (z <= 1.0), value, -np.inf)
            out[np.isnan(z)] = np.nan
            return out
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
        dist = value.dist
        if isinstance(dist, scipy.stats.rv_continuous | scipy.stats.rv_discrete):
            args, kwargs = tuple(value.args), dict(value.kwds)
            call = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            _check_arguments(dist, dist.name, args, kwargs,
                             f"Prior parameter {name!r}: scipy.stats.{dist.name}({call})")
        rv = RV.__new__(RV)  # a frozen scipy distribution given directly
        rv.frozen, rv.name, rv.args, rv.kwargs = value, value.dist.name, value.args, value.kwds
        rv._derive()
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
