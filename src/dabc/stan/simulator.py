"""Stan as an ABC simulator: generated quantities drawn by fixed-parameter sampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .artifact import runtime
from .model import StanModel


class StanSimulator:
    """A dabc model (``f(params, rng) -> dict of statistics``) that simulates with Stan.

    Each call runs Stan's fixed-parameter sampler for one draw: the program's parameters are
    held at the values given in ``params`` (passed to Stan as initial values) and its
    ``generated quantities`` block draws the simulated data with ``*_rng`` functions. Entries
    of ``params`` that are not Stan parameters are passed as data, so a program may also take
    the ABC parameters in its ``data`` block. The Stan seed is drawn from ``rng``, so dabc's
    seeding makes runs reproducible.

    Usable with :class:`dabc.ABCSMC` like any model. In worker processes the compiled artifact
    must be available: forked workers (multicore samplers) inherit it; for Dask samplers call
    :func:`dabc.stan.ship` first. Each call costs about a millisecond of overhead.

    Parameters
    ----------
    model
        The compiled program; its ``generated quantities`` are the simulated statistics.
    data
        The program's fixed data.
    statistics
        Names of the generated quantities to return (default: every quantity that is not an
        ABC parameter).
    name
        The model's name in dabc (default: the StanModel's name).

    Raises
    ------
    dabc.InputError
        When ``model`` is not a :class:`StanModel`.
    """

    def __init__(self, model: StanModel, data: Mapping | None = None,
                 statistics: Sequence[str] | None = None, name: str | None = None):
        if not isinstance(model, StanModel):
            raise InputError(f"stan_simulator needs a StanModel, got {type(model).__name__}.")
        self.model = model
        self.data = dict(data or {})
        self.statistics = list(statistics) if statistics is not None else None
        self.__name__ = name or model.name
        self._param_names: set[str] | None = None

    def __call__(self, params: Mapping, rng: np.random.Generator) -> dict:
        """Simulate once with the parameters fixed at ``params``.

        Parameters
        ----------
        params
            ABC parameter name -> value (Stan parameters are fixed, others passed as data).
        rng
            Draws Stan's seed.

        Returns
        -------
        dict
            Statistic name -> float (scalars) or array.

        Raises
        ------
        dabc.InputError
            When a requested statistic is not a quantity of the program.
        StanDataError, StanFitError
            When Stan rejects the data or fails, with Stan's message.
        """
        rt = runtime(self.model.artifact)
        if self._param_names is None:  # ABC parameters may be Stan data: offer them as data
            self._param_names = set(rt.param_names({**params, **self.data}))
        init = {k: v for k, v in params.items() if k in self._param_names}
        data = dict(self.data)
        data.update({k: v for k, v in params.items() if k not in self._param_names})
        out = rt.simulate(data, init, seed=int(rng.integers(2**31 - 1)))
        wanted = self.statistics if self.statistics is not None else [
            k for k in out if k not in params]
        missing = [k for k in wanted if k not in out]
        if missing:
            raise InputError(f"Stan program {self.model.name!r} has no quantity {missing}; it "
                             f"has {sorted(out)}.")
        first = {k: out[k][0] for k in wanted}  # the one draw
        return {k: (float(v) if np.ndim(v) == 0 else np.asarray(v)) for k, v in first.items()}


def stan_simulator(model: StanModel, data: Mapping | None = None,
                   statistics: Sequence[str] | None = None,
                   name: str | None = None) -> StanSimulator:
    """Turn a Stan program's generated quantities into a dabc model for :class:`dabc.ABCSMC`.

    Parameters
    ----------
    model
        The compiled program.
    data
        The program's fixed data.
    statistics
        Names of the generated quantities to return (default: every quantity that is not an
        ABC parameter).
    name
        The model's name in dabc (default: the StanModel's name).

    Returns
    -------
    StanSimulator
        A callable ``f(params, rng) -> dict``; see :class:`StanSimulator`.

    Raises
    ------
    dabc.InputError
        When ``model`` is not a :class:`StanModel`.
    """
    return StanSimulator(model, data, statistics, name)
