"""ABCSMC: sequential Monte Carlo approximate Bayesian computation, with model selection."""

from __future__ import annotations

import copy
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import cloudpickle
import numpy as np

from ..errors import InputError, ModelError
from ..samplers.base import Sampler, WorkRequest
from ..storage import History, display_url
from . import config as _stored
from .distance import as_distance, check_distances
from .epsilon import MedianEpsilon, QuantileEpsilon, next_epsilon
from .model import Model, StatLayout
from .prior import Prior
from .progress import ProgressLine
from .transition import as_transition
from .work import GenerationWork

_log = logging.getLogger("dabc.engine")


class EpsilonStallWarning(UserWarning):
    """The epsilon schedule stopped decreasing; the run was ended."""


def _now():
    return datetime.now(UTC).replace(tzinfo=None)


class ABCSMC:
    """ABC-SMC for one model or several competing ones.

    ``models`` is a function ``f(params) -> dict`` (or ``f(params, rng)``, or a
    ``@dabc.vectorized`` function), or a list of them with a matching list of ``priors``.
    ``seed`` fixes every random number of the run: with the same seed, every DYN sampler
    gives the same populations, whatever the number of workers, and so does every STAT one.
    """

    def __init__(self, models, priors, distance=None, population_size: int = 1000,
                 sampler: Sampler | None = None, seed: int | None = None, epsilon=None,
                 transition=None, *, model_prior: Sequence[float] | None = None,
                 model_names: Sequence[str] | None = None, stay_probability: float = 0.7,
                 max_failure_rate: float = 0.1, progress: bool | None = None):
        fns = list(models) if isinstance(models, list | tuple) else [models]
        prs = list(priors) if isinstance(priors, list | tuple) else [priors]
        if len(fns) != len(prs):
            raise InputError(f"{len(fns)} models but {len(prs)} priors: give one prior per model.")
        names = list(model_names) if model_names else [None] * len(fns)
        self.models = [Model(f, n) for f, n in zip(fns, names, strict=True)]
        self.priors = [_as_prior(p, i) for i, p in enumerate(prs)]
        if not isinstance(population_size, int | np.integer) or population_size < 1:
            raise InputError("population_size must be a positive integer, "
                             f"got {population_size!r}.")
        self.population_size = int(population_size)
        self.distance = as_distance(distance)
        self.epsilon = epsilon if epsilon is not None else MedianEpsilon()
        self.transitions = [copy.deepcopy(as_transition(transition)) for _ in self.models]
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy
                                                          % 2**63)
        k = len(self.models)
        mp = np.ones(k) if model_prior is None else np.asarray(model_prior, dtype=float)
        if mp.shape != (k,) or np.any(mp < 0) or mp.sum() <= 0:
            raise InputError(f"model_prior must be {k} non-negative numbers, got {model_prior!r}.")
        self.model_prior = mp / mp.sum()
        if not 0 <= stay_probability <= 1:
            raise InputError("stay_probability must be between 0 and 1.")
        self.stay_probability = float(stay_probability)
        self.max_failure_rate = float(max_failure_rate)
        self.progress = progress
        self.sampler = sampler
        self.history: History | None = None
        self._layout: StatLayout | None = None
        self._observed = None

    # -- resume ---------------------------------------------------------------------
    @classmethod
    def load(cls, db: str = "sqlite:///dabc.db", run_id: int | None = None,
             sampler: Sampler | None = None, progress: bool | None = None, *,
             trust: bool = True, models: Sequence[Callable] | None = None) -> ABCSMC:
        """Reopen a stored run; ``run()`` then continues after its last generation.

        The engine is rebuilt by calling the constructors with the run's stored, named fields
        (:mod:`dabc.engine.config`); runs stored by dabc 0.1.0 (pickled) are read too.

        Parameters
        ----------
        db : str
            Database URL or SQLite path.
        run_id : int, optional
            The run to reopen; default the latest.
        sampler : Sampler, optional
            Sampler for the continued run (default: all cores of this machine).
        progress : bool, optional
            Progress line, as for the constructor.
        trust : bool, default True
            Whether code stored in the database may run. Stored runs hold code (the model
            functions, user distance functions and subclasses, fitted regressors) as pickles,
            and unpickling runs code. With False, a run holding code other than the models
            replaced by ``models``, or stored in the pickled format of dabc 0.1.0, is refused;
            :func:`dabc.engine.config.read_config` shows its plain fields and which are code.
        models : sequence of callable, optional
            Model functions to use instead of the stored ones (one per stored model, in their
            order): then the stored model code is never unpickled.

        Returns
        -------
        ABCSMC
            The engine, with ``history`` open on the run.

        Raises
        ------
        InputError
            When no run is stored; when ``trust=False`` and the run holds code; when the run was
            stored by a newer dabc or names a component this dabc does not know; when
            ``models`` does not give one function per stored model.
        """
        history = History(db, run_id)
        if history.id is None:
            raise InputError(f"No run stored in {history.url}; nothing to resume.")
        observed = _stored.load_observed(history.observed, trust=trust)
        layout = StatLayout(observed)
        fields = _stored.load_config(history.config, layout, trust=trust,
                                     skip_models=models is not None)
        last = history.max_t
        if not trust and last >= 0 and (code := _stored.state_code(history.state(last))):
            raise _stored.refuse_code(f"the state of generation {last} holds code ({code[0]})")
        fns = fields.models
        if models is not None:
            fns = list(models) if isinstance(models, list | tuple) else [models]
            if len(fns) != len(fields.model_names):
                raise InputError(f"models= gives {len(fns)} functions, but the run has "
                                 f"{len(fields.model_names)} models {fields.model_names}; give "
                                 "one per stored model, in that order.")
        if fields.code:
            _log.info("Loading run %s of %s: unpickling stored code (%s).", history.id,
                      display_url(history.url), ", ".join(fields.code))
        abc = cls(fns, fields.priors, distance=fields.distance,
                  population_size=fields.population_size, sampler=sampler, seed=fields.seed,
                  epsilon=fields.epsilon, transition=fields.transitions[0],
                  model_prior=fields.model_prior, model_names=fields.model_names,
                  stay_probability=fields.stay_probability,
                  max_failure_rate=fields.max_failure_rate, progress=progress)
        abc.transitions = fields.transitions
        abc.model_prior = fields.model_prior  # exactly as stored, not normalised again
        abc.history, abc._observed, abc._layout, abc._trust = history, observed, layout, trust
        return abc

    def _config(self) -> bytes:
        return _stored.dump_config(
            models=[(m.name, m.fn) for m in self.models], priors=self.priors,
            population_size=self.population_size, seed=self.seed, model_prior=self.model_prior,
            stay_probability=self.stay_probability, max_failure_rate=self.max_failure_rate,
            distance=self.distance, epsilon=self.epsilon, transitions=self.transitions,
            written_by=_version())

    # -- run ----------------------------------------------------------------------------
    def run(self, observed: Mapping | None = None, db: str = "sqlite:///dabc.db",
            minimum_epsilon: float = 0.0, max_generations: int = 10,
            max_total_simulations: int | None = None, max_walltime: float | None = None,
            min_acceptance_rate: float = 0.0) -> History:
        """Run generations until a stopping rule holds; returns the History.

        ``max_generations`` counts all generations of the run (also across a resume);
        ``max_walltime`` is in seconds (or a ``datetime.timedelta``) for this call.
        """
        if hasattr(max_walltime, "total_seconds"):
            max_walltime = max_walltime.total_seconds()
        new = self.history is None or self._observed is None
        if new:
            if observed is None:
                raise InputError("run() needs the observed summary statistics, e.g. {'y': 1.0}.")
            self._start(observed, db)
        elif observed is not None and not _same(observed, self._observed):
            raise InputError("This run was started with other observed data; start a new "
                             "ABCSMC to analyse different data.")
        history = self.history
        sampler = self.sampler if self.sampler is not None else _default_sampler()
        progress = ProgressLine(self.progress)
        t0_wall = time.monotonic()

        t = history.max_t + 1
        if t == 0:
            eps, previous = float(self.epsilon.initial()), None
        else:
            self.distance, self.epsilon, eps = _stored.load_state(
                history.state(t - 1), self._layout, trust=self._trust)
            previous = history.get_arrays(t - 1)
        if new:
            _log.info("run %s started in %s: sampler %s, population size %d, seed %d",
                      history.id, display_url(history.url), type(sampler).__name__,
                      self.population_size, self.seed)
        else:
            _log.info("run %s of %s resumed from generation %d: sampler %s, population size %d, "
                      "seed %d", history.id, display_url(history.url), t, type(sampler).__name__,
                      self.population_size, self.seed)
        reason = self._stop_before(t, eps, history, max_generations, max_total_simulations)
        try:
            while reason is None:
                reason, eps_next, previous, info = self._generation(
                    t, eps, previous, sampler, progress, history, max_total_simulations)
                if reason is not None:
                    break
                _log_generation(history.id, t, info)
                eps_done, eps = eps, eps_next
                if sampler.stop_requested():
                    reason = f"stop requested through the sampler after generation {t}"
                    break
                reason = _stop_after(
                    t, eps_done, eps, info, history, self.epsilon, minimum_epsilon,
                    max_generations, max_total_simulations, max_walltime, min_acceptance_rate,
                    time.monotonic() - t0_wall)
                t += 1
        except BaseException as exc:
            history.set_status("failed", f"stopped by an error in generation {t}")
            _log_failure(history.id, t, exc)
            raise
        finally:
            sampler.close()
        history.set_status("done", reason)
        _log.info("run %s stopped after generation %d: %s", history.id, history.max_t, reason)
        return history

    def _start(self, observed, db):
        self._layout = StatLayout(observed)
        self._observed = {k: observed[k] for k in observed}
        self._trust = True  # this process wrote the run's code itself
        self.distance.initialize(self._layout)
        self.distance.check_priors(self.priors)
        history = History(db)
        history.create_run(
            seed=self.seed, population_size=self.population_size,
            model_names=[m.name for m in self.models],
            param_names=[p.names for p in self.priors], stat_columns=self._layout.columns(),
            observed=cloudpickle.dumps(self._observed), config=self._config(),
            version=_version())
        self.history = history

    def _stop_before(self, t, eps, history, max_generations, max_total_simulations):
        if t >= max_generations:
            return f"max_generations={max_generations} reached"
        if max_total_simulations is not None and history.total_simulations >= \
                max_total_simulations:
            return f"max_total_simulations={max_total_simulations} reached"
        if eps is None:
            return "epsilon schedule exhausted"
        return None

    def _generation(self, t, eps, previous, sampler, progress, history, max_total_simulations):
        """Sample, weight and store generation t.

        Returns (why the run stops or None, next epsilon, stored particles, summary row).
        """
        started, tic = _now(), time.perf_counter()
        n_models = len(self.models)
        if previous is None:
            model_probs, transitions = self.model_prior.copy(), None
        else:
            model_probs = np.zeros(n_models)
            transitions = [None] * n_models
            for m, a in previous.items():
                model_probs[m] = a["weight"].sum()
                trans = self.transitions[m]
                trans.fit(a["theta"], a["weight"])
                transitions[m] = trans
            model_probs /= model_probs.sum()
        work = GenerationWork(t, self.seed, self.models, self.priors, self._layout,
                              self.distance, eps, model_probs, transitions,
                              self.stay_probability, token=f"{uuid.uuid4().hex}:{t}",
                              max_failure_rate=self.max_failure_rate)
        budget = None
        if max_total_simulations is not None:
            budget = max_total_simulations - history.total_simulations
        progress.start(t, eps)
        result = sampler.sample(WorkRequest(work, self.population_size, budget, progress,
                                            generation=t))
        pop, evals = result.population, result.evaluations
        if not result.complete:
            return (f"max_total_simulations={max_total_simulations} reached during generation "
                    f"{t} ({len(pop)} of {self.population_size} particles accepted; "
                    "generation not stored)"), None, None, None
        logw = self._log_weights(pop, previous, model_probs, transitions)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        probs = np.bincount(pop.model, weights=w, minlength=n_models)
        per_model = {}
        for m in np.flatnonzero(probs > 0):
            rows = pop.model == m
            per_model[int(m)] = {"theta": pop.theta[rows, :self.priors[m].dim].copy(),
                                 "weight": w[rows], "distance": pop.distance[rows],
                                 "stats": pop.stats[rows], "id": pop.ids[rows]}
        # Next generation's distance and threshold, from this generation's simulations.
        ok = ~evals.failed
        self.distance.update(evals.stats[ok], evals.theta[ok], t)
        obs = self._layout.observed
        new_d = check_distances(self.distance, self.distance.batch(pop.stats, obs), pop.stats,
                                obs, self._layout)
        eps_next = next_epsilon(self.epsilon, t + 1, new_d, w)
        eps_next = None if eps_next is None else float(eps_next)
        state = _stored.dump_state(self.distance, self.epsilon, eps_next)
        ess = 1 / (w**2).sum()
        info = {"epsilon": eps, "n_simulations": len(evals), "n_evaluated": result.n_evaluated,
                "n_accepted": len(pop), "acceptance_rate": len(pop) / len(evals), "ess": ess,
                "walltime_s": time.perf_counter() - tic, "started": started, "finished": _now(),
                "model_probabilities": [float(p) for p in probs]}
        history.append_generation(t, info, per_model, state)
        progress.finish(f"generation {t}: epsilon {eps:.4g}, {len(evals):,} simulations, "
                        f"acceptance rate {info['acceptance_rate']:.3f}, ESS {ess:.0f}")
        return None, eps_next, per_model, info

    def _log_weights(self, pop, previous, model_probs, transitions):
        """Importance weights: prior over the model-and-parameter proposal density."""
        logw = np.log(self.model_prior[pop.model])
        if previous is None:
            return logw  # proposals came from the prior: equal weights
        alive = np.flatnonzero(model_probs > 0)
        k = len(alive)
        for m in np.unique(pop.model):
            rows = np.flatnonzero(pop.model == m)
            theta = pop.theta[rows, :self.priors[m].dim]
            # probability that the model-perturbation step lands on m
            if k == 1:
                kernel = 1.0
            else:
                kernel = sum(model_probs[mp] * (self.stay_probability if mp == m else
                                                (1 - self.stay_probability) / (k - 1))
                             for mp in alive)
            logw[rows] += self.priors[m].logpdf(theta) - np.log(kernel) \
                - transitions[m].logpdf(theta)
        return logw


