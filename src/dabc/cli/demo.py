"""The model behind ``dabc demo``: a conjugate normal model whose posterior is known exactly.

Prior ``mu ~ N(0, 1)``; data ``y_1..y_5 | mu ~ N(mu, 1)``, summarised by their mean (a
sufficient statistic, so the ABC posterior tends to the exact one as epsilon goes to 0).
The exact posterior is ``N(n * ybar / (n + 1), 1 / (n + 1))``.
"""

from __future__ import annotations

import math

import numpy as np

from ..engine import RV, Prior

#: The embedded observations.
OBSERVATIONS = (1.31, 0.42, 1.87, 0.95, 0.60)
#: The prior's mean and standard deviation, and the observation noise's standard deviation.
PRIOR_MEAN, PRIOR_SD, NOISE_SD = 0.0, 1.0, 1.0
#: The number of observations.
N_OBS = len(OBSERVATIONS)


def observed() -> dict[str, float]:
    """The observed summary statistics.

    Returns
    -------
    dict of str to float
        ``ybar``, the mean of :data:`OBSERVATIONS`.
    """
    return {"ybar": float(np.mean(OBSERVATIONS))}


def model(params: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """Simulate five observations for ``mu`` and return their mean.

    Parameters
    ----------
    params : dict of str to float
        ``mu``.
    rng : numpy.random.Generator
        The particle's random generator.

    Returns
    -------
    dict of str to float
        ``ybar``, the mean of the simulated observations.
    """
    return {"ybar": float(rng.normal(params["mu"], NOISE_SD, N_OBS).mean())}


def prior() -> Prior:
    """The prior ``mu ~ N(PRIOR_MEAN, PRIOR_SD)``.

    Returns
    -------
    Prior
        Over the one parameter ``mu``.
    """
    return Prior(mu=RV("norm", PRIOR_MEAN, PRIOR_SD))


def exact_posterior() -> dict[str, tuple[float, float]]:
    """The exact posterior, ``N(n * ybar / (n + 1), 1 / (n + 1))`` for unit variances.

    Returns
    -------
    dict of str to (float, float)
        Per parameter, its posterior mean and standard deviation.
    """
    precision = 1 / PRIOR_SD**2 + N_OBS / NOISE_SD**2
    mean = (PRIOR_MEAN / PRIOR_SD**2 + sum(OBSERVATIONS) / NOISE_SD**2) / precision
    return {"mu": (mean, math.sqrt(1 / precision))}
