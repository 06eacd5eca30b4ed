"""Epsilon schedules: the acceptance threshold of each generation.

A threshold is a number ``>= 0`` or ``inf`` (accept every simulation, generation 0's default);
NaN and negative thresholds are refused with an :class:`~dabc.InputError`, when a schedule is
built and again whenever it gives the next threshold (:func:`next_epsilon`). Thresholds derived
from distances use the finite distances only: an infinite distance means "never accept".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError


def weighted_quantile(values: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """The alpha-quantile of ``values`` under normalised ``weights``.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (n,), n >= 1.
    weights : numpy.ndarray
        Shape (n,), non-negative with a positive sum.
    alpha : float
        In (0, 1].

    Returns
    -------
    float
    """
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w) / w.sum()
    return float(v[min(np.searchsorted(cum, alpha), len(v) - 1)])


def _threshold(owner: str, name: str, value: Any) -> float:
    """``value`` as a threshold (a number >= 0, inf allowed), or an InputError naming it."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{owner}: {name} must be a number >= 0 (inf accepts every "
                         f"simulation), got {value!r}.") from None
    if not x >= 0:  # NaN or negative
        raise InputError(f"{owner}: {name} must be a number >= 0 (inf accepts every "
                         f"simulation), got {value!r}. A distance is never negative, so a "
                         "negative threshold would accept nothing.")
    return x


class Epsilon:
    """Base class of epsilon schedules.

    ``initial()`` is generation 0's threshold (``inf`` accepts every prior draw);
    ``next(t, distances, weights)`` gives generation t's from the previous population, or
    None when the schedule is exhausted. A subclass implements :meth:`next` (and
    :meth:`initial` if generation 0 should not accept everything); its thresholds must be
    numbers ``>= 0`` or ``inf``, which the run checks (:func:`next_epsilon`). A subclass that
    takes no constructor arguments needs no Parameters.

    Examples
    --------
    >>> import dabc
    >>> class Halving(dabc.Epsilon):
    ...     def initial(self):
    ...         return 8.0
    ...     def next(self, t, distances, weights):
    ...         return 8.0 / 2**t
    >>> Halving().next(3, None, None)
    1.0
    """

    def initial(self) -> float:
        """Generation 0's threshold.

        Returns
        -------
        float
            ``inf`` by default: generation 0 accepts every draw from the prior.
        """
        return float("inf")

    def next(self, t: int, distances: np.ndarray, weights: np.ndarray) -> float | None:
        """Generation t's threshold from the previous population, or None to stop.

        Parameters
        ----------
        t : int
            The generation the threshold is for (1, 2, ...).
        distances : numpy.ndarray
            Distances of the previous generation's accepted particles under the distance
            of generation t (numbers ``>= 0``, ``inf`` possible), shape (n,).
        weights : numpy.ndarray
            Their normalised importance weights, shape (n,).

        Returns
        -------
        float or None
        """
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
    """Each threshold is the weighted alpha-quantile of the previous generation's distances.

    The quantile is taken over the finite distances only (their weights renormalised):
    an infinite distance means "never accept" and does not drag the threshold up.

    Parameters
    ----------
    alpha : float, default 0.5
        The quantile, in (0, 1].
    initial_epsilon : float, default inf
        Generation 0's threshold, >= 0 (inf accepts every draw from the prior).
    multiplier : float, default 1.0
        Each quantile is multiplied by this, > 0 (finite).

    Raises
    ------
    InputError
        For an argument outside these ranges (NaN included); from :meth:`next`, when no
        distance of the previous generation is finite.

    Examples
    --------
    >>> import dabc
    >>> eps = dabc.QuantileEpsilon(alpha=0.3, multiplier=1.1)
    """

    def __init__(self, alpha: float = 0.5, initial_epsilon: float = float("inf"),
                 multiplier: float = 1.0):
        owner = type(self).__name__
        try:
            a, m = float(alpha), float(multiplier)
        except (TypeError, ValueError):
            raise InputError(f"{owner}: alpha and multiplier must be numbers, got "
                             f"alpha={alpha!r}, multiplier={multiplier!r}.") from None
        if not 0 < a <= 1:
            raise InputError(f"{owner}: alpha must be in (0, 1], got {alpha}.")
        if not (m > 0 and math.isfinite(m)):
            raise InputError(f"{owner}: multiplier must be a finite number > 0, got "
                             f"{multiplier!r}.")
        _threshold(owner, "initial_epsilon", initial_epsilon)
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
        """Generation 0's threshold: ``initial_epsilon``.

        Returns
        -------
        float
        """
        return float(self.initial_epsilon)

    def next(self, t: int, distances: np.ndarray, weights: np.ndarray) -> float:
        """``multiplier`` times the weighted alpha-quantile of the finite distances.

        Parameters
        ----------
        t : int
            The generation the threshold is for.
        distances : numpy.ndarray
            The previous population's distances, shape (n,).
        weights : numpy.ndarray
            Their normalised weights, shape (n,).

        Returns
        -------
        float

        Raises
        ------
        InputError
            When no distance is finite (with positive weight): no threshold can be derived.
        """
        d = np.asarray(distances, dtype=float)
        w = np.asarray(weights, dtype=float)
        finite = np.isfinite(d) & (w > 0)
        if not finite.any():
            raise InputError(
                f"{type(self).__name__}: every one of the {len(d)} accepted particles of "
                f"generation {t - 1} has an infinite (or undefined) distance, so no threshold "
                f"for generation {t} can be derived. The distance returns inf ('never accept') "
                "for all of them: check the distance, or give the thresholds with ListEpsilon.")
        return self.multiplier * weighted_quantile(d[finite], w[finite], float(self.alpha))


