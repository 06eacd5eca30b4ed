"""Epsilon schedules: the acceptance threshold of each generation."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def weighted_quantile(values: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """The alpha-quantile of ``values`` under normalised ``weights``."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w) / w.sum()
    return float(v[min(np.searchsorted(cum, alpha), len(v) - 1)])


class Epsilon:
    """Base class. ``initial()`` is generation 0's threshold (inf accepts every prior draw);
    ``next(t, distances, weights)`` gives generation t's from the previous population, or
    None when the schedule is exhausted."""

    def initial(self) -> float:
        """Generation 0's threshold."""
        return float("inf")

    def next(self, t: int, distances: np.ndarray, weights: np.ndarray) -> float | None:
        """Generation t's threshold from the previous population, or None to stop."""
        raise NotImplementedError


class QuantileEpsilon(Epsilon):
    """Each threshold is the weighted alpha-quantile of the previous accepted distances."""

    def __init__(self, alpha: float = 0.5, initial_epsilon: float = float("inf"),
                 multiplier: float = 1.0):
        if not 0 < alpha <= 1:
            raise InputError(f"QuantileEpsilon: alpha must be in (0, 1], got {alpha}.")
        self.alpha, self.initial_epsilon, self.multiplier = alpha, initial_epsilon, multiplier

    def initial(self) -> float:
        return float(self.initial_epsilon)

    def next(self, t, distances, weights):
        return self.multiplier * weighted_quantile(distances, weights, self.alpha)


class MedianEpsilon(QuantileEpsilon):
    """The weighted median of the previous generation's distances (the default)."""

    def __init__(self, initial_epsilon: float = float("inf"), multiplier: float = 1.0):
        super().__init__(0.5, initial_epsilon, multiplier)


class ConstantEpsilon(Epsilon):
    """The same threshold in every generation."""

    def __init__(self, epsilon: float):
        self.epsilon = float(epsilon)

    def initial(self):
        return self.epsilon

    def next(self, t, distances, weights):
        return self.epsilon


class ListEpsilon(Epsilon):
    """Thresholds given in advance, one per generation; the run ends when they run out."""

    def __init__(self, values):
        self.values = [float(v) for v in values]
        if not self.values:
            raise InputError("ListEpsilon needs at least one value.")

    def initial(self):
        return self.values[0]

    def next(self, t, distances, weights):
        return self.values[t] if t < len(self.values) else None
