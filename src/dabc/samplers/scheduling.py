"""The DYN and STAT schedulers: results in any order, from any number of workers, become
the same population.

A sampler asks a scheduler for the next :class:`~dabc.samplers.base.Task`, has it run
anywhere, and gives back the batch with :meth:`add`. DYN keeps the first ``n`` accepted
evaluations in id order; STAT keeps one per slot. Tasks of a dead worker are put back with
:meth:`reissue` and run again with the same ids; a duplicate result is ignored, so nothing is
lost or counted twice. Every knob is a constructor argument; :func:`make_scheduler` builds
either kind from a request.

A request's checkpoint makes a generation resumable: :meth:`~DynamicScheduler.preload` counts
the batches a stopped run had received (their ids or slots are never handed out again, the
gaps between them are queued first), and every batch that counts afterwards is passed to the
checkpoint's ``record``. Since a DYN population is the first ``n`` accepted ids and a STAT
one is one result per slot, the resumed generation is the uninterrupted one.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence

import numpy as np

from ..errors import InputError, ModelError
from .base import IDS, SLOTS, Batch, Checkpoint, Progress, SampleResult, Task, WorkRequest

log = logging.getLogger("dabc.samplers")


def check_batch_size(batch_size: int | str) -> int | None:
    """A sampler's ``batch_size`` argument: a positive int, or ``"auto"`` (returns None)."""
    if batch_size == "auto":
        return None
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or 'auto', not {batch_size!r}")
    return batch_size


_TAKES_FOUR_BY_CLASS: dict[type, bool] = {}


def _takes_four(progress) -> bool:
    """Whether a progress callable accepts ``worker_seconds`` as a 4th positional argument
    (the contract before it had three). For an instance of a class with ``__call__`` (the
    engine's own callbacks, made once per generation) the answer is remembered per class:
    ``inspect.signature`` of such an object costs about 50 us."""
    if progress is None:
        return False
    kind = type(progress)
    if (inspect.isfunction(vars(kind).get("__call__"))  # its signature is the class's
            and not hasattr(progress, "__signature__") and not hasattr(progress, "__wrapped__")):
        known = _TAKES_FOUR_BY_CLASS.get(kind)
        if known is None:
            known = _TAKES_FOUR_BY_CLASS[kind] = _signature_takes_four(progress)
        return known
    return _signature_takes_four(progress)


def _signature_takes_four(progress) -> bool:
    try:
        params = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the old contract
        return False
    positional = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 4


class _Scheduler:
    """Shared failure accounting and progress reporting."""

    def __init__(self, n: int, max_failure_rate: float, model_names: Sequence[str],
                 progress: Progress | None, timing_hint: float | None):
        self.n, self.max_failure_rate = n, max_failure_rate
        self.model_names = list(model_names)
        self.progress = progress
        self._progress_seconds = _takes_four(progress)
        self.timing_hint = timing_hint  # seconds per evaluation seen in an earlier generation
        self.n_evaluated = self.n_failed = self.n_accepted = 0
        self.first_failure: str | None = None
        self.seconds = 0.0
        self.checkpoint: Checkpoint | None = None  # shown every batch that counts

    def _account(self, batch: Batch) -> None:
        if batch.fatal:
            raise InputError(batch.fatal)
        self.n_evaluated += len(batch)
        self.n_failed += int(batch.failed.sum())
        self.seconds += batch.seconds
        if batch.first_failure and self.first_failure is None:
            self.first_failure = batch.first_failure
            log.warning("first failed evaluation of this generation: %s", batch.first_failure)
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

    def _report(self, task: Task, batch: Batch) -> None:
        if self.progress is not None:
            if self._progress_seconds:
                self.progress(min(self.n_accepted, self.n), self.n, self.n_evaluated,
                              self.seconds)
            else:
                self.progress(min(self.n_accepted, self.n), self.n, self.n_evaluated)
        if self.checkpoint is not None:
            self.checkpoint.record(task, batch)

    def seconds_per_evaluation(self) -> float | None:
        """Mean measured worker time per evaluation so far (else the earlier generation's)."""
        return self.seconds / self.n_evaluated if self.n_evaluated else self.timing_hint

    @property
    def cutoff(self) -> int | None:
        """The id beyond which no task can contribute, once known (DYN only; None for STAT,
        whose slots all count until filled)."""
        return None


