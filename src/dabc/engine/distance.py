"""Distances between simulated and observed summary statistics, computed in batches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .model import StatLayout


class Distance:
    """Base class: ``batch(stats, observed)`` maps an (n, k) matrix to n distances."""

    def initialize(self, layout: StatLayout) -> None:
        """Bind to the statistics layout (called once per run)."""
        self.layout = layout

    def check_priors(self, priors) -> None:
        """Raise InputError if this distance cannot serve models with these priors (called
        once per run, before the first generation)."""

    def update(self, stats: np.ndarray, theta: np.ndarray | None = None,
               t: int | None = None) -> None:
        """Learn from all simulations of generation ``t`` (their statistics and parameters)
        before the next generation; adaptive and learned distances only."""

    def batch(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Distances of each row of ``stats`` to the flat ``observed`` vector."""
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

    ``weights`` maps statistic names to a weight (scalar, or one per element); missing
    statistics weigh 1.
    """

    def __init__(self, p: float = 2, weights: Mapping | None = None):
        if p <= 0:
            raise InputError(f"PNormDistance: p must be positive, got {p}.")
        self.p = float(p)
        self.weights = dict(weights or {})

    def initialize(self, layout: StatLayout) -> None:
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
    on very different scales contribute comparably.
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
    """Any user function ``d(x, x0) -> float`` on statistics dicts."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: the function ``fn`` (stored as code).

        Returns
        -------
        dict
        """
        return {"fn": self.fn}

    def batch(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        x0 = self.layout.unflatten(observed)
        out = np.empty(len(stats))
        for i, row in enumerate(stats):
            d = np.asarray(self.fn(self.layout.unflatten(row), x0), dtype=float)
            if d.shape != ():
                raise InputError(
                    f"Distance function {getattr(self.fn, '__name__', self.fn)!r} returned "
                    f"shape {d.shape}; it must return one number per pair (x, x0)."
                )
            out[i] = d
        return out


def as_distance(distance) -> Distance:
    """None -> Euclidean; a Distance as is; a callable -> FunctionDistance."""
    if distance is None:
        return PNormDistance(2)
    if isinstance(distance, Distance):
        return distance
    if callable(distance):
        return FunctionDistance(distance)
    raise InputError(f"distance must be a Distance or a function d(x, x0), got {distance!r}.")
