"""The model behind ``dabc demo``: a conjugate normal model whose posterior is known exactly.

Prior ``mu ~ N(0, 1)``; data ``y_1..y_5 | mu ~ N(mu, 1)``, summarised by their mean (a
sufficient statistic, so the ABC posterior tends to the exact one as epsilon goes to 0).
The exact posterior is ``N(n * ybar / (n + 1), 1 / (n + 1))``.
"""

from __future__ import annotations

import math

import numpy as np

#: The embedded observations.
OBSERVATIONS = (1.31, 0.42, 1.87, 0.95, 0.60)
PRIOR_MEAN, PRIOR_SD, NOISE_SD = 0.0, 1.0, 1.0
N_OBS = len(OBSERVATIONS)


def observed() -> dict:
    """The observed summary statistics: the mean of the observations."""
    return {"ybar": float(np.mean(OBSERVATIONS))}


def model(params: dict, rng: np.random.Generator) -> dict:
    """Simulate five observations for ``mu`` and return their mean."""
    return {"ybar": float(rng.normal(params["mu"], NOISE_SD, N_OBS).mean())}


def prior():
    """``mu ~ N(PRIOR_MEAN, PRIOR_SD)``."""
    from ..engine import RV, Prior

    return Prior(mu=RV("norm", PRIOR_MEAN, PRIOR_SD))


def exact_posterior() -> dict[str, tuple[float, float]]:
    """Exact posterior mean and standard deviation per parameter."""
    precision = 1 / PRIOR_SD**2 + N_OBS / NOISE_SD**2
    mean = (PRIOR_MEAN / PRIOR_SD**2 + sum(OBSERVATIONS) / NOISE_SD**2) / precision
    return {"mu": (mean, math.sqrt(1 / precision))}
