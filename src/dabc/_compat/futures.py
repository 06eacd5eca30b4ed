"""The one private attribute of ``concurrent.futures`` dabc reads, behind one door.

``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` keep their worker count in
``_max_workers`` (CPython 3.8 to 3.14; checked on the installed 3.11). There is no public
accessor. :class:`~dabc.samplers.ConcurrentFutureSampler` uses it only to choose how many
tasks to keep in flight; the fallback, for executors without it (a cluster's executor, a
future CPython), is ``os.cpu_count()``, and ``max_in_flight=`` overrides either.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor


def executor_workers(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once (best effort, at least 1)."""
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int) and n > 0:
        return n
    return os.cpu_count() or 1
