"""One generation's work: everything a worker needs to evaluate proposals, and nothing more.

Randomness of evaluation ``i`` of generation ``t`` derives from ``(seed, t, i)`` alone, so a
result never depends on which worker computed it, nor on how ids were cut into tasks. How
the streams are derived is the run's *stream scheme*, stored with the run (the
``stream_scheme`` field of its configuration, :mod:`dabc.engine.config`), so a run resumes
under the scheme it started with:

Scheme 1 (dabc 0.1 runs, and stored runs without the field)
    One ``numpy.random.SeedSequence`` + ``PCG64`` stream per evaluation, spawn key
    ``(t, 0, i)`` (DYN) or ``(t, 1, j, r)`` (STAT slot ``j``, try ``r``). It proposes the
    parameters and is then the model's ``rng``.

Scheme 2
    Counter-based ``numpy.random.Philox`` streams, keyed once per generation: the key of
    kind ``k`` is ``SeedSequence(seed, spawn_key=(t, k)).generate_state(2, uint64)`` and
    a stream is selected by its 256-bit counter ``[0, r, i, 0]`` (re-keying costs a state
    assignment, not a seeding). DYN with a plain model: the parameters of ids
    ``256 b .. 256 b + 255`` are proposed together (one vectorized call, rejection of
    out-of-support proposals included) from the kind-4 stream with counter ``[0, 0, b, 0]``
    (:data:`PROPOSAL_BLOCK` = 256 is fixed: it never depends on task boundaries), and the
    model of evaluation ``i`` gets the kind-0 stream with counter ``[0, 0, i, 0]``. STAT
    with a plain model: slot ``j``, try ``r`` proposes and simulates from the kind-1 stream
    with counter ``[0, r, j, 0]``.

Scheme 3 (new runs, :data:`STREAM_SCHEME`)
    The streams of scheme 2. What changes is the arithmetic of the importance weights:
    the built-in kernels with one covariance evaluate their mixture density in factored
    form (:attr:`dabc.engine.transition.Transition.factored_density`), which rounds
    differently. A scheme names everything that decides a run's bits, so a scheme-2 run
    resumes with the unfactored density it started with.

Vectorized models (all schemes) are evaluated in fixed blocks of ids, one
SeedSequence stream per block, spawn key ``(t, 2, b)`` (DYN) or ``(t, 3, j, b)`` (STAT).
A DYN task re-keys one generator to each of its blocks' streams instead of building them
(:mod:`dabc._compat.numpy_random`): the same streams, at a third of the cost.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import numpy as np

from .._compat.numpy_random import BlockStreams, numpy_stream
from ..errors import InputError
from ..samplers.base import IDS, SLOTS, Batch, Task
from ..samplers.worker import SimulationTimeout, call_model, timeout_message
from .distance import check_distances

_DYN, _STAT, _DYN_BLOCK, _STAT_BLOCK, _DYN_PROPOSAL = 0, 1, 2, 3, 4
_MAX_PROPOSAL_TRIES = 10_000

STREAM_SCHEME = 3
"""The stream scheme new runs use (see the module docstring); 1 is the scheme of dabc 0.1."""
STREAM_SCHEMES = (1, 2, 3)
"""The stream schemes this dabc can run."""
PROPOSAL_BLOCK = 256
"""Scheme 2: ids whose proposals are drawn together (part of the scheme: never change it)."""


def stream(seed: int, t: int, *key: int) -> np.random.Generator:
    """The random stream of one evaluation (or block) of generation ``t`` (scheme 1)."""
    return numpy_stream(seed, t, *key)


def stream_key(seed: int, t: int, kind: int) -> np.ndarray:
    """Scheme 2: the Philox key of the streams of one kind of generation ``t``."""
    return np.random.SeedSequence(seed, spawn_key=(t, kind)).generate_state(2, np.uint64)


class Streams:
    """Scheme 2: the counter-selected Philox streams of one key, one Generator re-keyed in
    place (about the cost of one state assignment per stream).

    Not thread-safe: make one per task (it costs about as much as one scheme-1 stream).
    """

    def __init__(self, key: np.ndarray):
        self.bit_generator = np.random.Philox(key=key)
        self.rng = np.random.Generator(self.bit_generator)
        self._counter = np.zeros(4, dtype=np.uint64)
        self._state = {"bit_generator": "Philox",
                       "state": {"counter": self._counter, "key": np.array(key, np.uint64)},
                       "buffer": np.zeros(4, dtype=np.uint64), "buffer_pos": 4,
                       "has_uint32": 0, "uinteger": 0}

    def at(self, i: int, r: int = 0) -> np.random.Generator:
        """The stream with counter ``[0, r, i, 0]``, from its start."""
        c = self._counter
        c[2], c[1] = i, r
        self.bit_generator.state = self._state
        return self.rng


class GenerationWork:
    """Proposes parameters, simulates, and measures distances for generation ``t``.

    Implements the sampler contract's :class:`~dabc.samplers.base.Work`. ``transitions``
    is None in generation 0 (proposals come from the priors). The object is cloudpickled
    once per generation and shipped to every worker.
    """

    def __init__(self, t, seed, models, priors, layout, distance, epsilon, model_probs,
                 transitions=None, stay_probability=0.7, token="", max_failure_rate=0.1,
                 stream_scheme=STREAM_SCHEME):
        if stream_scheme not in STREAM_SCHEMES:
            raise InputError(f"The run uses random stream scheme {stream_scheme!r}; this dabc "
                             f"runs schemes {list(STREAM_SCHEMES)}: upgrade dabc to resume it.")
        self.stream_scheme = int(stream_scheme)
        self.t, self.seed = int(t), int(seed)
        self.models, self.priors, self.layout = models, priors, layout
        self.distance, self.epsilon = distance, float(epsilon)
        self.model_probs = np.asarray(model_probs, dtype=float)
        self.transitions = transitions
        self.stay = float(stay_probability)
        self.token = token
        self.max_failure_rate = float(max_failure_rate)
        self.alive = np.flatnonzero(self.model_probs > 0)
        self.cum = np.cumsum(self.model_probs[self.alive]) / self.model_probs[self.alive].sum()
        self.cum[-1] = 1.0
        self.n_params = max(p.dim for p in priors)
        block = {m.block_size for m in models}
        if len(block) > 1:
            raise InputError("Competing models must all be vectorized with the same block_size, "
                             "or none of them vectorized.")
        self.granularity = max(block.pop(), 1)
        self.vectorized = self.granularity > 1 or models[0].vectorized

    @property
    def model_names(self) -> list[str]:
        """The models' names, for messages."""
        return [m.name for m in self.models]

    # -- entry point for samplers ---------------------------------------------------
    def run(self, task: Task, cancelled: Callable[[], bool] | None = None) -> Batch:
        """Evaluate a task: evaluation ids (kind ``"ids"``) or particle slots (``"slots"``).

        ``cancelled`` (DYN only), asked before each evaluation or block: when it answers
        True, the task stops and returns the evaluations made so far, marked
        ``stopped_early`` (the sampler no longer wants them; see ``Batch.stopped_early``).
        """
        if task.kind == IDS:
            return self.evaluate_ids(task.start, task.stop, cancelled)
        if task.kind == SLOTS:
            return self.evaluate_slots(task.start, task.stop, task.max_attempts)
        raise ValueError(f"unknown task {task!r}")

    def evaluate_ids(self, start: int, stop: int,
                     cancelled: Callable[[], bool] | None = None) -> Batch:
        """DYN: evaluations ``start..stop-1``, each from its own stream (or block stream)."""
        g = self.granularity
        if self.vectorized and (start % g or stop % g):
            raise ValueError(f"id range [{start}, {stop}) not aligned to block size {g}")
        if not self.vectorized and self.stream_scheme >= 2:
            return self._evaluate_ids_blocked(start, stop, cancelled)
        parts, rows, end = [], [], start
        blocks = BlockStreams(self.seed, self.t, _DYN_BLOCK) if self.vectorized else None
        while end < stop and not (cancelled is not None and cancelled()):
            if blocks is not None:  # the stream(seed, t, _DYN_BLOCK, block), re-keyed
                parts.append(self._block(blocks.at(end // g), g))
                end += g
            else:
                rows.append(self._one(stream(self.seed, self.t, _DYN, end)))
                end += 1
        ids = np.arange(start, end, dtype=np.int64)
        attempt = np.zeros(len(ids), dtype=np.int64)
        if self.vectorized and parts:
            batch = _merge(parts)
            batch.ids = ids
        else:
            batch = self._finish(rows, ids, attempt)
        batch.stopped_early = end < stop
        return batch

    def evaluate_slots(self, j0: int, j1: int, max_attempts: int | None) -> Batch:
        """STAT: fill slots ``j0..j1-1``, each retrying from its own stream until accepted."""
        parts, tried, failed = [], 0, 0
        streams = None
        if not self.vectorized and self.stream_scheme >= 2:
            streams = Streams(self._key(_STAT))
        for j in range(j0, j1):
            r = 0
            while max_attempts is None or r < max_attempts:
                if self.vectorized:
                    g = self.granularity
                    part = self._block(stream(self.seed, self.t, _STAT_BLOCK, j, r // g), g)
                else:
                    rng = (streams.at(j, r) if streams is not None
                           else stream(self.seed, self.t, _STAT, j, r))
                    part = self._finish([self._one(rng)], np.zeros(1, dtype=np.int64),
                                        np.zeros(1, dtype=np.int64))
                if part.fatal:
                    return part
                hit = np.flatnonzero(part.accepted)
                n = len(part) if not len(hit) else hit[0] + 1
                if max_attempts is not None:
                    n = min(n, max_attempts - r)
                part = part.take(slice(0, n))
                part.ids = np.full(n, j, dtype=np.int64)
                part.attempt = np.arange(r, r + n, dtype=np.int64)
                parts.append(part)
                r += n
                tried, failed = tried + n, failed + int(part.failed.sum())
                if failed >= 10 and failed / tried > self.max_failure_rate:
                    out = _merge(parts)  # too many failures: let the scheduler report them
                    out.aborted = True
                    return out
                if part.accepted.any():
                    break
        return _merge(parts) if parts else self._finish([], np.zeros(0, np.int64),
                                                        np.zeros(0, np.int64))

    # -- scheme 2: DYN with a plain model ----------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_keys", "_proposal_cache"):
            state.pop(k, None)  # per-process caches
        return state

    def _key(self, kind: int) -> np.ndarray:
        keys = self.__dict__.setdefault("_keys", {})
        key = keys.get(kind)
        if key is None:
            key = keys[kind] = stream_key(self.seed, self.t, kind)
        return key

    def _block_proposals(self, b: int, streams: Streams):
        """Scheme 2: models and parameters of ids ``256 b .. 256 b + 255`` (cached per process),
        or the failure message when the transition keeps proposing outside the prior."""
        cache = self.__dict__.get("_proposal_cache")
        if cache is not None and cache[0] == b:
            return cache[1]
        try:
            model, theta = self._propose_block(PROPOSAL_BLOCK, streams.at(b))
            out = model, theta, theta.tolist(), model.tolist(), None
        except RuntimeError:
            out = None, None, None, None, traceback.format_exc()
        self._proposal_cache = (b, out)
        return out

    def _evaluate_ids_blocked(self, start: int, stop: int,
                              cancelled: Callable[[], bool] | None) -> Batch:
        """Scheme 2, DYN, plain models: proposals per block of :data:`PROPOSAL_BLOCK` ids in
        one vectorized call; then one model call per id on its own re-keyed stream."""
        n_all, p, B = max(stop - start, 0), self.n_params, PROPOSAL_BLOCK
        model = np.full(n_all, -1, dtype=np.int16)
        theta = np.full((n_all, p), np.nan)
        failed = np.zeros(n_all, dtype=bool)
        errors: dict[int, str] = {}
        fatal = None
        outs: list = [None] * n_all
        evals, props = Streams(self._key(_DYN)), Streams(self._key(_DYN_PROPOSAL))
        callees = [m.fn if m.takes_rng else m for m in self.models]
        names = [prior.names for prior in self.priors]
        keys, keyset = self.layout.keys, set(self.layout.keys)
        check_keys, at = self.layout.check_keys, evals.at
        end = start
        for b in range(start // B, (stop - 1) // B + 1) if n_all else ():
            bm, bth, brows, bml, perr = self._block_proposals(b, props)
            lo, hi = max(start, b * B), min(stop, (b + 1) * B)
            if perr is not None:
                for i in range(lo, hi):
                    if cancelled is not None and cancelled():
                        break
                    failed[i - start], errors[i - start] = True, perr
                    end = i + 1
                if end < hi:
                    break
                continue
            off = b * B
            model[lo - start:hi - start] = bm[lo - off:hi - off]
            theta[lo - start:hi - start] = bth[lo - off:hi - off]
            for i in range(lo, hi):
                if cancelled is not None and cancelled():
                    break
                m, row = bml[i - off], brows[i - off]
                nm = names[m]
                params = {nm[0]: row[0]} if len(nm) == 1 else dict(zip(nm, row))  # noqa: B905
                try:
                    out = call_model(callees[m], params, at(i))
                    if type(out) is not dict or out.keys() != keyset:
                        check_keys(out, self.models[m].name)
                    outs[i - start] = out
                except InputError as exc:
                    fatal = fatal or str(exc)
                except SimulationTimeout:
                    failed[i - start] = True
                    errors[i - start] = f"model {self.models[m].name!r}: " + timeout_message(params)
                except Exception:
                    failed[i - start] = True
                    errors[i - start] = (f"model {self.models[m].name!r} raised with parameters "
                                         f"{params}:\n" + traceback.format_exc())
                end = i + 1
            if end < hi:
                break
        n = end - start
        ids = np.arange(start, end, dtype=np.int64)
        model, theta, failed, outs = model[:n], theta[:n], failed[:n], outs[:n]
        stats = np.full((n, self.layout.size), np.nan)
        done = [r for r in range(n) if outs[r] is not None]
        if done:
            try:
                mat = np.array([[outs[r][k] for k in keys] for r in done], dtype=float)
                if mat.shape != (len(done), self.layout.size):
                    raise ValueError("not one number per statistic")
                stats[done] = mat
            except Exception:  # arrays, odd types: row by row, as the layout says
                for r in done:
                    try:
                        stats[r] = self.layout.flatten(outs[r])
                    except InputError as exc:
                        fatal = fatal or str(exc)
                    except Exception:
                        failed[r] = True
                        errors[r] = (f"model {self.models[model[r]].name!r} raised with "
                                     f"parameters {self._params(model[r], theta[r])}:\n"
                                     + traceback.format_exc())
            finite = np.isfinite(stats[done]).all(axis=1)
            for r in np.asarray(done)[~finite]:
                if failed[r]:
                    continue
                m = int(model[r])
                bad = [k for k in keys if not np.all(np.isfinite(stats[r, self.layout.slices[k]]))]
                failed[r] = True
                errors[r] = (f"model {self.models[m].name!r} returned NaN or infinity for "
                             f"{bad} with parameters {self._params(m, theta[r])}")
        first_failure = None
        if errors:
            r = min(errors)
            first_failure = f"(evaluation {int(ids[r])}) {errors[r]}"
        stats[failed] = np.nan
        batch = self._judge(Batch(ids, np.zeros(n, dtype=np.int64), model, theta, stats,
                                  np.full(n, np.inf), np.zeros(n, bool), failed, first_failure,
                                  fatal))
        batch.stopped_early = end < stop
        return batch

    def _params(self, m: int, theta: np.ndarray) -> dict:
        names = self.priors[int(m)].names
        return dict(zip(names, theta[:len(names)].tolist(), strict=True))

    # -- one evaluation --------------------------------------------------------------
    def _propose(self, rng):
        if self.transitions is None:
            m = int(self.alive[np.searchsorted(self.cum, rng.random(), side="right")])
            return m, self.priors[m].draw(rng)
        for _ in range(_MAX_PROPOSAL_TRIES):
            m = self._perturb_model(int(self.alive[np.searchsorted(self.cum, rng.random(),
                                                                   side="right")]), rng)
            theta = self.transitions[m].propose(rng)
            if self.priors[m].in_support(theta):
                return m, theta
        raise RuntimeError(f"the transition proposed {_MAX_PROPOSAL_TRIES} parameters in a row "
                           "outside the prior's support")

    def _perturb_model(self, m: int, rng) -> int:
        """Keep model m with probability ``stay``, else jump to another live model."""
        if len(self.alive) == 1 or rng.random() < self.stay:
            return m
        return self._jump(m, rng)

    def _jump(self, m: int, rng) -> int:
        """A uniformly chosen live model other than m."""
        others = self.alive[self.alive != m]
        return int(others[int(rng.random() * len(others))])

    def _one(self, rng):
        """Propose, simulate and flatten one evaluation: (m, theta, stats, failure)."""
        m, theta = -1, None
        try:
            m, theta = self._propose(rng)
            model = self.models[m]
            params = dict(zip(self.priors[m].names, theta.tolist(), strict=True))
            out = call_model(model, params, rng)
            self.layout.check_keys(out, model.name)
            stats = self.layout.flatten(out)
            if not np.all(np.isfinite(stats)):
                bad = [k for k in self.layout.keys
                       if not np.all(np.isfinite(stats[self.layout.slices[k]]))]
                return m, theta, None, (f"model {model.name!r} returned NaN or infinity for "
                                        f"{bad} with parameters {params}")
            return m, theta, stats, None
        except InputError as exc:
            return m, theta, None, exc
        except SimulationTimeout:
            return m, theta, None, (f"model {self.models[m].name!r}: "
                                    + timeout_message(dict(zip(self.priors[m].names,
                                                               theta.tolist(), strict=True))))
        except Exception:
            where = "" if theta is None else f" with parameters {dict(zip(self.priors[m].names, theta.tolist(), strict=True))}"  # noqa: E501
            return m, theta, None, (f"model {self.models[m].name!r} raised{where}:\n"
                                    + traceback.format_exc())

    def _finish(self, rows, ids, attempt) -> Batch:
        n, p, s = len(rows), self.n_params, self.layout.size
        model = np.full(n, -1, dtype=np.int16)
        theta = np.full((n, p), np.nan)
        stats = np.full((n, s), np.nan)
        failed = np.zeros(n, dtype=bool)
        first_failure = fatal = None
        for r, (m, th, st, err) in enumerate(rows):
            model[r] = m
            if th is not None:
                theta[r, :len(th)] = th
            if err is None:
                stats[r] = st
            elif isinstance(err, InputError):
                fatal = fatal or str(err)
            else:
                failed[r] = True
                first_failure = first_failure or f"(evaluation {int(ids[r])}) {err}"
        return self._judge(Batch(ids, attempt, model, theta, stats, np.full(n, np.inf),
                                 np.zeros(n, bool), failed, first_failure, fatal))

    def _judge(self, batch: Batch) -> Batch:
        """Distances of the finished simulations, checked, and acceptance against epsilon.

        Every value is validated (:func:`~dabc.engine.distance.check_distances`): NaN, None,
        a negative value or a non-number makes the batch ``fatal`` with an InputError message
        naming the distance and one offending simulation, which the master raises. ``inf``
        is a valid distance: rejected by every finite epsilon.
        """
        ok = ~batch.failed & (batch.model >= 0)
        if batch.fatal or not ok.any():
            return batch
        stats, observed = batch.stats[ok], self.layout.observed
        try:
            d = check_distances(self.distance, self.distance.batch(stats, observed), stats,
                                observed, self.layout)
        except InputError as exc:
            batch.fatal = str(exc)
            return batch
        batch.distance[ok] = d
        batch.accepted = ok & (batch.distance <= self.epsilon)
        return batch

    # -- vectorized blocks -------------------------------------------------------------
    def _pick_models(self, k: int, rng) -> np.ndarray:
        """``k`` models drawn by their probabilities (``k`` uniforms from ``rng`` either way,
        so a single live model consumes the stream as several do)."""
        u = rng.random(k)
        if len(self.alive) == 1:
            return np.full(k, self.alive[0])
        return self.alive[np.searchsorted(self.cum, u, side="right")]

    def _models_in(self, model: np.ndarray) -> list[int]:
        """The distinct models among ``model`` (all proposals of a block), ascending."""
        if len(self.alive) == 1:
            return [int(self.alive[0])] if len(model) else []
        return [int(m) for m in np.unique(model)]

    def _propose_block(self, g: int, rng):
        """Models and parameters of a block of ``g`` proposals, all from ``rng``."""
        if len(self.alive) == 1:
            return self._propose_block_one_model(g, rng)
        return self._propose_block_any(g, rng)

    def _propose_block_any(self, g: int, rng):
        model = self._pick_models(g, rng)
        theta = np.full((g, self.n_params), np.nan)
        todo = np.arange(g)
        for _ in range(_MAX_PROPOSAL_TRIES):
            if self.transitions is not None:
                model[todo] = self._pick_models(len(todo), rng)
                if len(self.alive) > 1:
                    stay = rng.random(len(todo)) < self.stay
                    for r in np.flatnonzero(~stay):
                        model[todo[r]] = self._jump(int(model[todo[r]]), rng)
            bad = []
            for m in self._models_in(model[todo]):
                rows = todo if len(self.alive) == 1 else todo[model[todo] == m]
                prior = self.priors[m]
                if self.transitions is None:
                    th = prior.rvs(len(rows), rng).reshape(len(rows), prior.dim)
                else:
                    th = self.transitions[m].propose_many(len(rows), rng)
                theta[rows, :prior.dim] = th
                bad.append(rows[~prior.in_support(th)])
            todo = np.concatenate(bad) if bad else todo[:0]
            if not len(todo):
                return model.astype(np.int16), theta
        raise RuntimeError("the transition keeps proposing outside the prior's support")

    def _propose_block_one_model(self, g: int, rng):
        """:meth:`_propose_block_any` when one model is alive: the same draws from ``rng``
        and the same result, without the per-model bookkeeping (whole-block slices, no index
        arrays, for blocks that need no second try)."""
        m = int(self.alive[0])
        prior = self.priors[m]
        dim = prior.dim
        rng.random(g)  # the model choice (_pick_models): the stream is consumed all the same
        theta = np.full((g, self.n_params), np.nan)
        todo = None  # None: every row
        for _ in range(_MAX_PROPOSAL_TRIES):
            k = g if todo is None else len(todo)
            if self.transitions is None:
                th = prior.rvs(k, rng).reshape(k, dim)
            else:
                rng.random(k)  # the model choice again, as _propose_block draws it
                th = self.transitions[m].propose_many(k, rng)
            if todo is None:
                theta[:, :dim] = th
            else:
                theta[todo, :dim] = th
            ok = prior.in_support(th)
            if ok.all():
                return np.full(g, m, dtype=np.int16), theta
            todo = np.flatnonzero(~ok) if todo is None else todo[~ok]
        raise RuntimeError("the transition keeps proposing outside the prior's support")

    def _block(self, rng, g: int) -> Batch:
        model, theta = self._propose_block(g, rng)
        stats = np.full((g, self.layout.size), np.nan)
        failed = np.zeros(g, dtype=bool)
        first_failure = fatal = None
        for m in self._models_in(model):
            mod, prior = self.models[m], self.priors[m]
            if len(self.alive) == 1:  # whole columns, copied (a model may change its inputs)
                rows, n_rows = slice(None), g
                params = {name: theta[:, j].copy() for j, name in enumerate(prior.names)}
            else:
                rows = np.flatnonzero(model == m)
                n_rows = len(rows)
                params = {name: theta[rows, j] for j, name in enumerate(prior.names)}
            try:
                out = call_model(mod, params, rng)
                self.layout.check_keys(out, mod.name)
                stats[rows] = self.layout.flatten_rows(out, n_rows)
            except InputError as exc:
                fatal = str(exc)
            except SimulationTimeout:
                failed[rows] = True
                first_failure = first_failure or (
                    f"vectorized model {mod.name!r} (a block of {n_rows}): "
                    + timeout_message({k: v[:3].tolist() for k, v in params.items()})
                    .replace("with parameters", "with parameters (first 3)", 1))
            except Exception:
                failed[rows] = True
                first_failure = first_failure or (f"vectorized model {mod.name!r} raised:\n"
                                                  + traceback.format_exc())
        if not np.isfinite(stats).all():  # else (the common case) no row to look at
            nan = ~np.all(np.isfinite(stats), axis=1) & ~failed
            if nan.any() and first_failure is None:
                r = int(np.flatnonzero(nan)[0])
                first_failure = (f"model {self.models[model[r]].name!r} returned NaN or "
                                 f"infinity for parameters {theta[r]}")
            failed |= nan
        ids = np.zeros(g, dtype=np.int64)
        return self._judge(Batch(ids, ids.copy(), model, theta, stats, np.full(g, np.inf),
                                 np.zeros(g, bool), failed, first_failure, fatal))


def _merge(parts: list[Batch]) -> Batch:
    out = Batch.concat(parts)
    out.fatal = next((p.fatal for p in parts if p.fatal), None)
    return out
