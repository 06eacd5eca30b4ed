"""SingleCoreSampler: evaluates everything in the calling process (simple to debug)."""

from __future__ import annotations

from .base import Sampler, SampleResult, WorkRequest
from .scheduling import make_scheduler
from .worker import check_timeout, execute

_MIN_TASK_FRACTION = 0.01


class SingleCoreSampler(Sampler):
    """DYN sampling in this process, one id range after another.

    The simplest sampler: a model's exception and ``pdb`` breakpoints surface here.

    Parameters
    ----------
    simulation_timeout : float, optional
        Seconds one simulation (one model call; one block call for a vectorized model) may
        run. Over the limit it is interrupted (``SIGALRM`` when sampling from the main
        thread, else an asynchronous exception that interrupts Python code only) and counts
        as a failed evaluation, under ``max_failure_rate``. While a model runs, the sampler
        owns ``SIGALRM`` and the real-time interval timer. Default None: no limit.

    Raises
    ------
    ValueError
        If ``simulation_timeout`` is not a positive number.

    Examples
    --------
    >>> import dabc
    >>> sampler = dabc.SingleCoreSampler()
    """

    dynamic = True
    simulation_timeout: float | None = None  # subclasses need not call __init__

    def __init__(self, simulation_timeout: float | None = None):
        self.simulation_timeout = check_timeout(simulation_timeout)

    def sample(self, request: WorkRequest) -> SampleResult:
        """Sample one generation in this process."""
        # in-process tasks cost no round trip (about 0.1-0.2 ms of bookkeeping each): near
        # the end of a generation they may shrink to 1 % of the target time, not the 10 %
        # that remote workers need, so fast models evaluate few ids beyond the population
        sched = make_scheduler(request, dynamic=True, min_task_fraction=_MIN_TASK_FRACTION)
        while not sched.done:
            task = sched.next_task()
            sched.add(task, execute(request.work, task, timeout=self.simulation_timeout))
        return sched.result()
