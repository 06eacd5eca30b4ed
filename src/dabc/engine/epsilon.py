"""Epsilon schedules: the acceptance threshold of each generation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments of this schedule, by name (how stored runs describe it).

        Returns
        -------
        dict
            Keyword arguments that rebuild an equivalent schedule.

        Raises
        ------
        NotImplementedError
            For classes that cannot be described by their arguments; stored runs keep them
            as code (see :mod:`dabc.engine.config`).
        """
        raise NotImplementedError(f"{type(self).__qualname__} is stored as code.")

    def get_state(self) -> dict[str, Any]:
        """What this schedule learned during the run, by field name (none by default).

        Returns
        -------
        dict
        """
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (after ``__init__``).

        Parameters
        ----------
        state : mapping
            The fields returned by :meth:`get_state`.

        Raises
        ------
        InputError
            When ``state`` holds fields this schedule does not know.
        """
        if state:
            raise InputError(f"{type(self).__qualname__} has no learned state, but the stored "
                             f"run gives it {sorted(state)}; the database is damaged.")


class QuantileEpsilon(Epsilon):
    """Each threshold is the weighted alpha-quantile of the previous accepted distances."""

    def __init__(self, alpha: float = 0.5, initial_epsilon: float = float("inf"),
                 multiplier: float = 1.0):
        if not 0 < alpha <= 1:
            raise InputError(f"QuantileEpsilon: alpha must be in (0, 1], got {alpha}.")
        self.alpha, self.initial_epsilon, self.multiplier = alpha, initial_epsilon, multiplier

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``alpha``, ``initial_epsilon``, ``multiplier``.

        Returns
        -------
        dict
        """
        return {"alpha": self.alpha, "initial_epsilon": self.initial_epsilon,
                "multiplier": self.multiplier}

    def initial(self) -> float:
        return float(self.initial_epsilon)

    def next(self, t, distances, weights):
        return self.multiplier * weighted_quantile(distances, weights, self.alpha)


class MedianEpsilon(QuantileEpsilon):
    """The weighted median of the previous generation's distances (the default)."""

    def __init__(self, initial_epsilon: float = float("inf"), multiplier: float = 1.0):
        super().__init__(0.5, initial_epsilon, multiplier)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``initial_epsilon``, ``multiplier``.

        Returns
        -------
        dict
        """
        return {"initial_epsilon": self.initial_epsilon, "multiplier": self.multiplier}


class ConstantEpsilon(Epsilon):
    """The same threshold in every generation."""

    def __init__(self, epsilon: float):
        self.epsilon = float(epsilon)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``epsilon``.

        Returns
        -------
        dict
        """
        return {"epsilon": self.epsilon}

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

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``values``.

        Returns
        -------
        dict
        """
        return {"values": list(self.values)}

    def initial(self):
        return self.values[0]

    def next(self, t, distances, weights):
        return self.values[t] if t < len(self.values) else None
