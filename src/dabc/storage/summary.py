"""Summaries of a stored posterior: weighted mean, spread and quantiles of one parameter.

A stored generation is a weighted sample (``History.get_distribution`` gives the particles
and their weights); these functions reduce it to the numbers a user reads first. They live
beside the storage that produces the samples, below the engine and the CLI, so both
``dabc demo`` and a user's notebook can call them.

:func:`weighted_quantile` here interpolates the weighted CDF (midpoint rule), which suits
reporting an interval. It is not the quantile that sets epsilon thresholds
(``dabc.engine.epsilon.weighted_quantile``, the smallest stored value whose cumulative
weight reaches the level, so a threshold is always one of the distances).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["posterior_summary", "weighted_quantile"]


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """The ``q``-quantile of ``x`` under weights ``w``, interpolating the weighted CDF.

    Each value sits at the middle of its weight's step of the CDF, and the quantile is
    interpolated linearly between those points (clamped to the smallest and largest value).

    Parameters
    ----------
    x : numpy.ndarray
        The values (1-d).
    w : numpy.ndarray
        Their non-negative weights, not necessarily normalised, with a positive sum.
    q : float
        The level, in [0, 1].

    Returns
    -------
    float
        The quantile.

    Examples
    --------
    >>> weighted_quantile(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]), 0.5)
    2.0
    """
    order = np.argsort(x, kind="stable")
    x, w = np.asarray(x, float)[order], np.asarray(w, float)[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return float(np.interp(q, cdf, x))


def posterior_summary(values: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Weighted mean, standard deviation and central 95% interval of one parameter.

    Parameters
    ----------
    values : numpy.ndarray
        The parameter's value in each particle (1-d).
    weights : numpy.ndarray
        The particles' weights (normalised here).

    Returns
    -------
    dict of str to float
        ``mean``, ``sd``, ``q025`` and ``q975`` (the interval's ends, by
        :func:`weighted_quantile`).

    Examples
    --------
    >>> params, w = history.get_distribution()            # doctest: +SKIP
    >>> posterior_summary(params["mu"].to_numpy(), w)      # doctest: +SKIP
    {'mean': 0.86, 'sd': 0.41, 'q025': 0.05, 'q975': 1.66}
    """
    w = np.asarray(weights, float) / np.sum(weights)
    mean = float(w @ values)
    sd = float(math.sqrt(max(w @ (values - mean) ** 2, 0.0)))
    return {"mean": mean, "sd": sd, "q025": weighted_quantile(values, w, 0.025),
            "q975": weighted_quantile(values, w, 0.975)}
