"""SingleCoreSampler: evaluates everything in the calling process (simple to debug)."""

from __future__ import annotations

from .base import Sampler, SampleResult, WorkRequest
from .scheduling import make_scheduler
from .worker import execute


class SingleCoreSampler(Sampler):
    """DYN sampling in this process, one id range after another.

    The simplest sampler: a model's exception and ``pdb`` breakpoints surface here.

    Examples
    --------
    >>> import dabc
    >>> sampler = dabc.SingleCoreSampler()
    """

    dynamic = True

    def sample(self, request: WorkRequest) -> SampleResult:
        """Sample one generation in this process."""
        sched = make_scheduler(request, dynamic=True)
        while not sched.done:
            task = sched.next_task()
            sched.add(task, execute(request.work, task))
        return sched.result()