class MedianEpsilon(QuantileEpsilon):
    """The weighted median of the previous generation's finite distances (the default).

    Parameters
    ----------
    initial_epsilon : float, default inf
        Generation 0's threshold, >= 0 (inf accepts every draw from the prior).
    multiplier : float, default 1.0
        Each median is multiplied by this, > 0 (finite).

    Raises
    ------
    InputError
        For an argument outside these ranges.

    Examples
    --------
    >>> import dabc
    >>> eps = dabc.MedianEpsilon(initial_epsilon=60.0)
    """

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
    """The same threshold in every generation.

    Parameters
    ----------
    epsilon : float
        The threshold, >= 0 (inf accepts every simulation).

    Raises
    ------
    InputError
        When ``epsilon`` is negative, NaN or not a number.

    Examples
    --------
    >>> import dabc
    >>> eps = dabc.ConstantEpsilon(30.0)
    """

    def __init__(self, epsilon: float):
        self.epsilon = _threshold("ConstantEpsilon", "epsilon", epsilon)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``epsilon``.

        Returns
        -------
        dict
        """
        return {"epsilon": self.epsilon}

    def initial(self) -> float:
        """Generation 0's threshold: ``epsilon``.

        Returns
        -------
        float
        """
        return self.epsilon

    def next(self, t: int, distances: np.ndarray, weights: np.ndarray) -> float:
        """Generation t's threshold: ``epsilon`` again.

        Parameters
        ----------
        t : int
            The generation (unused).
        distances : numpy.ndarray
            Unused.
        weights : numpy.ndarray
            Unused.

        Returns
        -------
        float
        """
        return self.epsilon


class ListEpsilon(Epsilon):
    """Thresholds given in advance, one per generation; the run ends when they run out.

    Parameters
    ----------
    values : iterable of float
        At least one threshold, each >= 0 (``inf`` accepts every simulation, so it can only
        come first). They must not increase: equal consecutive values are allowed (the same
        threshold for several generations, to let the population settle), a value above the
        one before it is an error.

    Raises
    ------
    InputError
        When ``values`` is empty or not numbers, holds NaN or a negative value, or increases.

    Examples
    --------
    >>> import dabc
    >>> eps = dabc.ListEpsilon([float("inf"), 40.0, 25.0, 25.0, 15.0])
    """

    def __init__(self, values: Iterable[float]):
        try:
            raw = list(values)
        except TypeError:
            raise InputError(f"ListEpsilon needs a list of thresholds, got {values!r}.") from None
        if not raw:
            raise InputError("ListEpsilon needs at least one value, e.g. ListEpsilon([10, 5, 2]).")
        self.values = [_threshold("ListEpsilon", f"values[{i}]", v) for i, v in enumerate(raw)]
        for i in range(1, len(self.values)):
            if self.values[i] > self.values[i - 1]:
                raise InputError(
                    f"ListEpsilon: the thresholds must not increase, but values[{i}] = "
                    f"{self.values[i]:g} is above values[{i - 1}] = {self.values[i - 1]:g}. "
                    "Give them from the loosest to the tightest (equal neighbours are allowed).")

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``values``.

        Returns
        -------
        dict
        """
        return {"values": list(self.values)}

    def initial(self) -> float:
        """Generation 0's threshold: the first value.

        Returns
        -------
        float
        """
        return self.values[0]

    def next(self, t: int, distances: np.ndarray, weights: np.ndarray) -> float | None:
        """The t-th value, or None when the list is exhausted.

        Parameters
        ----------
        t : int
            The generation.
        distances : numpy.ndarray
            Unused.
        weights : numpy.ndarray
            Unused.

        Returns
        -------
        float or None
        """
        return self.values[t] if t < len(self.values) else None


def next_epsilon(epsilon: Epsilon, t: int, distances: np.ndarray,
                 weights: np.ndarray) -> float | None:
    """Generation t's threshold from ``epsilon``, checked: a number >= 0, inf or None.

    Parameters
    ----------
    epsilon : Epsilon
        The run's schedule.
    t : int
        The generation the threshold is for.
    distances : numpy.ndarray
        The previous population's distances (already checked to be >= 0).
    weights : numpy.ndarray
        Their normalised weights.

    Returns
    -------
    float or None
        None when the schedule is exhausted.

    Raises
    ------
    InputError
        When the schedule gives NaN, a negative value or something that is not a number.
    """
    value = epsilon.next(t, distances, weights)
    if value is None:
        return None
    return _threshold(f"epsilon schedule {type(epsilon).__qualname__}",
                      f"the threshold it gave for generation {t}", value)
