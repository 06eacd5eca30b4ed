"""One fit's result, and the task that produces it on a worker (or in this process)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .artifact import runtime
from .errors import StanDataError, StanEnvironmentError, StanFitError

logger = logging.getLogger("dabc.stan")


@dataclasses.dataclass
class Fit:
    """The outcome of one (model, data set) run: draws and a summary, or Stan's error message.

    Made by :func:`dabc.stan.sample_many` and :meth:`dabc.stan.StanModel.sample`, not by users.

    Parameters
    ----------
    model, dataset
        The model's name and the data set's name.
    seed, chains, draws
        Stan's seed, the number of chains and of saved draws per chain.
    ok
        False when the fit failed; then ``error`` holds Stan's message, ``error_type`` the
        exception's class name, and the draws are empty.
    error, error_type
        See ``ok``.
    posterior, sample_stats
        Names -> arrays shaped ``(chain, draw, *dims)``.
    summary
        Tidy table, one row per scalar quantity (see :func:`summarise`).
    messages
        Stan's warnings and errors during sampling.
    seconds, host, pid
        Time the fit took, and where it ran.
    """

    model: str
    dataset: Any
    seed: int
    chains: int
    draws: int
    ok: bool = True
    error: str | None = None
    error_type: str | None = None
    posterior: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    sample_stats: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    summary: pd.DataFrame | None = dataclasses.field(default=None, repr=False)
    messages: list[str] = dataclasses.field(default_factory=list, repr=False)
    seconds: float = 0.0
    host: str = ""
    pid: int = 0
    _idata: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def inference_data(self) -> Any:
        """The fit as an ArviZ ``InferenceData`` (posterior and sample_stats groups).

        Raises the fit's error (see :meth:`exception`) when it failed.
        """
        if not self.ok:
            raise self.exception()
        if self._idata is None:
            az = _arviz()

            self._idata = az.from_dict(posterior=self.posterior, sample_stats=self.sample_stats)
        return self._idata

    def exception(self) -> Exception:
        """The failure as an exception of its original kind (for re-raising).

        Returns
        -------
        Exception
            A StanDataError, StanEnvironmentError, InputError or (for any other failure)
            StanFitError whose message names the model, the data set and Stan's message.
        """
        kinds = {"StanDataError": StanDataError, "StanFitError": StanFitError,
                 "StanEnvironmentError": StanEnvironmentError, "InputError": InputError}
        return kinds.get(self.error_type or "", StanFitError)(
            f"Fit of model {self.model!r} to data set {self.dataset!r} failed: {self.error}")


def _arviz():
    """ArviZ, imported without its FutureWarning about an upcoming refactor (noise on workers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def summarise(posterior: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Tidy per-quantity summary of draws, via ArviZ.

    Parameters
    ----------
    posterior
        Names -> arrays shaped ``(chain, draw, *dims)``.

    Returns
    -------
    pandas.DataFrame
        One row per scalar quantity (``beta[1,2]`` for an element); columns parameter, mean,
        sd, mcse_mean (ArviZ's ESS-based Monte Carlo standard error of the mean), ess_bulk,
        ess_tail, r_hat (NaN with one chain), q5, q50, q95. ESS, R-hat and MCSE are NaN for a
        constant or non-finite quantity.
    """
    az = _arviz()

    rows = []
    for name, arr in posterior.items():
        arr = np.asarray(arr, dtype=float)
        dims = arr.shape[2:]
        for idx in np.ndindex(*dims) if dims else [()]:
            x = arr[(slice(None), slice(None), *idx)]
            label = name + (f"[{','.join(map(str, idx))}]" if idx else "")
            if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
                ess_b = ess_t = rhat = mcse_m = np.nan
            else:
                ess_b = float(np.ravel(az.ess(x, method="bulk"))[0])
                ess_t = float(np.ravel(az.ess(x, method="tail"))[0])
                rhat = float(np.ravel(az.rhat(x))[0]) if x.shape[0] > 1 else np.nan
                mcse_m = float(np.ravel(az.mcse(x, method="mean"))[0])
            q5, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
            rows.append({
                "parameter": label, "mean": float(np.mean(x)), "sd": float(np.std(x, ddof=1)),
                "mcse_mean": mcse_m, "ess_bulk": ess_b, "ess_tail": ess_t,
                "r_hat": rhat, "q5": q5, "q50": q50, "q95": q95,
            })
    return pd.DataFrame(rows)


def run_fit(model: Any, dataset: Any, data: Mapping | None, *, chains: int, draws: int,
            warmup: int | None, seed: int, sampler_args: dict | None = None) -> Fit:
    """Sample ``model`` on ``data`` in this process (the task of a fleet).

    Parameters
    ----------
    model
        A :class:`~dabc.stan.StanModel` (anything with ``name`` and ``artifact``).
    dataset
        The data set's name, recorded in the Fit.
    data
        The program's data.
    chains, draws, warmup, seed, sampler_args
        As for :meth:`dabc.stan.StanModel.sample` (``warmup`` None: ``draws``).

    Returns
    -------
    Fit
        Stan errors become a failed Fit carrying Stan's message instead of an exception, so one
        bad fit cannot stop a fleet.
    """
    start = time.perf_counter()
    fit = Fit(model=model.name, dataset=dataset, seed=int(seed), chains=int(chains),
              draws=int(draws), host=socket.gethostname(), pid=os.getpid())
    try:
        if data is not None and not isinstance(data, Mapping):
            raise StanDataError(f"data must be a dict of Stan data variables, got "
                                f"{type(data).__name__}.")
        rt = runtime(model.artifact)
        fit.posterior, fit.sample_stats, fit.messages = rt.sample(
            dict(data or {}), int(chains), int(draws), int(draws if warmup is None else warmup),
            int(seed), dict(sampler_args or {}))
        fit.summary = summarise(fit.posterior)
    except (StanDataError, StanFitError, StanEnvironmentError, InputError) as exc:
        fit.ok, fit.error, fit.error_type = False, str(exc), type(exc).__name__
        logger.debug("fit of %r to data set %r failed in process %d: %s", model.name, dataset,
                     fit.pid, exc)
    except Exception as exc:  # noqa: BLE001 - reported per fit, the fleet goes on
        fit.ok, fit.error, fit.error_type = False, f"{type(exc).__name__}: {exc}", \
            type(exc).__name__
        logger.warning("fit of %r to data set %r failed in process %d with an unexpected "
                       "error", model.name, dataset, fit.pid, exc_info=True)
    fit.seconds = time.perf_counter() - start
    return fit