class DynamicScheduler(_Scheduler):
    """DYN: hands out id ranges; the population is the first n accepted ids.

    Done once all ids up to the n-th accepted id are evaluated, or all ids below the
    evaluation budget are.

    Parameters
    ----------
    n : int
        Accepted particles needed.
    granularity : int, default 1
        Task sizes are multiples of this (a vectorized model's block size).
    max_evaluations : int, optional
        Evaluation budget; the generation ends incomplete when it is used up.
    max_failure_rate : float, default 0.1
        Share of failed evaluations above which :class:`dabc.ModelError` is raised.
    model_names : sequence of str
        For messages.
    progress : callable, optional
        Called as ``progress(accepted, needed, evaluations, worker_seconds)`` after each
        result (three-argument callables without ``worker_seconds``).
    target_seconds : float, default 0.05
        Aimed worker time per task.
    max_size : int, default 100000
        Largest task, in ids.
    fixed_size : int, optional
        Ids per task instead of sizes from measured times.
    min_task_fraction : float, default 0.1
        Smallest task near a generation's end, as a share of ``target_seconds``.
    timing_hint : float, optional
        Seconds per evaluation seen before (the previous generation), to size first tasks.
    """

    def __init__(self, n: int, granularity: int = 1, max_evaluations: int | None = None,
                 max_failure_rate: float = 0.1, model_names: Sequence[str] = ("model",),
                 progress: Progress | None = None, target_seconds: float = 0.05,
                 max_size: int = 100_000, fixed_size: int | None = None,
                 min_task_fraction: float = 0.1, timing_hint: float | None = None):
        super().__init__(n, max_failure_rate, model_names, progress, timing_hint)
        self.granularity = g = max(int(granularity), 1)
        self.limit = None if max_evaluations is None else max(
            g, int(math.ceil(max_evaluations / g)) * g)
        self.target_seconds, self.max_size = target_seconds, max_size
        self.fixed_size, self.min_task_fraction = fixed_size, min_task_fraction
        self.next_id = 0
        self.issued = 0                             # ids handed out (re-issues not counted)
        self.pending: list[Task] = []               # tasks to re-issue first
        self.done_ranges: dict[int, int] = {}       # start -> stop, beyond the prefix
        self.prefix = 0                             # every id below this is evaluated
        self.batches: list[Batch] = []
        self.accepted_ids: list[np.ndarray] = []
        self._cutoff: int | None = None
        self._received = 0

    # -- scheduling ---------------------------------------------------------------
    def next_task(self, workers: int = 1) -> Task | None:
        """The next id range to evaluate, or None when nothing more is needed now.

        ``workers`` (how many evaluate in parallel) shapes task sizes.
        """
        while self.pending:
            task = self.pending.pop(0)
            if (self._needed(task.start) and task.start not in self.done_ranges
                    and task.start >= self.prefix):
                return task
        if self.n_accepted >= self.n:
            return None
        if self.limit is not None and self.next_id >= self.limit:
            return None
        size = self._size(self.issued - self._received, workers)
        start = self.next_id
        stop = start + size if self.limit is None else min(start + size, self.limit)
        self.next_id = stop
        self.issued += stop - start
        return Task(IDS, start, stop)

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

    def reissue(self, task: Task, reason: str = "their worker was lost") -> None:
        """Put back a task whose worker died; it is re-run with the same ids."""
        log.info("re-queued evaluations %d..%d (%s)", task.start, task.stop - 1, reason)
        self.pending.append(task)

    def _needed(self, start: int) -> bool:
        return self._cutoff is None or start <= self._cutoff

    def wanted(self, task: Task) -> bool:
        """Whether an issued task can still contribute (False: cancel it if possible)."""
        return self._needed(task.start)

    @property
    def cutoff(self) -> int | None:
        """The id of the n-th accepted evaluation once known (it only decreases after):
        tasks starting beyond it cannot contribute."""
        return self._cutoff

    # -- results --------------------------------------------------------------------
    def add(self, task: Task, batch: Batch) -> None:
        """Record a finished id range."""
        start, stop = task.start, task.stop
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
        self._report(task, batch)

    def preload(self, received: Sequence[tuple[Task, Batch]]) -> None:
        """Count the id ranges a stopped run had received; queue the gaps between them.

        Parameters
        ----------
        received : sequence of (Task, Batch)
            Saved DYN results (tasks of another kind are ignored).
        """
        received = [(task, batch) for task, batch in received if task.kind == IDS]
        for task, batch in received:
            self.add(task, batch)
        top = max((task.stop for task, _ in received), default=0)
        if top <= self.next_id:
            return
        self.next_id = self.issued = top
        pos, gaps = self.prefix, []
        for start in sorted(self.done_ranges):
            if start > pos:
                gaps.append((pos, start))
            pos = max(pos, self.done_ranges[start])
        if pos < top:
            gaps.append((pos, top))
        size = self._size(0, 2)
        for a, b in gaps:
            for lo in range(a, b, size):
                self.pending.append(Task(IDS, lo, min(lo + size, b)))

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
    """STAT: particle slots 0..n-1, each filled from its own random stream.

    Parameters
    ----------
    n : int
        Particle slots.
    max_evaluations : int, optional
        Evaluation budget, spread evenly as a number of tries per slot.
    max_failure_rate : float, default 0.1
        Share of failed evaluations above which :class:`dabc.ModelError` is raised.
    model_names : sequence of str
        For messages.
    progress : callable, optional
        Called as ``progress(accepted, needed, evaluations, worker_seconds)`` after each
        result (three-argument callables without ``worker_seconds``).
    chunk : int, optional
        Slots per task; default a quarter of an even share per worker.
    workers : int, default 1
        Workers running tasks in parallel (sizes the default chunk).
    timing_hint : float, optional
        Seconds per evaluation seen before (kept for the next generation's scheduler).
    """

    def __init__(self, n: int, max_evaluations: int | None = None, max_failure_rate: float = 0.1,
                 model_names: Sequence[str] = ("model",), progress: Progress | None = None,
                 chunk: int | None = None, workers: int = 1, timing_hint: float | None = None):
        super().__init__(n, max_failure_rate, model_names, progress, timing_hint)
        self.max_attempts = None if max_evaluations is None else max(
            1, int(math.ceil(max_evaluations / n)))
        self.chunk = chunk or max(1, n // (4 * max(workers, 1)))
        self.next_slot = 0
        self.pending: list[Task] = []
        self.done_slots: set[int] = set()
        self.batches: list[Batch] = []

    def next_task(self, workers: int = 1) -> Task | None:
        """The next range of slots to fill, or None when all are handed out."""
        while self.pending:
            task = self.pending.pop(0)
            if task.start not in self.done_slots:
                return task
        if self.next_slot >= self.n:
            return None
        j0, self.next_slot = self.next_slot, min(self.n, self.next_slot + self.chunk)
        return Task(SLOTS, j0, self.next_slot, self.max_attempts)

    def all_tasks(self) -> list[Task]:
        """Every slot range, for backends that map over a fixed list."""
        tasks = []
        while (task := self.next_task()) is not None:
            tasks.append(task)
        return tasks

    def reissue(self, task: Task, reason: str = "their worker was lost") -> None:
        """Put back a task whose worker died; its slots are refilled identically."""
        log.info("re-queued slots %d..%d (%s)", task.start, task.stop - 1, reason)
        self.pending.append(task)

    def wanted(self, task: Task) -> bool:
        """Whether an issued task can still contribute."""
        return task.start not in self.done_slots

    def add(self, task: Task, batch: Batch) -> None:
        """Record a finished slot range."""
        if task.start in self.done_slots:
            return
        self._account(batch)
        self.done_slots.update(range(task.start, task.stop))
        self.batches.append(batch)
        self.n_accepted += int(batch.accepted.sum())
        self._report(task, batch)

    def preload(self, received: Sequence[tuple[Task, Batch]]) -> None:
        """Count the slot ranges a stopped run had filled; queue the other slots.

        Parameters
        ----------
        received : sequence of (Task, Batch)
            Saved STAT results (tasks of another kind are ignored).
        """
        received = [(task, batch) for task, batch in received
                    if task.kind == SLOTS and task.stop <= self.n]
        if not received:
            return
        for task, batch in received:
            self.add(task, batch)
        start = None
        for j in range(self.n + 1):
            if j < self.n and j not in self.done_slots:
                start = j if start is None else start
                if j - start + 1 < self.chunk:
                    continue
                self.pending.append(Task(SLOTS, start, j + 1, self.max_attempts))
                start = None
            elif start is not None:
                self.pending.append(Task(SLOTS, start, j, self.max_attempts))
                start = None
        self.next_slot = self.n

    @property
    def done(self) -> bool:
        """Whether every slot is filled (or has used its attempts)."""
        return len(self.done_slots) >= self.n

    def result(self) -> SampleResult:
        """One accepted evaluation per slot, in slot order (unfilled slots are missing)."""
        allb = Batch.concat(self.batches)
        evaluations = allb.take(np.lexsort((allb.attempt, allb.ids)))
        self.check_failures(int(evaluations.failed.sum()), len(evaluations))
        population = evaluations.take(evaluations.accepted)
        return SampleResult(population, evaluations, len(evaluations),
                            complete=len(population) >= self.n)


Scheduler = DynamicScheduler | StaticScheduler


def make_scheduler(request: WorkRequest, dynamic: bool, *, workers: int = 1,
                   batch_size: int | None = None, timing_hint: float | None = None,
                   target_seconds: float = 0.05, min_task_fraction: float = 0.1,
                   chunk: int | None = None) -> Scheduler:
    """A fresh DYN or STAT scheduler for one generation's request.

    ``batch_size`` fixes the ids per DYN task (rounded up to the work's granularity);
    ``timing_hint`` (seconds per evaluation, e.g. from the last generation) sizes the first
    tasks before any is measured; ``chunk`` is the slots per STAT task. The request's
    checkpoint, if any, is preloaded and then shown every batch that counts.
    """
    work = request.work
    sched: Scheduler
    if dynamic:
        sched = DynamicScheduler(request.n, work.granularity, request.max_evaluations,
                                 work.max_failure_rate, work.model_names, request.progress,
                                 target_seconds=target_seconds, fixed_size=batch_size,
                                 min_task_fraction=min_task_fraction, timing_hint=timing_hint)
    else:
        sched = StaticScheduler(request.n, request.max_evaluations, work.max_failure_rate,
                                work.model_names, request.progress, chunk=chunk,
                                workers=workers, timing_hint=timing_hint)
    if request.checkpoint is not None:
        received = request.checkpoint.received()
        if received:
            sched.preload(received)
        sched.checkpoint = request.checkpoint
    return sched
