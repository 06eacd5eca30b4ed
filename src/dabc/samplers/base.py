"""The sampler contract: everything a new backend's author needs, and nothing else.

Per generation the engine hands a sampler a :class:`WorkRequest`. A sampler cuts it into
:class:`Task` objects, has each run anywhere (``dabc.samplers.worker.run_task`` runs one from
the pickled ``payload`` in any process), gives every :class:`Batch` to a scheduler from
``dabc.samplers.scheduling`` and returns its :class:`SampleResult`. The schedulers make the
answer independent of where and in which order tasks ran, under one of two contracts: DYN
(``dynamic = True``: id ranges; the population is the first ``n`` accepted ids) or STAT (slot
ranges; each slot has its own random stream). A task may run twice (a worker presumed dead,
a backup copy): both runs give the same batch, and only the first counts. A request's
:class:`Checkpoint` is the scheduler's business too: it preloads what a stopped run already
had and is shown every batch that counts, so every backend saves and resumes alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal, NamedTuple, Protocol

import numpy as np

from .._compat.cloudpickle import dumps as dumps_code

IDS: Literal["ids"] = "ids"
SLOTS: Literal["slots"] = "slots"


class Task(NamedTuple):
    """One unit of work.

    Attributes
    ----------
    kind : {"ids", "slots"}
        Evaluate ids ``start..stop-1`` (DYN), or fill slots ``start..stop-1`` (STAT).
    start, stop : int
        The half-open range.
    max_attempts : int or None
        STAT only: tries per slot (None: until accepted).
    """

    kind: Literal["ids", "slots"]
    start: int
    stop: int
    max_attempts: int | None = None


@dataclass
class Batch:
    """Columnar results of a task: one row per evaluation.

    Attributes
    ----------
    ids, attempt, model, theta, stats, distance, accepted, failed : numpy.ndarray
        Evaluation id (DYN) or slot and try (STAT); model index, parameters, flattened
        statistics, distance; masks (a failed evaluation is never accepted).
    first_failure, fatal : str or None
        The first failure's traceback; a user error that stops the run (e.g. wrong keys).
    seconds : float
        Wall time of the task on its worker.
    aborted, stopped_early : bool
        The task gave up because most evaluations failed; a cancelled DYN task evaluated
        only its first ids (such a batch is never counted).
    """

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
    aborted: bool = False
    stopped_early: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index) -> Batch:
        """Rows selected by a boolean mask, an index array or a slice."""
        return Batch(*(getattr(self, f)[index] for f in _COLUMNS),
                     first_failure=self.first_failure, seconds=self.seconds)

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """All rows of several batches, in the given order."""
        first = next((b.first_failure for b in batches if b.first_failure), None)
        return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in _COLUMNS),
                     first_failure=first, seconds=sum(b.seconds for b in batches))


_COLUMNS = tuple(f.name for f in fields(Batch))[:8]


@dataclass
class SampleResult:
    """A generation as sampled.

    Attributes
    ----------
    population, evaluations : Batch
        The accepted rows, in id (DYN) or slot (STAT) order; every evaluation that counts.
    n_evaluated : int
        Evaluations whose results arrived, including discarded extras.
    complete : bool
        False when a simulation budget ended the generation early.
    """

    population: Batch
    evaluations: Batch
    n_evaluated: int
    complete: bool


#: Progress callback, called after each result that counts:
#: ``progress(accepted, needed, evaluations, worker_seconds)`` (the generation's accepted
#: particles so far, capped at ``needed``; evaluations received; seconds the workers spent
#: on them). A callable that takes only three positional arguments is called without
#: ``worker_seconds``. It runs on the sampler's thread once per result: keep it cheap.
Progress = Callable[..., None]


class Checkpoint(Protocol):
    """Where a generation's results are saved while it runs (the engine's, in the History)."""

    def received(self) -> Sequence[tuple[Task, Batch]]:
        """Tasks and batches saved before: the scheduler counts them and never reissues them."""
        ...

    def record(self, task: Task, batch: Batch) -> None:
        """Called by the scheduler with each batch that counts, in arrival order."""
        ...


class Work(Protocol):
    """What a worker may use of a generation's work (the engine's ``GenerationWork``)."""

    token: str                   # unique per generation: a cache key for the unpickled work
    granularity: int             # DYN id ranges must be multiples of this (vectorized blocks)
    max_failure_rate: float      # share of failed evaluations that stops the run
    model_names: Sequence[str]   # for messages

    def run(self, task: Task, cancelled: Callable[[], bool] | None = None) -> Batch:
        """Evaluate ``task``; a DYN task stops early once ``cancelled()`` answers True."""
        ...


@dataclass
class WorkRequest:
    """What the engine asks of a sampler for one generation.

    Attributes
    ----------
    work : Work
        The generation's work.
    n, max_evaluations : int
        Accepted particles needed; the evaluation budget (None: none).
    progress : callable or None
        Called as ``progress(accepted, needed, evaluations, worker_seconds)`` after each
        result (see :data:`Progress`; three-argument callables get the first three).
    generation : int
        The generation's index, for messages.
    checkpoint : Checkpoint or None
        Preloads and records results (:func:`~dabc.samplers.scheduling.make_scheduler`
        connects it; a sampler never touches it).
    """

    work: Work
    n: int
    max_evaluations: int | None = None
    progress: Progress | None = None
    generation: int = 0
    checkpoint: Checkpoint | None = None
    _payload: bytes | None = field(default=None, repr=False)

    @property
    def payload(self) -> bytes:
        """The work, cloudpickled once per generation (what travels to other processes)."""
        if self._payload is None:
            self._payload = dumps_code(self.work)  # tracebacks keep the user's file
        return self._payload


class Sampler:
    """Base class of all samplers: implement :meth:`sample`; :meth:`close` if you hold
    resources. ``dynamic`` says which contract (DYN or STAT) the sampler follows.

    Examples
    --------
    A sampler that evaluates one id range after another in this process (what
    :class:`~dabc.SingleCoreSampler` does), built on the DYN scheduler:

    >>> from dabc.samplers.base import Sampler
    >>> from dabc.samplers.scheduling import make_scheduler
    >>> from dabc.samplers.worker import execute
    >>> class InProcess(Sampler):
    ...     dynamic = True
    ...     def sample(self, request):
    ...         sched = make_scheduler(request, dynamic=True)
    ...         while not sched.done:
    ...             task = sched.next_task()
    ...             sched.add(task, execute(request.work, task))
    ...         return sched.result()
    """

    dynamic: ClassVar[bool] = True

    def start(self) -> None:
        """Start workers or connect, and raise at once when that fails (say why).

        :meth:`dabc.ABCSMC.run` calls it before it writes a new run into the database or
        resumes one, so a sampler that cannot start leaves no run behind. It may be called
        again before each run; :meth:`sample` starts the sampler too when it was not.
        Default: nothing to start.
        """

    def sample(self, request: WorkRequest) -> SampleResult:
        """Sample one generation; raise ``dabc.WorkerError`` when workers cannot do it."""
        raise NotImplementedError

    def stop_requested(self) -> bool:
        """Whether an operator asked the run to end after the current generation."""
        return False

    def close(self) -> None:
        """Release workers or connections; the sampler can be used again afterwards."""

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
