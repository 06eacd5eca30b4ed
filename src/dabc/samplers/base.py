"""What every sampler shares: result batches, the DYN/STAT schedulers, the work cache.

A sampler receives a *generation's work* (a picklable object made by the engine) and runs
its tasks: ``("ids", start, stop)`` evaluates evaluation ids (DYN) and
``("slots", j0, j1, max_attempts)`` fills particle slots (STAT). The schedulers here turn
results arriving in any order, from any number of workers, into the same population:
DYN keeps the first n accepted evaluations in id order; STAT keeps one per slot.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cloudpickle
import numpy as np

from ..errors import InputError, ModelError

_FIELDS = ("ids", "attempt", "model", "theta", "stats", "distance", "accepted", "failed")


@dataclass
class Batch:
    """Columnar results of a task: one row per evaluation."""

    ids: np.ndarray
    attempt: np.ndarray
    model: np.ndarray
    theta: np.ndarray
    stats: np.ndarray
    distance: np.ndarray
    accepted: np.ndarray
    failed: np.ndarray
    first_failure: str | None = None
    fatal: str | None = None
    seconds: float = 0.0
    aborted: bool = False   # the task stopped early because most evaluations failed
    stopped_early: bool = False  # a cancelled DYN task: only its first ids were evaluated

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index) -> Batch:
        """Rows selected by a boolean mask or an index array."""
        return Batch(*(getattr(self, f)[index] for f in _FIELDS),
                     first_failure=self.first_failure, seconds=self.seconds)

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """All rows of several batches, in the given order."""
        first = next((b.first_failure for b in batches if b.first_failure), None)
        return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in _FIELDS),
                     first_failure=first, seconds=sum(b.seconds for b in batches))


@dataclass
class SampleResult:
    """A generation as sampled: the population and every evaluation that counts for it."""

    population: Batch       # accepted rows, in id (DYN) or slot (STAT) order
    evaluations: Batch      # every counted evaluation, accepted or not
    n_evaluated: int        # evaluations whose results arrived, including discarded extras
    complete: bool          # False when a simulation budget ended the generation early


Progress = Callable[[int, int, int], None]  # (accepted, needed, evaluations)


class _Scheduler:
    """Shared failure accounting and progress reporting."""

    def __init__(self, n, max_failure_rate, model_names, progress):
        self.n, self.max_failure_rate = n, max_failure_rate
        self.model_names = model_names
        self.progress = progress
        self.n_evaluated = self.n_failed = self.n_accepted = 0
        self.first_failure = None
        self.seconds = 0.0

    def _account(self, batch: Batch) -> None:
        if batch.fatal:
            raise InputError(batch.fatal)
        self.n_evaluated += len(batch)
        self.n_failed += int(batch.failed.sum())
        self.seconds += batch.seconds
        if batch.first_failure and self.first_failure is None:
            self.first_failure = batch.first_failure
        if self.n_failed >= 10:
            self.check_failures(self.n_failed, self.n_evaluated)
        if batch.aborted:
            self.check_failures(int(batch.failed.sum()), len(batch), strict=False)

    def check_failures(self, failed: int, evaluated: int, strict: bool = True) -> None:
        """Raise ModelError when the share of failed evaluations exceeds the limit
        (always, with ``strict=False``: a worker already judged it so)."""
        if evaluated and (failed / evaluated > self.max_failure_rate or not strict):
            names = ", ".join(repr(m) for m in self.model_names)
            raise ModelError(
                f"Model {names} failed in {failed} of {evaluated} evaluations "
                f"(a share of {failed / evaluated:.3g}, above max_failure_rate="
                f"{self.max_failure_rate:.3g}). Fix the model or raise max_failure_rate. "
                f"First failure:\n{self.first_failure}"
            )

    def _report(self):
        if self.progress is not None:
            self.progress(min(self.n_accepted, self.n), self.n, self.n_evaluated)

    timing_hint: float | None = None  # seconds per evaluation seen in an earlier generation

    def seconds_per_evaluation(self) -> float | None:
        """Mean measured worker time per evaluation so far (else the earlier generation's)."""
        return self.seconds / self.n_evaluated if self.n_evaluated else self.timing_hint


class DynamicScheduler(_Scheduler):
    """DYN: hands out id ranges; the population is the first n accepted ids.

    Done once all ids up to the n-th accepted id are evaluated, or all ids below the
    evaluation budget are. Duplicate results (a range re-run after a worker was presumed
    dead) are ignored, so nothing is counted twice.
    """

    def __init__(self, n: int, granularity: int = 1, max_evaluations: int | None = None,
                 max_failure_rate: float = 0.1, model_names=("model",),
                 progress: Progress | None = None, target_seconds: float = 0.05,
                 max_size: int = 100_000, fixed_size: int | None = None):
        super().__init__(n, max_failure_rate, model_names, progress)
        self.granularity = max(int(granularity), 1)
        self.limit = None
        if max_evaluations is not None:
            g = self.granularity
            self.limit = max(g, int(math.ceil(max_evaluations / g)) * g)
        self.target_seconds, self.max_size = target_seconds, max_size
        self.fixed_size = fixed_size
        self.min_task_fraction = 0.1  # smallest task, as a share of target_seconds
        self.next_id = 0
        self.issued = 0                             # ids handed out (re-issues not counted)
        self.pending: list[tuple[int, int]] = []   # ranges to re-issue first
        self.done_ranges: dict[int, int] = {}       # start -> stop, beyond the prefix
        self.prefix = 0                             # every id below this is evaluated
        self.batches: list[Batch] = []
        self.accepted_ids: list[np.ndarray] = []
        self._cutoff: int | None = None
        self._received = 0

    # -- scheduling ---------------------------------------------------------------
    def next_task(self, workers: int = 1) -> tuple | None:
        """The next id range to evaluate, or None when nothing more is needed now.

        ``workers`` (how many evaluate in parallel) shapes task sizes; evaluations in
        flight are tracked here.
        """
        while self.pending:
            start, stop = self.pending.pop(0)
            if self._needed(start) and start not in self.done_ranges and start >= self.prefix:
                return ("ids", start, stop)
        if self.n_accepted >= self.n:
            return None
        if self.limit is not None and self.next_id >= self.limit:
            return None
        size = self._size(self.issued - self._received, workers)
        start = self.next_id
        stop = start + size if self.limit is None else min(start + size, self.limit)
        self.next_id = stop
        self.issued += stop - start
        return ("ids", start, stop)

    def _size(self, in_flight: int, workers: int) -> int:
        """Ids for the next task: ~target_seconds of work, and no more than the expected
        remaining need (after what is in flight) shared among the workers."""
        g = self.granularity
        if self.fixed_size is not None:
            return max(g, -(-self.fixed_size // g) * g)
        per_eval = self.seconds_per_evaluation()
        if per_eval is None:
            return g
        per_eval = max(per_eval, 1e-7)
        rate = (self.n_accepted + 1) / (self.n_evaluated + 2)
        expected = (self.n - self.n_accepted) / rate - in_flight
        # Split what is still expected over two tasks per worker, but keep each task at least
        # min_task_fraction of the target time: otherwise sizes shrink geometrically near the
        # end and per-task overhead dominates fast models.
        size = min(expected / (2 * max(workers, 1)), self.target_seconds / per_eval)
        size = min(max(size, self.min_task_fraction * self.target_seconds / per_eval, 1),
                   self.max_size)
        return max(g, int(math.ceil(size / g)) * g)

    def reissue(self, task: tuple) -> None:
        """Put back a task whose worker died; it is re-run with the same ids."""
        self.pending.append((task[1], task[2]))

    def _needed(self, start: int) -> bool:
        return self._cutoff is None or start <= self._cutoff

    def wanted(self, task: tuple) -> bool:
        """Whether an issued task can still contribute (False: cancel it if possible)."""
        return self._needed(task[1])

    # -- results --------------------------------------------------------------------
    def add(self, task: tuple, batch: Batch) -> None:
        """Record a finished id range."""
        start, stop = task[1], task[2]
        if start < self.prefix or start in self.done_ranges or batch.stopped_early:
            return  # a duplicate, or a cancelled task's partial result
        self._account(batch)
        self._received += stop - start
        self.done_ranges[start] = stop
        while self.prefix in self.done_ranges:
            self.prefix = self.done_ranges.pop(self.prefix)
        self.batches.append(batch)
        acc = batch.ids[batch.accepted]
        if len(acc):
            self.accepted_ids.append(acc)
            self.n_accepted += len(acc)
            if self.n_accepted >= self.n:
                self._cutoff = int(np.partition(np.concatenate(self.accepted_ids),
                                                self.n - 1)[self.n - 1])
        self._report()

    @property
    def done(self) -> bool:
        """Whether the population is determined."""
        if self._cutoff is not None and self.prefix > self._cutoff:
            return True
        return self.limit is not None and self.prefix >= self.limit

    def result(self) -> SampleResult:
        """The population: the first n accepted evaluations in id order."""
        allb = Batch.concat(self.batches)
        end = self._cutoff if self._cutoff is not None else self.limit - 1
        keep = allb.ids <= end
        evaluations = allb.take(np.flatnonzero(keep)[np.argsort(allb.ids[keep], kind="stable")])
        self.check_failures(int(evaluations.failed.sum()), len(evaluations))
        return SampleResult(evaluations.take(evaluations.accepted), evaluations,
                            self.n_evaluated, complete=self._cutoff is not None)


class StaticScheduler(_Scheduler):
    """STAT: particle slots 0..n-1, each filled from its own random stream."""

    def __init__(self, n: int, max_evaluations: int | None = None, max_failure_rate: float = 0.1,
                 model_names=("model",), progress: Progress | None = None, chunk: int | None = None,
                 workers: int = 1):
        super().__init__(n, max_failure_rate, model_names, progress)
        self.max_attempts = None if max_evaluations is None else max(
            1, int(math.ceil(max_evaluations / n)))
        self.chunk = chunk or max(1, n // (4 * max(workers, 1)))
        self.next_slot = 0
        self.pending: list[tuple] = []
        self.done_slots: set[int] = set()
        self.batches: list[Batch] = []

    def next_task(self, workers: int = 1) -> tuple | None:
        """The next range of slots to fill, or None when all are handed out."""
        while self.pending:
            task = self.pending.pop(0)
            if task[1] not in self.done_slots:
                return task
        if self.next_slot >= self.n:
            return None
        j0, self.next_slot = self.next_slot, min(self.n, self.next_slot + self.chunk)
        return ("slots", j0, self.next_slot, self.max_attempts)

    def all_tasks(self) -> list[tuple]:
        """Every slot range, for backends that map over a fixed list."""
        tasks = []
        while (task := self.next_task()) is not None:
            tasks.append(task)
        return tasks

    def reissue(self, task: tuple) -> None:
        """Put back a task whose worker died; its slots are refilled identically."""
        self.pending.append(task)

    def wanted(self, task: tuple) -> bool:
        return task[1] not in self.done_slots

    def add(self, task: tuple, batch: Batch) -> None:
        """Record a finished slot range."""
        if task[1] in self.done_slots:
            return
        self._account(batch)
        self.done_slots.update(range(task[1], task[2]))
        self.batches.append(batch)
        self.n_accepted += int(batch.accepted.sum())
        self._report()

    @property
    def done(self) -> bool:
        return len(self.done_slots) >= self.n

    def result(self) -> SampleResult:
        """One accepted evaluation per slot, in slot order (unfilled slots are missing)."""
        allb = Batch.concat(self.batches)
        evaluations = allb.take(np.lexsort((allb.attempt, allb.ids)))
        self.check_failures(int(evaluations.failed.sum()), len(evaluations))
        population = evaluations.take(evaluations.accepted)
        return SampleResult(population, evaluations, len(evaluations),
                            complete=len(population) >= self.n)


@dataclass
class WorkRequest:
    """What the engine asks of a sampler for one generation."""

    work: object                       # the generation's work; has .run(task) -> Batch
    n: int                             # particles needed
    max_evaluations: int | None = None
    max_failure_rate: float = 0.1
    progress: Progress | None = None
    _bytes: bytes | None = field(default=None, repr=False)

    @property
    def payload(self) -> bytes:
        """The work, cloudpickled once per generation."""
        if self._bytes is None:
            self._bytes = cloudpickle.dumps(self.work)
        return self._bytes

    def scheduler(self, dynamic: bool, workers: int = 1, batch_size: int | None = None,
                  timing_hint: float | None = None):
        """A fresh DYN or STAT scheduler for this generation.

        ``batch_size`` fixes the ids per DYN task (rounded up to the work's block size);
        ``timing_hint`` (seconds per evaluation, e.g. from the last generation) sizes the
        first tasks before any is measured.
        """
        names = getattr(self.work, "model_names", ("model",))
        if dynamic:
            sched = DynamicScheduler(self.n, getattr(self.work, "granularity", 1),
                                     self.max_evaluations, self.max_failure_rate, names,
                                     self.progress, fixed_size=batch_size)
        else:
            sched = StaticScheduler(self.n, self.max_evaluations, self.max_failure_rate, names,
                                    self.progress, workers=workers)
        sched.timing_hint = timing_hint
        return sched


class Sampler:
    """Interface of all samplers: ``sample(request) -> SampleResult`` and ``close()``.

    ``dynamic`` says whether the sampler follows the DYN (first n accepted in id order) or
    the STAT (one stream per particle slot) contract.
    """

    dynamic = True

    def sample(self, request: WorkRequest) -> SampleResult:
        raise NotImplementedError

    def stop_requested(self) -> bool:
        """Whether an operator asked the run to end after the current generation."""
        return False

    def close(self) -> None:
        """Release workers or connections; the sampler can be used again afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- work cache: unpickle a generation's work once per process --------------------------
_WORK_CACHE: dict[bytes, object] = {}


def load_work(payload: bytes, key: bytes | None = None):
    """Unpickle ``payload`` once per process; later calls with the same key reuse it."""
    if key is None:
        key = hashlib.blake2b(payload, digest_size=16).digest()
    work = _WORK_CACHE.get(key)
    if work is None:
        _WORK_CACHE.clear()  # keep only the current generation
        work = _WORK_CACHE[key] = cloudpickle.loads(payload)
    return work


def run_task(payload: bytes, task: tuple, key: bytes | None = None,
             cancelled: Callable[[], bool] | None = None) -> tuple[tuple, Batch]:
    """Evaluate one task of a pickled generation's work (used by map and executors);
    ``cancelled`` lets a DYN task stop early (see ``GenerationWork.run``)."""
    t0 = time.perf_counter()
    batch = load_work(payload, key).run(task, cancelled)
    batch.seconds = time.perf_counter() - t0
    return task, batch