def _log_generation(run_id, t, info) -> None:
    _log.info("run %s: generation %d stored: epsilon %.4g, %d simulations, acceptance rate "
              "%.3f, ESS %.0f, %.2f s", run_id, t, info["epsilon"], info["n_simulations"],
              info["acceptance_rate"], info["ess"], info["walltime_s"])


def _log_failure(run_id, t, exc: BaseException) -> None:
    """One ERROR record for the error that ends a run: its type and message, without the
    traceback (the samplers already logged a generation's first failed evaluation with its
    traceback at WARNING, and the exception itself reaches the caller)."""
    if isinstance(exc, Exception):
        message = str(exc)
        if isinstance(exc, ModelError) and "\n" in message:  # ends with the first traceback
            message = message.split("\n", 1)[0] + " (traceback logged on dabc.samplers)"
        _log.error("run %s failed in generation %d: %s: %s", run_id, t, type(exc).__name__,
                   message)
    else:  # KeyboardInterrupt, SystemExit: not an error of the run
        _log.warning("run %s interrupted in generation %d (%s)", run_id, t, type(exc).__name__)


def _stop_after(t, eps_done, eps_next, info, history, epsilon, minimum_epsilon, max_generations,
                max_total_simulations, max_walltime, min_acceptance_rate, elapsed):
    if eps_done <= minimum_epsilon:
        return f"minimum_epsilon={minimum_epsilon} reached (epsilon {eps_done:.4g})"
    if t + 1 >= max_generations:
        return f"max_generations={max_generations} reached"
    if max_total_simulations is not None and history.total_simulations >= max_total_simulations:
        return f"max_total_simulations={max_total_simulations} reached"
    if max_walltime is not None and elapsed >= max_walltime:
        return f"max_walltime={max_walltime}s reached"
    if info["acceptance_rate"] < min_acceptance_rate:
        return (f"acceptance rate {info['acceptance_rate']:.3g} below "
                f"min_acceptance_rate={min_acceptance_rate}")
    if eps_next is None:
        return "epsilon schedule exhausted"
    if isinstance(epsilon, QuantileEpsilon) and np.isfinite(eps_done) and eps_next >= eps_done:
        msg = (f"epsilon stalled at {eps_done:.4g}: the {epsilon.alpha:g}-quantile of the "
               f"accepted distances did not decrease (next would be {eps_next:.4g}). This is "
               "typical of discrete distances (the median of {0, 1} is never below 1). Use "
               "QuantileEpsilon with a smaller alpha, a ListEpsilon, or a continuous distance.")
        warnings.warn(msg, EpsilonStallWarning, stacklevel=3)
        return msg
    return None


def _as_prior(p, i) -> Prior:
    if isinstance(p, Prior):
        return p
    if isinstance(p, Mapping):
        return Prior(p)
    raise InputError(f"Prior {i} is {p!r} ({type(p).__name__}), not a dabc.Prior. Write "
                     "dabc.Prior(theta=dabc.RV('norm', 0, 1)).")


def _same(a: Mapping, b: Mapping) -> bool:
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]))
                                    for k in a)


def _default_sampler() -> Sampler:
    from ..samplers import MulticoreEvalParallelSampler

    return MulticoreEvalParallelSampler()


def _version() -> str:
    from .._version import __version__

    return __version__
