"""MappingSampler: STAT sampling over any ``map``-like function."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from .base import Sampler, SampleResult, WorkRequest
from .scheduling import make_scheduler
from .worker import run_task


class MappingSampler(Sampler):
    """STAT over any map, e.g. ``map``, ``multiprocessing.Pool().map`` or a cluster's map.

    Each task carries the generation's pickled work, unpickled once per process.

    Parameters
    ----------
    map_ : callable, default builtins.map
        Called as ``map_(function, tasks)``; must return the results (in any order).
    chunks : int, optional
        How many tasks the particle slots are cut into (default: 4 per CPU).

    Examples
    --------
    The built-in ``map`` (in this process), or a pool's map:

    >>> import dabc
    >>> sampler = dabc.MappingSampler()                       # builtins.map
    >>> from multiprocessing import Pool
    >>> with Pool(4) as pool:                                 # doctest: +SKIP
    ...     abc = dabc.ABCSMC(model, prior, sampler=dabc.MappingSampler(pool.map))
    ...     history = abc.run(observed, db="sqlite:///results.db")
    """

    dynamic = False

    def __init__(self, map_: Callable = map, chunks: int | None = None):
        self.map_ = map_
        self.chunks = chunks

    def sample(self, request: WorkRequest) -> SampleResult:
        """Map over every slot range of the generation at once."""
        chunks = self.chunks or 4 * (os.cpu_count() or 1)
        sched = make_scheduler(request, dynamic=False, chunk=max(1, -(-request.n // chunks)))
        fn = functools.partial(run_task, request.payload, key=request.work.token.encode())
        for task, batch in self.map_(fn, sched.all_tasks()):
            sched.add(task, batch)
        return sched.result()
