"""ABCSMC: sequential Monte Carlo approximate Bayesian computation, with model selection."""

from __future__ import annotations

import copy
import logging
import os
import signal
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import cloudpickle
import numpy as np

from ..errors import InputError, ModelError
from ..samplers.base import IDS, SLOTS, Sampler, WorkRequest
from ..storage import History, display_url, sqlite_path
from . import config as _stored
from .checkpoint import GenerationCheckpoint, RunInterrupted, StopGuard
from .distance import as_distance, check_distances
from .epsilon import MedianEpsilon, QuantileEpsilon, next_epsilon
from .live import LiveRecorder, ProgressFanout, apply_controls, discard_pending
from .model import Model, StatLayout
from .prior import Prior
from .progress import ProgressLine, notice
from .transition import as_transition
from .work import STREAM_SCHEME, STREAM_SCHEMES, GenerationWork

_log = logging.getLogger("dabc.engine")


#: ``ABCSMC.run``'s default ``min_eps_diff``: stop once epsilon would fall by less than 5 %.
DEFAULT_MIN_EPS_DIFF: float = 0.05


class EpsilonStallWarning(UserWarning):
    """Warned when a quantile epsilon schedule stops decreasing; the run then ends.

    The next threshold (a quantile of the accepted distances) would be no smaller than the
    last one, so further generations would not get closer to the posterior. This is typical
    of discrete distances: the median of distances in {0, 1} is never below 1. The warning's
    message, also stored as the run's stop reason, suggests a smaller ``alpha``, a
    :class:`ListEpsilon` or a continuous distance.

    See Also
    --------
    QuantileEpsilon, MedianEpsilon : The schedules that can stall.

    Examples
    --------
    >>> import warnings
    >>> warnings.simplefilter("error", EpsilonStallWarning)  # doctest: +SKIP
    """


def _now():
    return datetime.now(UTC).replace(tzinfo=None)


