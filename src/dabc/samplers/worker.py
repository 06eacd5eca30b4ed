"""The worker side of every sampler: load a generation's work once, run a task, time it.

Every backend evaluates tasks through :func:`execute` (or :func:`run_task`, which first
unpickles the work from its payload), so a task's time is measured in one place, on the
worker, and the schedulers size later tasks from it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import cloudpickle

from .base import Batch, Task, Work

_WORK_CACHE: dict[bytes, Work] = {}


def load_work(payload: bytes, key: bytes | None = None) -> Work:
    """Unpickle ``payload`` once per process; later calls with the same key reuse it.

    Only the latest generation's work is kept. ``key`` defaults to a hash of the payload;
    pass the work's token to skip hashing.
    """
    if key is None:
        key = hashlib.blake2b(payload, digest_size=16).digest()
    work = _WORK_CACHE.get(key)
    if work is None:
        _WORK_CACHE.clear()  # keep only the current generation
        work = _WORK_CACHE[key] = cloudpickle.loads(payload)
    return work


def execute(work: Work, task: Task, cancelled: Callable[[], bool] | None = None) -> Batch:
    """Run one task of ``work`` and record its wall time in ``batch.seconds``."""
    t0 = time.perf_counter()
    batch = work.run(task, cancelled)
    batch.seconds = time.perf_counter() - t0
    return batch


def run_task(payload: bytes, task: Task, key: bytes | None = None,
             cancelled: Callable[[], bool] | None = None) -> tuple[Task, Batch]:
    """Evaluate one task of a pickled generation's work (for maps, executors and clusters);
    returns the task with its batch, so results can arrive in any order."""
    return task, execute(load_work(payload, key), task, cancelled)
