"""ConcurrentFutureSampler: DYN sampling over any ``concurrent.futures.Executor``."""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures.process import BrokenProcessPool

from ..errors import WorkerError
from .base import Sampler, SampleResult, WorkRequest, run_task


class ConcurrentFutureSampler(Sampler):
    """DYN over an executor (thread pool, process pool, or a cluster's executor).

    ``batch_size`` is the number of evaluation ids per task, or ``"auto"`` to size tasks from
    measured simulation times. ``max_in_flight`` defaults to twice the executor's workers.
    """

    dynamic = True

    def __init__(self, executor: Executor, batch_size: int | str = "auto",
                 max_in_flight: int | None = None):
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or 'auto', not {batch_size!r}")
        self.executor, self.batch_size = executor, batch_size
        workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
        self.max_in_flight = max_in_flight or 2 * workers

    def sample(self, request: WorkRequest) -> SampleResult:
        fixed = None if self.batch_size == "auto" else self.batch_size
        sched = request.scheduler(dynamic=True, batch_size=fixed)
        payload, key = request.payload, request.work.token.encode()
        in_flight = {}
        try:
            while not sched.done:
                while len(in_flight) < self.max_in_flight:
                    task = sched.next_task(self.max_in_flight // 2)
                    if task is None:
                        break
                    in_flight[self.executor.submit(run_task, payload, task, key)] = task
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = in_flight.pop(fut)
                    sched.add(task, fut.result()[1])
                for fut, task in list(in_flight.items()):
                    if not sched.wanted(task) and fut.cancel():
                        del in_flight[fut]
        except BrokenProcessPool as exc:
            raise WorkerError("a worker process of the executor died and the executor cannot "
                              "be used any more; MulticoreEvalParallelSampler recovers from "
                              "dead workers by itself.") from exc
        finally:
            for fut in in_flight:
                fut.cancel()
        return sched.result()
