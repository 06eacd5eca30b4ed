"""One generation's work: everything a worker needs to evaluate proposals, and nothing more.

Randomness of evaluation ``i`` of generation ``t`` derives from ``(seed, t, i)`` alone
(``numpy.random.SeedSequence`` spawn keys), so a result never depends on which worker
computed it. Vectorized models are evaluated in fixed blocks of ids, one stream per block.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..samplers.base import IDS, SLOTS, Batch, Task
from ..samplers.worker import SimulationTimeout, call_model, timeout_message
from .distance import check_distances

_DYN, _STAT, _DYN_BLOCK, _STAT_BLOCK = 0, 1, 2, 3
_MAX_PROPOSAL_TRIES = 10_000


def stream(seed: int, t: int, *key: int) -> np.random.Generator:
    """The random stream of one evaluation (or block) of generation ``t``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(t, *key))))


class GenerationWork:
    """Proposes parameters, simulates, and measures distances for generation ``t``.

    Implements the sampler contract's :class:`~dabc.samplers.base.Work`. ``transitions``
    is None in generation 0 (proposals come from the priors). The object is cloudpickled
    once per generation and shipped to every worker.
    """

    def __init__(self, t, seed, models, priors, layout, distance, epsilon, model_probs,
                 transitions=None, stay_probability=0.7, token="", max_failure_rate=0.1):
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
        parts, rows, end = [], [], start
        while end < stop and not (cancelled is not None and cancelled()):
            if self.vectorized:
                parts.append(self._block(stream(self.seed, self.t, _DYN_BLOCK, end // g), g))
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
        for j in range(j0, j1):
            r = 0
            while max_attempts is None or r < max_attempts:
                if self.vectorized:
                    g = self.granularity
                    part = self._block(stream(self.seed, self.t, _STAT_BLOCK, j, r // g), g)
                else:
                    part = self._finish([self._one(stream(self.seed, self.t, _STAT, j, r))],
                                        np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
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
    def _propose_block(self, g: int, rng):
        model = self.alive[np.searchsorted(self.cum, rng.random(g), side="right")]
        theta = np.full((g, self.n_params), np.nan)
        todo = np.arange(g)
        for _ in range(_MAX_PROPOSAL_TRIES):
            if self.transitions is not None:
                model[todo] = self.alive[np.searchsorted(self.cum, rng.random(len(todo)),
                                                         side="right")]
                if len(self.alive) > 1:
                    stay = rng.random(len(todo)) < self.stay
                    for r in np.flatnonzero(~stay):
                        model[todo[r]] = self._jump(int(model[todo[r]]), rng)
            bad = []
            for m in np.unique(model[todo]):
                rows = todo[model[todo] == m]
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

    def _block(self, rng, g: int) -> Batch:
        model, theta = self._propose_block(g, rng)
        stats = np.full((g, self.layout.size), np.nan)
        failed = np.zeros(g, dtype=bool)
        first_failure = fatal = None
        for m in np.unique(model):
            rows = np.flatnonzero(model == m)
            mod, prior = self.models[m], self.priors[m]
            params = {name: theta[rows, j] for j, name in enumerate(prior.names)}
            try:
                out = call_model(mod, params, rng)
                self.layout.check_keys(out, mod.name)
                stats[rows] = self.layout.flatten_rows(out, len(rows))
            except InputError as exc:
                fatal = str(exc)
            except SimulationTimeout:
                failed[rows] = True
                first_failure = first_failure or (
                    f"vectorized model {mod.name!r} (a block of {len(rows)}): "
                    + timeout_message({k: v[:3].tolist() for k, v in params.items()})
                    .replace("with parameters", "with parameters (first 3)", 1))
            except Exception:
                failed[rows] = True
                first_failure = first_failure or (f"vectorized model {mod.name!r} raised:\n"
                                                  + traceback.format_exc())
        nan = ~np.all(np.isfinite(stats), axis=1) & ~failed
        if nan.any() and first_failure is None:
            r = int(np.flatnonzero(nan)[0])
            first_failure = (f"model {self.models[model[r]].name!r} returned NaN or infinity "
                             f"for parameters {theta[r]}")
        failed |= nan
        ids = np.zeros(g, dtype=np.int64)
        return self._judge(Batch(ids, ids.copy(), model, theta, stats, np.full(g, np.inf),
                                 np.zeros(g, bool), failed, first_failure, fatal))


def _merge(parts: list[Batch]) -> Batch:
    out = Batch.concat(parts)
    out.fatal = next((p.fatal for p in parts if p.fatal), None)
    return out
