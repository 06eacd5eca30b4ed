"""Small real runs for the plot and report tests (and docs/figures/make_figures.py).

Each function runs a real :class:`dabc.ABCSMC` with :class:`dabc.SingleCoreSampler` into a
SQLite file and returns the History:

- :func:`one_model_run`: ``mu``, ``sigma`` of a normal sample summarised by its mean and
  standard deviation, with an :class:`dabc.AdaptivePNormDistance` (so it also has distance
  weights);
- :func:`dying_model_run`: two models, the second of which dies out before the last
  generation;
- :func:`two_model_run`: the same data explained by noise of sd 1 (model ``narrow``,
  parameter ``mu``) or of an unknown sd of at least 1 (model ``wide``, parameters ``mu``
  and ``sigma``), also with an adaptive distance (``adaptive=False``: the default, fixed
  distance).
"""

from __future__ import annotations

import numpy as np

import dabc

TRUTH = {"mu": 1.0, "sigma": 1.5}
N_DRAWS = 20


def normal_model(params, rng):
    """Mean and standard deviation of 20 draws from N(mu, sigma)."""
    y = rng.normal(params["mu"], params["sigma"], N_DRAWS)
    return {"mean": float(y.mean()), "sd": float(y.std())}


def narrow(params, rng):
    """Mean and sd of 20 draws from N(mu, 1)."""
    y = rng.normal(params["mu"], 1.0, N_DRAWS)
    return {"mean": float(y.mean()), "sd": float(y.std())}


def wide(params, rng):
    """Mean and sd of 20 draws from N(mu, sigma)."""
    y = rng.normal(params["mu"], params["sigma"], N_DRAWS)
    return {"mean": float(y.mean()), "sd": float(y.std())}


SCHEME = 1
"""The random stream scheme of these runs (dabc.engine.work): the tests' seeds and measured
figures were chosen under scheme 1, which stored runs keep; new runs default to scheme 2."""


def one_model_run(db: str, population: int = 200, generations: int = 4,
                  seed: int = 11) -> dabc.History:
    """A one-model run (two parameters, adaptive distance) stored in ``db``."""
    prior = dabc.Prior(mu=dabc.RV("norm", 0, 2), sigma=dabc.RV("uniform", 0.2, 2.8))
    abc = dabc.ABCSMC(normal_model, prior, dabc.AdaptivePNormDistance(),
                      population_size=population, sampler=dabc.SingleCoreSampler(), seed=seed,
                      model_names=["normal"], progress=False)
    abc._stream_scheme = SCHEME
    return abc.run({"mean": 1.1, "sd": 1.4}, db=db, max_generations=generations)


def two_model_run(db: str, population: int = 200, generations: int = 4,
                  seed: int = 12, adaptive: bool = True) -> dabc.History:
    """A two-model run (one and two parameters) stored in ``db``."""
    priors = [dabc.Prior(mu=dabc.RV("norm", 0, 2)),
              dabc.Prior(mu=dabc.RV("norm", 0, 2), sigma=dabc.RV("uniform", 1.0, 2.0))]
    distance = dabc.AdaptivePNormDistance() if adaptive else None
    abc = dabc.ABCSMC([narrow, wide], priors, distance, population_size=population,
                      sampler=dabc.SingleCoreSampler(), seed=seed,
                      model_names=["narrow", "wide"], progress=False)
    abc._stream_scheme = SCHEME
    return abc.run({"mean": 0.5, "sd": 1.1}, db=db, max_generations=generations)


def all_finite(a) -> bool:
    """Whether every value of ``a`` is finite."""
    return bool(np.all(np.isfinite(np.asarray(a, dtype=float))))


def far_off(params, rng):
    """A model whose statistics are always far from the observed ones."""
    return {"mean": 100.0 + params["mu"], "sd": 100.0}


def dying_model_run(db: str, population: int = 60, generations: int = 3,
                    seed: int = 13) -> dabc.History:
    """Two models; the second (``far_off``) dies out before the last generation."""
    priors = [dabc.Prior(mu=dabc.RV("norm", 0, 2)), dabc.Prior(mu=dabc.RV("norm", 0, 2))]
    abc = dabc.ABCSMC([narrow, far_off], priors, population_size=population,
                      sampler=dabc.SingleCoreSampler(), seed=seed,
                      model_names=["narrow", "far_off"], progress=False)
    abc._stream_scheme = SCHEME
    return abc.run({"mean": 0.5, "sd": 1.1}, db=db, max_generations=generations)