class ABCSMC:
    """Approximate Bayesian computation by sequential Monte Carlo (ABC-SMC), for one model or
    several competing ones (model selection).

    ABC infers a model's parameters when its likelihood cannot be written down, but the model
    can be simulated. A simulation is kept (*accepted*) when its summary statistics are close
    to the observed ones: when the *distance* between the two is at most a threshold
    *epsilon*. The accepted parameters approximate the posterior, better the smaller epsilon
    is. ABC-SMC gets there in *generations*: generation 0 draws parameters from the prior and
    accepts ``population_size`` of them (the *particles*); each later generation lowers
    epsilon, proposes parameters by perturbing the previous generation's particles with a
    *transition* kernel, and weights the accepted ones by prior density over proposal
    density. Each generation is stored as it finishes (see :meth:`run`), so a run can be read
    while it goes on and resumed after it stops (:meth:`load`). Without ``db=``, :meth:`run`
    stores it in the SQLite file ``dabc.db`` in the current folder, and logs that file's path
    at INFO (``logging.getLogger("dabc")``) when the run starts.

    Parameters
    ----------
    models : callable or list of callable
        The model: a function of a dict of parameter values, ``f(params, rng)`` (``rng`` is a
        ``numpy.random.Generator`` for this simulation alone: draw all randomness from it) or
        ``f(params)`` (uses the global ``numpy.random``, seeded before each call),
        or a :func:`vectorized` function that simulates a whole block of particles at once.
        It returns a dict of summary statistics with the keys and shapes of the observed data
        given to :meth:`run`. A list of functions is a set of competing models: the run then
        also estimates each model's posterior probability. An evaluation that raises or
        returns NaN or infinity is a failure and is never accepted.
    priors : Prior or list of Prior
        The prior of each model's parameters, e.g. ``Prior(mu=RV("norm", 0, 1))``; one per
        model, in the order of ``models``. A dict of :class:`RV` is taken as a Prior.
    distance : Distance or callable, optional
        How far a simulation's statistics are from the observed ones. Default: the Euclidean
        distance over all statistics (:class:`PNormDistance`). Statistics on very different
        scales call for :class:`AdaptivePNormDistance` (re-weights each statistic every
        generation), many uninformative ones for :class:`LearnedStatisticsDistance`; a
        function ``d(x, x0) -> float`` of two statistics dicts is used as a
        :class:`FunctionDistance`.
    population_size : int, default 1000
        Particles accepted per generation. More particles describe the posterior better (the
        Monte Carlo error shrinks like one over its square root) and keep the transition
        kernel well estimated, at proportionally more simulations per generation. A few
        hundred suffice for a rough look at a low-dimensional posterior.
    sampler : Sampler, optional
        Where the simulations run: :class:`SingleCoreSampler` (this process),
        :class:`MulticoreEvalParallelSampler` (local worker processes), Dask, Redis or any
        executor (see the samplers' docs). Default: a :class:`MulticoreEvalParallelSampler`
        on all usable CPUs, created when :meth:`run` starts. The run closes the sampler
        when it ends; a closed sampler can be used again.
    seed : int, optional
        Fixes every random number of the run: with the same seed, every DYN sampler gives
        the same populations whatever the number of workers, and so does every STAT one
        (the two contracts give different, equally valid populations). Default: a seed drawn
        from the operating system's entropy, stored with the run so that it can be resumed
        exactly.
    epsilon : Epsilon, optional
        The epsilon schedule: each generation's acceptance threshold. Default:
        :class:`MedianEpsilon`, generation 0 accepts every draw from the prior (epsilon
        infinite) and each later threshold is the weighted median of the previous
        generation's distances, so about half as many proposals are accepted each time.
        :class:`QuantileEpsilon` takes another quantile (smaller: faster descent, more
        simulations per generation), :class:`ConstantEpsilon` and :class:`ListEpsilon` give
        the thresholds in advance.
    transition : Transition, optional
        The perturbation kernel that proposes a generation's parameters from the previous
        generation's weighted particles; each model gets its own copy, refitted before every
        generation. Default: :class:`MultivariateNormalTransition` (a Gaussian around each
        particle with the population's covariance scaled by Silverman's rule);
        :class:`LocalTransition` suits curved or multi-modal posteriors.
    model_prior : sequence of float, optional
        Prior probability of each model, one non-negative number per model (normalised to
        sum to 1). Default: uniform.
    model_names : sequence of str, optional
        Names of the models, as stored with the run and shown in messages. Default: each
        function's ``__name__``.
    stay_probability : float, default 0.7
        With several models: the probability that a proposed particle keeps the model of
        the particle it perturbs; otherwise it moves to another model still alive, chosen
        uniformly. A model whose probability falls to 0 is dropped from later generations.
    max_failure_rate : float, default 0.1
        Largest share of a generation's evaluations that may fail (raise, or return NaN or
        infinity) before the run stops with :class:`~dabc.ModelError`, which shows the first
        failure's traceback. Failed evaluations are never accepted.
    progress : bool, optional
        Show a one-line progress display on standard output, rewritten as the generation
        goes on. Default: only when standard output is a terminal. ``False`` makes the run
        silent (it still logs on ``logging.getLogger("dabc")``).

    Raises
    ------
    InputError
        When an argument is unusable: not one prior per model, a model that is not
        callable, a population size that is not a positive integer, a model prior of the
        wrong length or with negative entries, a stay probability outside [0, 1], an
        unknown distance or transition.

    See Also
    --------
    ABCSMC.run : Run the generations and store them.
    ABCSMC.load : Reopen a stored run to continue it.
    History : Read the stored generations.
    Prior, RV : The parameters' prior distributions.

    Notes
    -----
    Every random number of evaluation ``i`` of generation ``t`` comes from a stream seeded
    by ``(seed, t, i)`` alone, so results do not depend on which worker evaluated what. With
    several models the importance weights include the model-perturbation kernel, and the
    model probabilities of a generation are the sums of its particles' weights per model.

    Examples
    --------
    One model, its posterior from a SQLite file:

    >>> import numpy as np
    >>> import dabc
    >>> def model(params, rng):
    ...     y = rng.normal(params["mu"], 1.0, size=5)
    ...     return {"mean": y.mean()}
    >>> abc = dabc.ABCSMC(model, dabc.Prior(mu=dabc.RV("norm", 0, 1)), population_size=200,
    ...                   sampler=dabc.SingleCoreSampler(), seed=42, progress=False)
    >>> history = abc.run({"mean": 1.03}, db="sqlite:///results.db", max_generations=4)
    >>> params, weights = history.get_distribution()
    >>> mean = float(np.average(params["mu"], weights=weights))  # the exact mean is 0.86
    >>> abs(mean - 0.86) < 0.1
    True

    Two competing models:

    >>> def wide(params, rng):
    ...     return {"mean": rng.normal(params["mu"], 3.0, size=5).mean()}
    >>> abc = dabc.ABCSMC([model, wide], [dabc.Prior(mu=dabc.RV("norm", 0, 1))] * 2,
    ...                   population_size=200, seed=1, model_names=["narrow", "wide"])
    >>> history = abc.run({"mean": 1.03}, db="sqlite:///selection.db")  # doctest: +SKIP
    >>> history.get_model_probabilities()  # doctest: +SKIP
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
        self.stopped_by_walltime = False  # set by run(): it stopped at max_walltime
        self._eps_reached: float | None = None  # see _generation (min_eps_diff)
        self._layout: StatLayout | None = None
        self._observed = None
        self._stream_scheme = STREAM_SCHEME  # a loaded run keeps its own (see load)

    # -- resume ---------------------------------------------------------------------
    @classmethod
    def load(cls, db: str = "sqlite:///dabc.db", run_id: int | None = None,
             sampler: Sampler | None = None, progress: bool | None = None, *,
             trust: bool = True, models: Sequence[Callable] | None = None) -> ABCSMC:
        """Reopen a stored run; :meth:`run` then continues after its last generation.

        The engine is rebuilt by calling the constructors with the run's stored, named fields
        (:mod:`dabc.engine.config`): models, priors, distance (with what it learned),
        epsilon schedule, transitions, seed, population size and the other settings, and the
        observed data. Runs stored by dabc 0.1.0 (pickled) are read too. With a sampler of
        the same contract (DYN or STAT) as before, the continued generations are identical
        to those of a run that was never interrupted.

        Parameters
        ----------
        db : str, default "sqlite:///dabc.db"
            The run's database: an SQLAlchemy URL or a file path, taken as SQLite (the
            default is :meth:`run`'s default database).
        run_id : int, optional
            The run to reopen (``History.all_runs()`` lists them). Default: the latest run
            in the database.
        sampler : Sampler, optional
            Where the continued run's simulations run (samplers are not stored). Default: a
            :class:`MulticoreEvalParallelSampler` on all usable CPUs.
        progress : bool, optional
            Show the one-line progress display, as for the constructor. Default: only when
            standard output is a terminal.
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
            The engine, with ``history`` open on the run; call :meth:`run` (without
            ``observed``) to continue it.

        Raises
        ------
        InputError
            When no run is stored; when ``trust=False`` and the run holds code; when the run was
            stored by a newer dabc or names a component this dabc does not know; when
            ``models`` does not give one function per stored model; when the database
            cannot be opened or its stored fields are damaged.

        See Also
        --------
        dabc.engine.config.read_config : A stored run's plain fields, without running code.

        Examples
        --------
        >>> abc = dabc.ABCSMC.load("sqlite:///results.db")  # doctest: +SKIP
        >>> history = abc.run(max_generations=15)  # doctest: +SKIP

        A database from elsewhere, with this script's own model functions:

        >>> abc = dabc.ABCSMC.load("shared.db", trust=False, models=[model])  # doctest: +SKIP
        """
        history = History(db, run_id)
        if history.id is None:
            raise InputError(f"No run stored in {history.url}; nothing to resume.")
        observed = _stored.load_observed(history.observed, trust=trust)
        layout = StatLayout(observed)
        fields = _stored.load_config(history.config, layout, trust=trust,
                                     skip_models=models is not None)
        if fields.stream_scheme not in STREAM_SCHEMES:
            raise InputError(f"Run {history.id} uses random stream scheme {fields.stream_scheme}; "
                             f"this dabc runs schemes {list(STREAM_SCHEMES)}: upgrade dabc to "
                             "resume it.")
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
        abc._stream_scheme = fields.stream_scheme  # resumed under the scheme it started with
        abc.history, abc._observed, abc._layout, abc._trust = history, observed, layout, trust
        return abc

    def _config(self) -> bytes:
        return _stored.dump_config(
            models=[(m.name, m.fn) for m in self.models], priors=self.priors,
            population_size=self.population_size, seed=self.seed, model_prior=self.model_prior,
            stay_probability=self.stay_probability, max_failure_rate=self.max_failure_rate,
            distance=self.distance, epsilon=self.epsilon, transitions=self.transitions,
            written_by=_version(), stream_scheme=self._stream_scheme)

    # -- run ----------------------------------------------------------------------------
    def run(self, observed: Mapping | None = None, db: str = "sqlite:///dabc.db",
            minimum_epsilon: float = 0.0, max_generations: int = 10,
            max_total_simulations: int | None = None, max_walltime: float | None = None,
            min_acceptance_rate: float = 0.0, checkpoint: bool = True,
            steering: bool = True, min_eps_diff: float = DEFAULT_MIN_EPS_DIFF) -> History:
        """Run generations until a stopping rule holds, storing each one as it finishes.

        A new run is created in ``db`` on the first call. Called again (on the same object,
        or on one from :meth:`load`), ``run`` continues the stored run after its last
        generation, in that run's database. Every stopping rule is checked after each
        generation; the first one that holds ends the run, and its reason is stored with the
        run (``History.all_runs()``, ``dabc info``) and logged. By default a run ends after
        10 generations (``max_generations``) or once epsilon no longer decreases by 5 %
        (``min_eps_diff``), whichever comes first. Without ``db=``, the run is stored in
        ``dabc.db`` in the current folder; the path is logged at INFO when the run starts.

        Parameters
        ----------
        observed : mapping, optional
            The observed summary statistics, e.g. ``{"mean": 1.03, "hist": array}``: the
            keys and shapes every model must return. Required to start a run; when
            continuing one it may be left out (if given, it must equal the run's data).
        db : str, default "sqlite:///dabc.db"
            Where a new run is stored: an SQLAlchemy URL (``"sqlite:///results.db"``,
            ``"postgresql+psycopg2://user:password@host/database"``) or a file path, taken as
            SQLite. The default is the SQLite file ``dabc.db`` in the current working
            directory; one database holds any number of runs, so each new run is added to
            it. Ignored when continuing a run: it stays in its own database.
        minimum_epsilon : float, default 0.0
            Stop after a generation whose epsilon is at or below this value.
        max_generations : int, default 10
            Stop once this many generations are stored, counting those stored before a
            resume: ``run(max_generations=10)`` after 6 stored generations runs 4 more.
        max_total_simulations : int, optional
            Stop once the run's simulations (all generations) reach this number. The limit
            may be reached inside a generation; that generation is then not stored.
        max_walltime : float or datetime.timedelta, optional
            Stop this many seconds after this call started, even in the middle of a
            generation: the results received so far are saved (see ``checkpoint``) and the
            run's status becomes "interrupted"; ``run`` then returns, and
            :attr:`stopped_by_walltime` is True. Running again continues that generation
            where it stopped. (Outside the main thread the time is checked as results
            arrive.)
        min_acceptance_rate : float, default 0.0
            Stop after a generation whose acceptance rate (accepted particles over
            simulations) is below this value: further generations would be too costly.
        checkpoint : bool, default True
            Save the results of the running generation in the database as they arrive
            (in batches: every result of a slow simulation, about once a second for fast
            ones), so that a run stopped in the middle of a generation (SIGTERM, Ctrl-C,
            ``max_walltime``, even SIGKILL) resumes it without simulating again what had
            arrived, with the populations of an uninterrupted run. ``False`` saves nothing
            and ignores results saved earlier.

        steering : bool, default True
            Whether ``max_generations``, ``minimum_epsilon`` and ``max_total_simulations``
            may be changed from outside while the run runs (the dashboard,
            :meth:`History.request_control`). A change is applied after the generation in
            progress is stored, logged with who asked, and recorded in
            :meth:`History.events`; with ``False`` it is refused (and recorded as refused).
            A request to stop after the generation in progress is always honoured.
        min_eps_diff : float, default 0.05
            Stop when epsilon no longer decreases meaningfully: after a generation, when the
            next threshold would be less than this fraction below the largest distance
            among the particles just accepted (which is at most this generation's epsilon;
            it is re-measured by the next generation's distance, so that the rule also holds
            for adaptive distances that re-weight their statistics). For example 0.05: stop
            when epsilon would fall by less than 5 %. It applies to the quantile schedules
            (:class:`QuantileEpsilon`, the default :class:`MedianEpsilon`), not to thresholds
            given in advance. ``0`` turns it off. Like pyABC's ``min_eps_diff``, but relative,
            so that one default suits any distance scale.

            Why 5 %: with the median schedule each generation needs about twice the
            simulations of the one before, since it accepts about half as many proposals. Once
            the simulation noise dominates the distances, the threshold of a run with d
            noisy statistics falls by only about ``1 - 0.5**(1/d)`` per generation (13 % for
            5 statistics, 5 % for 14). A generation that lowers epsilon by less than 5 % buys
            little for its doubled cost; so do those of a model that cannot come close to
            the data at all (a floor under its distances). Measured with 300 particles: a
            model whose distances cannot fall below 1 stopped after 5 generations (4,082
            simulations), one with 20 noisy statistics after 6 (9,399 simulations). The rule
            does not end a run on one or a few informative statistics, where epsilon keeps
            halving (the Quick start's model): there ``max_generations``, ``minimum_epsilon``
            or ``min_acceptance_rate`` end it.

        Returns
        -------
        History
            The run's history, open on its database: read the populations with
            :meth:`History.get_distribution`, :meth:`History.get_all_populations` and the
            like. The run's status is "done", with the stop reason.

        Raises
        ------
        RunInterrupted
            (a ``SystemExit`` with code 143 or 130) After the first SIGTERM or SIGINT,
            once the received results are saved and the sampler closed; its message (also
            written to stderr and logged) says how to resume. A second SIGINT raises
            ``KeyboardInterrupt`` at once, a second SIGTERM ends the process at once.
        InputError
            When ``observed`` is missing for a new run, is not a non-empty dict of finite
            numbers, or differs from the data a continued run was started with; when a model
            returns other statistics than the observed ones; when the database cannot be
            opened or written.
        ModelError
            When more than ``max_failure_rate`` of a generation's evaluations fail; the
            message shows the first failure's traceback.
        WorkerError
            When the sampler's workers die repeatedly, cannot be started, or none are
            available.

        Warns
        -----
        EpsilonStallWarning
            When a quantile epsilon schedule stops decreasing; the run then ends.

        Notes
        -----
        A generation that was not finished when the run stopped is not stored; the results
        it had received are kept in the database (its checkpoint, deleted when the
        generation is stored), and :meth:`load` and ``run()`` continue that generation.
        ``History.interruption()`` and ``dabc info`` describe such a run as "interrupted in
        generation t, r results saved". The status becomes "interrupted" after a signal or
        ``max_walltime``, "failed" after an error. Progress is logged on
        ``logging.getLogger("dabc.engine")`` at INFO: the run's start or resumption, each
        stored generation, each steering request applied or refused, the stop reason; the
        error that ends a run at ERROR.

        While it runs, the master records its live state in the database (the generation
        in progress, accepted/needed, evaluations, worker seconds, the rules in force) from
        a background thread, at least every 2 s: :meth:`History.live_state` reads it, and
        :meth:`History.all_runs` shows a "running" run whose master has written nothing for
        :data:`dabc.storage.live.LIVE_TIMEOUT` seconds as "interrupted".

        Examples
        --------
        >>> history = abc.run({"mean": 1.03}, db="sqlite:///results.db",  # doctest: +SKIP
        ...                   max_generations=20, minimum_epsilon=0.05, max_walltime=3600)
        >>> history.get_all_populations()[["t", "epsilon", "ess"]]  # doctest: +SKIP
        """
        if hasattr(max_walltime, "total_seconds"):
            max_walltime = max_walltime.total_seconds()
        min_eps_diff = _check_min_eps_diff(min_eps_diff)
        new = self.history is None or self._observed is None
        sampler = self.sampler if self.sampler is not None else _default_sampler()
        if new:
            if observed is None:
                raise InputError("run() needs the observed summary statistics, e.g. {'y': 1.0}.")
            self._start(observed, db, sampler)
        elif observed is not None and not _same(observed, self._observed):
            raise InputError("This run was started with other observed data; start a new "
                             "ABCSMC to analyse different data.")
        else:
            _start_sampler(sampler)
        history = self.history
        progress = ProgressLine(self.progress)
        t0_wall = time.monotonic()
        self.stopped_by_walltime = False
        guard = StopGuard(None if max_walltime is None else t0_wall + float(max_walltime))

        t = history.max_t + 1
        if t == 0:
            eps, previous = float(self.epsilon.initial()), None
        else:
            self.distance, self.epsilon, eps = _stored.load_state(
                history.state(t - 1), self._layout, trust=self._trust)
            previous = history.get_arrays(t - 1)
        if new:
            _log.info("run %s started in %s: sampler %s, population size %d, seed %d",
                      history.id, _where(history), type(sampler).__name__,
                      self.population_size, self.seed)
        else:
            _log.info("run %s of %s resumed from generation %d: sampler %s, population size %d, "
                      "seed %d", history.id, display_url(history.url), t, type(sampler).__name__,
                      self.population_size, self.seed)
        rules = {"max_generations": max_generations, "minimum_epsilon": minimum_epsilon,
                 "max_total_simulations": max_total_simulations, "max_walltime": max_walltime,
                 "min_acceptance_rate": min_acceptance_rate, "min_eps_diff": min_eps_diff}
        reason = self._stop_before(t, eps, history, max_generations, max_total_simulations)
        recorder = None
        stop: RunInterrupted | None = None
        t_first = t if not new else -1  # a new run has no saved results at all
        self._write_costs: list[float] = []  # checkpoint writes of this call, for their cost
        with guard:
            try:
                if not new and reason is None:
                    history.set_status("running", None)
                    discard_pending(history, "requested before this run() call")
                if reason is None:
                    recorder = LiveRecorder(history, rules, steering).start()
                while reason is None:
                    reason, eps_next, previous, info = self._generation(
                        t, eps, previous, sampler, progress, history,
                        rules["max_total_simulations"], guard, checkpoint, t_first, recorder)
                    if reason is not None:
                        break
                    _log_generation(history.id, t, info)
                    eps_done, eps = eps, eps_next
                    reason = apply_controls(history, t, rules, steering, recorder)
                    if reason is not None:
                        break
                    if sampler.stop_requested():
                        reason = f"stop requested through the sampler after generation {t}"
                        break
                    reason = _stop_after(
                        t, eps_done, eps, info, history, self.epsilon, rules["minimum_epsilon"],
                        rules["max_generations"], rules["max_total_simulations"], max_walltime,
                        min_acceptance_rate, time.monotonic() - t0_wall,
                        min_eps_diff=min_eps_diff, eps_reached=self._eps_reached)
                    t += 1
            except RunInterrupted as exc:
                stop = exc
                reason = self._interrupted(history, exc, max_walltime)
            except KeyboardInterrupt:
                # a second Ctrl-C, or one the signal handler did not see (a run outside the
                # main thread, a KeyboardInterrupt raised by other code): not an error
                saved = history.interruption()
                reason = ("stopped by KeyboardInterrupt, "
                          + (saved if saved is not None else f"in generation {t}"))
                history.set_status("interrupted", reason)
                _log.warning("run %s: %s. %s", history.id, reason, _how_to_resume(history))
                raise
            except BaseException as exc:
                history.set_status("failed", f"stopped by an error in generation {t}")
                _log_failure(history.id, t, exc)
                raise
            finally:
                sampler.close()
                if recorder is not None:
                    recorder.stop()
                    discard_pending(history, "the run ended first")
        if stop is not None and stop.signum is not None:
            message = f"{reason}. {_how_to_resume(history)}"
            _log.warning("run %s: %s", history.id, message)
            notice(f"dabc: {message}")
            raise RunInterrupted(message, stop.signum) from None
        if stop is not None:
            self.stopped_by_walltime = True
            _log.info("run %s stopped: %s", history.id, reason)
            return history
        if reason.startswith("max_walltime="):
            self.stopped_by_walltime = True
        history.set_status("done", reason)
        _log.info("run %s stopped after generation %d: %s", history.id, history.max_t, reason)
        return history

    def _interrupted(self, history: History, stop: RunInterrupted, max_walltime) -> str:
        """Record a stop by a signal or max_walltime; returns the stop reason."""
        why = (f"max_walltime={max_walltime:g}s reached" if stop.signum is None
               else f"stopped by {signal.Signals(stop.signum).name}")
        saved = history.interruption()
        where = saved if saved is not None else f"after generation {history.max_t}"
        reason = f"{why}, {where}"
        history.set_status("interrupted", reason)
        return reason

    def _start(self, observed, db, sampler):
        layout = StatLayout(observed)
        self.distance.initialize(layout)
        self.distance.check_priors(self.priors)
        history = History(db, create=True)
        _start_sampler(sampler)  # before the run row: a sampler that cannot start leaves none
        self._layout = layout
        self._observed = {k: observed[k] for k in observed}
        self._trust = True  # this process wrote the run's code itself
        try:
            history.create_run(
                seed=self.seed, population_size=self.population_size,
                model_names=[m.name for m in self.models],
                param_names=[p.names for p in self.priors], stat_columns=layout.columns(),
                observed=cloudpickle.dumps(self._observed), config=self._config(),
                version=_version())
        except BaseException:
            self._observed = None
            sampler.close()
            raise
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

    def _generation(self, t, eps, previous, sampler, progress, history, max_total_simulations,
                    guard: StopGuard, checkpoint: bool, first: int,
                    recorder: LiveRecorder | None = None):
        """Sample, weight and store generation t (resuming from its checkpoint, if any).

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
                trans.factored_density = self._stream_scheme >= 3  # part of the scheme
                trans.fit(a["theta"], a["weight"])
                transitions[m] = trans
            model_probs /= model_probs.sum()
        work = GenerationWork(t, self.seed, self.models, self.priors, self._layout,
                              self.distance, eps, model_probs, transitions,
                              self.stay_probability, token=f"{uuid.uuid4().hex}:{t}",
                              max_failure_rate=self.max_failure_rate,
                              stream_scheme=self._stream_scheme)
        budget = None
        if max_total_simulations is not None:
            budget = max_total_simulations - history.total_simulations
        progress.start(t, eps)
        feed = progress
        if recorder is not None:
            recorder.generation(t, eps, self.population_size)
            feed = ProgressFanout(recorder, progress)
        cp = None
        if checkpoint:
            # only the first generation of a run() call can have results saved before
            cp = GenerationCheckpoint(history, t, IDS if sampler.dynamic else SLOTS, guard,
                                      fresh=t != first, costs=self._write_costs)
        try:
            result = sampler.sample(WorkRequest(work, self.population_size, budget, feed,
                                                generation=t, checkpoint=cp))
            pop, evals = result.population, result.evaluations
            if not result.complete:
                if cp is not None:
                    _save_quietly(cp)
                    cp.close()
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
            # this generation's epsilon in the next generation's units (for min_eps_diff):
            # the largest accepted distance, re-measured by the possibly re-weighted distance
            finite = new_d[np.isfinite(new_d)]
            self._eps_reached = float(finite.max()) if finite.size else None
            state = _stored.dump_state(self.distance, self.epsilon, eps_next)
            ess = 1 / (w**2).sum()
            info = {"epsilon": eps, "n_simulations": len(evals), "n_evaluated": result.n_evaluated,
                    "n_accepted": len(pop), "acceptance_rate": len(pop) / len(evals), "ess": ess,
                    "walltime_s": time.perf_counter() - tic, "started": started, "finished": _now(),
                    "model_probabilities": [float(p) for p in probs]}
            with guard.critical():
                history.append_generation(t, info, per_model, state)
                if cp is not None:
                    cp.close()  # stored, with its checkpoint rows deleted: nothing to save
        except BaseException as exc:
            # a stop or an error before the generation was stored: keep what had arrived
            # (not after a second Ctrl-C, which means "at once")
            if cp is not None and not (isinstance(exc, KeyboardInterrupt) and guard.stopping):
                _save_quietly(cp)
            raise
        if cp is not None and cp.writes:
            _log.debug("run %s: generation %d: %d checkpoint writes took %.3f s", history.id, t,
                       cp.writes, cp.write_seconds)
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


def _where(history: History) -> str:
    """The run's database for logs: a SQLite file's absolute path (the default ``dabc.db``
    lands in the current folder), else the URL with its password hidden."""
    path = sqlite_path(history.url)
    return os.path.abspath(path) if path is not None else display_url(history.url)


def _start_sampler(sampler: Sampler) -> None:
    """Start the sampler's workers or connections (``Sampler.start``) before a run is written
    or resumed; when that fails, close what started and raise."""
    start = getattr(sampler, "start", None)
    if start is None:
        return
    try:
        start()
    except BaseException:
        sampler.close()
        raise


def _save_quietly(cp: GenerationCheckpoint) -> None:
    """Write a stopping generation's waiting results; a failure only logs (the run is
    ending with another exception)."""
    try:
        cp.flush()
    except Exception as exc:  # noqa: BLE001 - the run's own error is the one to raise
        _log.warning("could not save the checkpoint of generation %d: %s", cp.t, exc)


def _how_to_resume(history: History) -> str:
    """The sentence telling how to continue a stopped run."""
    path = sqlite_path(history.url)
    db = path if path is not None else display_url(history.url)
    return (f"Resume it with: dabc resume {db} --run {history.id} (or "
            f"dabc.ABCSMC.load({db!r}, run_id={history.id}).run(...))")


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


def _check_min_eps_diff(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value < 1:
        raise InputError(f"min_eps_diff must be a relative decrease in [0, 1), e.g. 0.05 "
                         f"(stop when epsilon would fall by less than 5%), or 0 to turn the "
                         f"rule off; got {value!r}.")
    return value


def _stop_after(t, eps_done, eps_next, info, history, epsilon, minimum_epsilon, max_generations,
                max_total_simulations, max_walltime, min_acceptance_rate, elapsed, *,
                min_eps_diff=0.0, eps_reached=None):
    if eps_done <= minimum_epsilon:
        return f"minimum_epsilon={minimum_epsilon} reached (epsilon {eps_done:.4g})"
    if t + 1 >= max_generations:
        return f"max_generations={max_generations} reached"
    if max_total_simulations is not None and history.total_simulations >= max_total_simulations:
        return f"max_total_simulations={max_total_simulations} reached"
    if max_walltime is not None and elapsed >= max_walltime:
        return f"max_walltime={max_walltime:g}s reached"
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
    if (min_eps_diff > 0 and isinstance(epsilon, QuantileEpsilon) and eps_reached
            and np.isfinite(eps_done)):
        decrease = 1 - eps_next / eps_reached
        if decrease < min_eps_diff:
            return (f"epsilon no longer decreases meaningfully: the next threshold {eps_next:.4g} "
                    f"is only {100 * decrease:.3g}% below this generation's accepted distances "
                    f"(up to {eps_reached:.4g}), under min_eps_diff={min_eps_diff:g} "
                    "(pass min_eps_diff=0 to run on)")
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
