"""SingleCoreSampler: evaluates everything in the calling process (simple to debug)."""

from __future__ import annotations

from .base import Sampler, SampleResult, WorkRequest


class SingleCoreSampler(Sampler):
    """DYN sampling in this process, one id range after another."""

    dynamic = True

    def sample(self, request: WorkRequest) -> SampleResult:
        sched = request.scheduler(dynamic=True)
        work = request.work
        while not sched.done:
            task = sched.next_task()
            sched.add(task, work.run(task))
        return sched.result()
