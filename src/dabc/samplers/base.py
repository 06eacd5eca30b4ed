"""The sampler contract: everything a new backend's author needs, and nothing else.

The engine hands a sampler one :class:`WorkRequest` per generation. Its ``work`` (a
:class:`Work`) is picklable; ``payload`` is that work cloudpickled once. A sampler cuts the
generation into :class:`Task` objects, has ``work.run(task)`` evaluated wherever it likes
(``dabc.samplers.worker.run_task`` does it from the payload in any process), feeds each
returned :class:`Batch` to a scheduler from ``dabc.samplers.scheduling``, and returns the
scheduler's :class:`SampleResult`. The schedulers make the answer independent of where and
in which order tasks ran:

- **DYN** (``dynamic = True``): tasks are id ranges; the population is the first ``n``
  accepted evaluation ids.
- **STAT** (``dynamic = False``): tasks are particle-slot ranges; each slot is filled from its
  own random stream.

A task may run twice (a worker presumed dead, a backup copy): both runs give the same batch,
and the scheduler counts the first only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal, NamedTuple, Protocol

import cloudpickle
import numpy as np

IDS: Literal["ids"] = "ids"
SLOTS: Literal["slots"] = "slots"


class Task(NamedTuple):
    """One unit of work: evaluation ids ``start..stop-1`` (kind ``"ids"``, DYN), or particle
    slots ``start..stop-1``, each tried up to ``max_attempts`` times (kind ``"slots"``, STAT;
    None: until accepted)."""

    kind: Literal["ids", "slots"]
    start: int
    stop: int
    max_attempts: int | None = None


@dataclass
class Batch:
    """Columnar results of a task: one row per evaluation.

    ``ids`` are evaluation ids (DYN) or slots (STAT, with ``attempt`` numbering the tries).
    ``fatal`` is a user error that must stop the run (e.g. a model returning the wrong keys);
    ``aborted``: the task gave up early because most evaluations failed; ``stopped_early``: a
    cancelled DYN task that evaluated only its first ids (never counted).
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
    """A generation as sampled: the population and every evaluation that counts for it."""

    population: Batch       # accepted rows, in id (DYN) or slot (STAT) order
    evaluations: Batch      # every counted evaluation, accepted or not
    n_evaluated: int        # evaluations whose results arrived, including discarded extras
    complete: bool          # False when a simulation budget ended the generation early


#: Progress callback: (accepted, needed, evaluations).
Progress = Callable[[int, int, int], None]


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
    """What the engine asks of a sampler for generation ``generation``: ``n`` accepted
    particles, within ``max_evaluations`` (None: no budget), reporting to ``progress``."""

    work: Work
    n: int
    max_evaluations: int | None = None
    progress: Progress | None = None
    generation: int = 0
    _payload: bytes | None = field(default=None, repr=False)

    @property
    def payload(self) -> bytes:
        """The work, cloudpickled once per generation (what travels to other processes)."""
        if self._payload is None:
            self._payload = cloudpickle.dumps(self.work)
        return self._payload


class Sampler:
    """Base class of all samplers: implement :meth:`sample`; :meth:`close` if you hold
    resources. ``dynamic`` says which contract (DYN or STAT) the sampler follows."""

    dynamic: ClassVar[bool] = True

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
