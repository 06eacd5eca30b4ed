"""Distances between simulated and observed summary statistics, computed in batches.

A distance returns one number per simulation: a finite number ``>= 0``, or ``+inf`` for
"never accept" (an infinite distance is above every finite threshold; only generation 0's
threshold, ``inf`` by default, accepts it, and later thresholds are derived from the finite
distances alone). NaN,
None, a negative number or anything that is not a number stops the run with an
:class:`~dabc.InputError` naming the distance and one simulation it failed on
(:func:`check_distances`), on whichever worker computed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .model import StatLayout

_RULE = "a distance must return a finite number >= 0 (inf is allowed for 'never accept')"


class Distance:
    """Base class of distances: ``batch(stats, observed)`` maps an (n, k) matrix to n numbers.

    Subclass it and implement :meth:`batch` (and, for adaptive distances, :meth:`update`).
    Each returned value must be a finite number ``>= 0`` or ``+inf`` ("never accept"); NaN or
    a negative value stops the run with an :class:`~dabc.InputError` (see
    :func:`check_distances`). A subclass that takes no constructor arguments needs no
    Parameters; one that does documents them in its own docstring.

    Examples
    --------
    >>> import numpy as np
    >>> import dabc
    >>> class MaxAbs(dabc.Distance):
    ...     def batch(self, stats, observed):
    ...         return np.abs(stats - observed).max(axis=1)
    >>> MaxAbs().batch(np.array([[1.0, 3.0]]), np.array([0.0, 0.0]))
    array([3.])
    """

    def initialize(self, layout: StatLayout) -> None:
        """Bind to the statistics layout (called once per run).

        Parameters
        ----------
        layout : StatLayout
            Names, shapes and observed values of the summary statistics.
        """
        self.layout = layout

    def check_priors(self, priors) -> None:
        """Check that this distance can serve models with these priors (once per run).

        Parameters
        ----------
        priors : list of Prior
            The priors of the run's models, in model order.

        Raises
        ------
        InputError
            When it cannot; the base class accepts any priors.
        """

    def update(self, stats: np.ndarray, theta: np.ndarray | None = None,
               t: int | None = None) -> None:
        """Learn from all simulations of a generation before the next (adaptive distances).

        Parameters
        ----------
        stats : numpy.ndarray
            Statistics of the generation's finished simulations, shape (n, k).
        theta : numpy.ndarray or None, default None
            Their parameters, shape (n, dim).
        t : int or None, default None
            The generation.
        """

    def batch(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Distances of each row of ``stats`` to the flat ``observed`` vector.

        Parameters
        ----------
        stats : numpy.ndarray
            Simulated statistics, shape (n, k), flattened as the layout says.
        observed : numpy.ndarray
            Observed statistics, shape (k,).

        Returns
        -------
        numpy.ndarray
            Shape (n,): finite numbers ``>= 0``, or ``inf`` for "never accept".
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments of this distance, by name (how stored runs describe it).

        Returns
        -------
        dict
            Keyword arguments that rebuild an equivalent distance.

        Raises
        ------
        NotImplementedError
            For classes that cannot be described by their arguments; stored runs keep them
            as code (see :mod:`dabc.engine.config`).
        """
        raise NotImplementedError(f"{type(self).__qualname__} is stored as code.")

    def get_state(self) -> dict[str, Any]:
        """What this distance learned during the run, by field name (none by default).

        Returns
        -------
        dict
        """
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (after ``initialize``).

        Parameters
        ----------
        state : mapping
            The fields returned by :meth:`get_state`.

        Raises
        ------
        InputError
            When ``state`` holds fields this distance does not know.
        """
        if state:
            raise InputError(f"{type(self).__qualname__} has no learned state, but the stored "
                             f"run gives it {sorted(state)}; the database is damaged.")


class PNormDistance(Distance):
    """Weighted p-norm over all statistics; the default is the Euclidean distance.

    Parameters
    ----------
    p : float, default 2
        The norm's order, > 0; ``numpy.inf`` gives the maximum norm.
    weights : mapping or None, default None
        Statistic name -> weight (a scalar, or one per element); missing statistics weigh 1.

    Raises
    ------
    InputError
        When ``p`` is not positive, or (at the start of the run) ``weights`` names a
        statistic the model does not return.

    Examples
    --------
    >>> import dabc
    >>> d = dabc.PNormDistance(p=1, weights={"y": 2.0})
    """

    def __init__(self, p: float = 2, weights: Mapping | None = None):
        if not p > 0:
            raise InputError(f"PNormDistance: p must be positive, got {p}.")
        self.p = float(p)
        self.weights = dict(weights or {})

    def initialize(self, layout: StatLayout) -> None:
        """Bind to the layout and expand ``weights`` to one per statistic element.

        Parameters
        ----------
        layout : StatLayout
            Names, shapes and observed values of the summary statistics.

        Raises
        ------
        InputError
            When ``weights`` names a statistic not in the layout.
        """
        super().initialize(layout)
        unknown = set(self.weights) - set(layout.keys)
        if unknown:
            raise InputError(f"Distance weights name unknown statistics {sorted(unknown)}.")
        w = np.ones(layout.size)
        for k, v in self.weights.items():
            w[layout.slices[k]] = v
        self.w = w

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``p`` and ``weights``.

        Returns
        -------
        dict
        """
        return {"p": self.p, "weights": dict(self.weights)}

    def batch(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Weighted p-norm of each row's difference to ``observed``.

        Parameters
        ----------
        stats : numpy.ndarray
            Simulated statistics, shape (n, k).
        observed : numpy.ndarray
            Observed statistics, shape (k,).

        Returns
        -------
        numpy.ndarray
            Shape (n,).
        """
        diff = np.abs(stats - observed) * self.w
        if self.p == 2:
            return np.sqrt(np.einsum("ij,ij->i", diff, diff))
        if self.p == 1:
            return diff.sum(axis=1)
        if np.isinf(self.p):
            return diff.max(axis=1)
        return (diff**self.p).sum(axis=1) ** (1 / self.p)


class AdaptivePNormDistance(PNormDistance):
    """p-norm whose weights are 1/scale of each statistic, re-estimated every generation.

    The scale is estimated from all simulations of the previous generation, rejected ones
    included (median absolute deviation by default, or ``scale="std"``), so that statistics
    on very different scales contribute comparably. The weights are normalised to mean 1.

    Parameters
    ----------
    p : float, default 2
        The norm's order, > 0.
    scale : {"mad", "std"}, default "mad"
        How each statistic's scale is estimated.

    Raises
    ------
    InputError
        When ``p`` is not positive or ``scale`` is neither "mad" nor "std".

    Examples
    --------
    >>> import dabc
    >>> d = dabc.AdaptivePNormDistance(scale="std")
    """

    def __init__(self, p: float = 2, scale: str = "mad"):
        super().__init__(p)
        if scale not in ("mad", "std"):
            raise InputError(f"AdaptivePNormDistance: scale must be 'mad' or 'std', not {scale!r}.")
        self.scale = scale

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``p`` and ``scale``.

        Returns
        -------
        dict
        """
        return {"p": self.p, "scale": self.scale}

    def get_state(self) -> dict[str, Any]:
        """The current weights ``w`` (one per statistic element), once initialised.

        Returns
        -------
        dict
        """
        return {"w": self.w} if hasattr(self, "w") else {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore the weights ``w``.

        Parameters
        ----------
        state : mapping
            ``{"w": array}`` as returned by :meth:`get_state`, or empty.

        Raises
        ------
        InputError
            When the weights do not match the statistics layout.
        """
        if "w" in state:
            w = np.asarray(state["w"], dtype=float)
            if hasattr(self, "layout") and w.shape != (self.layout.size,):
                raise InputError(f"Stored distance weights have shape {w.shape}, the statistics "
                                 f"{(self.layout.size,)}; the database is damaged.")
            self.w = w

    def update(self, stats: np.ndarray, theta: np.ndarray | None = None,
               t: int | None = None) -> None:
        """Re-estimate the weights from a generation's finite statistics.

        Parameters
        ----------
        stats : numpy.ndarray
            Statistics of the generation's finished simulations, shape (n, k).
        theta : numpy.ndarray or None, default None
            Unused.
        t : int or None, default None
            Unused.
        """
        stats = stats[np.all(np.isfinite(stats), axis=1)]
        if len(stats) < 2:
            return
        if self.scale == "mad":
            s = np.median(np.abs(stats - np.median(stats, axis=0)), axis=0)
        else:
            s = stats.std(axis=0)
        w = np.zeros_like(s)
        w[s > 0] = 1 / s[s > 0]
        if w.sum() > 0:
            self.w = w * (len(w) / w.sum())  # mean weight 1 keeps epsilons comparable


class FunctionDistance(Distance):
    """Any user function ``fn(x, x0) -> float`` on statistics dicts.

    Parameters
    ----------
    fn : callable
        Called as ``fn(simulated, observed)`` with two dicts of statistics (scalars as
        floats, arrays as numpy arrays). It must return one finite number ``>= 0``, or
        ``float("inf")`` for "never accept". A function marked with :func:`dabc.vectorized`
        is called once per block instead, with ``simulated`` holding one row per simulation
        (shape ``(n,)`` for a scalar statistic, ``(n, *shape)`` for an array one), and must
        return ``n`` distances.

    Raises
    ------
    InputError
        From :meth:`batch`, when ``fn`` returns NaN, None, a negative number, something that
        is not a number or not one number; the message names ``fn`` and the statistics.

    Examples
    --------
    >>> import dabc
    >>> d = dabc.FunctionDistance(lambda x, x0: abs(x["y"] - x0["y"]))

    The same distance on whole blocks (rows in, distances out):

    >>> import numpy as np
    >>> @dabc.vectorized
    ... def gap(x, x0):
    ...     return np.abs(x["y"] - x0["y"])
    >>> d = dabc.FunctionDistance(gap)
    >>> d.vectorized
    True
    """

    def __init__(self, fn: Callable):
        if not callable(fn):
            raise InputError(f"FunctionDistance needs a function d(x, x0), got {fn!r}.")
        self.fn = fn

    @property
    def vectorized(self) -> bool:
        """Whether ``fn`` is marked :func:`dabc.vectorized` (called once per block)."""
        return getattr(self.fn, "_dabc_vectorized", 0) > 0

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: the function ``fn`` (stored as code).

        Returns
        -------
        dict
        """
        return {"fn": self.fn}

    def batch(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """``fn`` applied to each row (as a dict) and the observed statistics.

        Parameters
        ----------
        stats : numpy.ndarray
            Simulated statistics, shape (n, k).
        observed : numpy.ndarray
            Observed statistics, shape (k,).

        Returns
        -------
        numpy.ndarray
            Shape (n,).

        Raises
        ------
        InputError
            When ``fn`` returns anything but one number ``>= 0`` or ``inf``.
        """
        layout, fn = self.layout, self.fn
        x0 = layout.unflatten(observed)
        if self.vectorized:  # rows in, distances out; check_distances validates them
            n = len(stats)
            return fn({k: stats[:, layout.slices[k]].reshape((n, *layout.shapes[k]))
                       for k in layout.keys}, x0)
        out = np.empty(len(stats))
        if all(shape == () for shape in layout.shapes.values()):
            # scalar statistics: each row's dict from one tolist() of the block
            keys = layout.keys
            k0 = keys[0] if len(keys) == 1 else None
            for i, row in enumerate(stats.tolist()):
                x = {k0: row[0]} if k0 is not None else dict(zip(keys, row))  # noqa: B905
                value = fn(x, x0)
                if isinstance(value, float) and value >= 0:  # also inf; not NaN
                    out[i] = value
                else:
                    out[i] = self._checked(value, x, x0)
            return out
        for i, row in enumerate(stats):
            x = layout.unflatten(row)
            out[i] = self._checked(fn(x, x0), x, x0)
        return out

    def _checked(self, value: Any, x: dict, x0: dict) -> float:
        """One returned distance as a float, or the InputError that says what is wrong."""
        try:
            d = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise InputError(_bad_value(self, value, x, x0)) from None
        if d.shape != ():
            raise InputError(
                f"Distance function {distance_name(self)!r} returned shape {d.shape}; it "
                "must return one number per pair (x, x0) (it did for simulated statistics "
                f"{_show(x)}, observed {_show(x0)})."
            )
        if value is None or not d >= 0:  # None, NaN or negative
            raise InputError(_bad_value(self, value, x, x0))
        return float(d)


def distance_name(distance: Distance) -> str:
    """The name messages give a distance: its function's name, or its class name.

    Parameters
    ----------
    distance : Distance
        A distance; a :class:`FunctionDistance` is named by its function.

    Returns
    -------
    str
    """
    if isinstance(distance, FunctionDistance):
        fn = distance.fn
        return str(getattr(fn, "__name__", None) or type(fn).__name__)
    return type(distance).__qualname__


def check_distances(distance: Distance, values: Any, stats: np.ndarray, observed: np.ndarray,
                    layout: StatLayout) -> np.ndarray:
    """Validate what ``distance.batch(stats, observed)`` returned, as a float array.

    Parameters
    ----------
    distance : Distance
        The distance that computed ``values`` (named in the message).
    values : array_like
        Its return value: one number per row of ``stats``.
    stats : numpy.ndarray
        The simulated statistics it was given, shape (n, k).
    observed : numpy.ndarray
        The observed statistics, shape (k,).
    layout : StatLayout
        Turns a row back into a statistics dict for the message.

    Returns
    -------
    numpy.ndarray
        Shape (n,): numbers ``>= 0``, ``inf`` allowed.

    Raises
    ------
    InputError
        When ``values`` is not n numbers, or holds NaN or a negative number; the message
        names the distance and the first offending simulation and value.
    """
    n = len(stats)
    try:
        d = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        name = distance_name(distance)
        raise InputError(f"distance {name!r} returned {_short(values)} for {n} simulations; "
                         f"{_RULE}, one per simulation.") from None
    if d.shape != (n,):
        name = distance_name(distance)
        raise InputError(f"distance {name} returned shape {d.shape} for {n} simulations; "
                         "it must return one number each.")
    if (d >= 0).all():  # no NaN, no negative value: the common case, in one pass
        return d
    bad = np.flatnonzero(~(d >= 0))
    if len(bad):
        r = int(bad[0])
        raw = values[r] if isinstance(values, list | tuple) else d[r]
        msg = _bad_value(distance, raw, layout.unflatten(stats[r]), layout.unflatten(observed))
        if len(bad) > 1:
            msg += f" ({len(bad)} of these {n} simulations had such a distance.)"
        raise InputError(msg)
    return d


def _bad_value(distance: Distance, value: Any, x: dict, x0: dict) -> str:
    return (f"distance {distance_name(distance)!r} returned {_short(value)} for simulated "
            f"statistics {_show(x)} (observed {_show(x0)}); {_RULE}.")


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, float | np.floating):
        text = repr(float(value))
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(stats: dict, limit: int = 200) -> str:
    parts = []
    for k, v in stats.items():
        if isinstance(v, np.ndarray):
            v = np.array2string(v, precision=4, threshold=6)
        else:
            v = f"{v:.4g}" if isinstance(v, float) else repr(v)
        parts.append(f"{k!r}: {v}")
    text = "{" + ", ".join(parts) + "}"
    return text if len(text) <= limit else text[:limit - 4] + "...}"


def as_distance(distance) -> Distance:
    """The distance a run uses for the ``distance=`` argument.

    Parameters
    ----------
    distance : Distance, callable or None
        None gives the Euclidean :class:`PNormDistance`; a :class:`Distance` is used as is;
        a function ``d(x, x0)`` becomes a :class:`FunctionDistance`.

    Returns
    -------
    Distance

    Raises
    ------
    InputError
        For anything else.
    """
    if distance is None:
        return PNormDistance(2)
    if isinstance(distance, Distance):
        return distance
    if callable(distance):
        return FunctionDistance(distance)
    raise InputError(f"distance must be a Distance or a function d(x, x0), got {distance!r}.")
