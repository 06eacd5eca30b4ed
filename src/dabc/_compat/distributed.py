"""Private parts of ``distributed`` that the Dask sampler relies on, behind one door.

Checked on distributed 2024.1 to 2026.8.0 (the version installed when this was written).

- :func:`scatter_broadcast` calls ``Client._scatter`` through ``Client.sync`` with a
  ``callback_timeout``. The public ``Client.scatter(timeout=...)`` only bounds the wait for
  workers, not the broadcast itself, and a broadcast to a worker that was killed but not yet
  removed by the scheduler can otherwise wait forever. Fallback when ``_scatter`` is gone:
  the public ``Client.scatter`` without an overall deadline (a warning says so).
- :func:`cancellation_check` reads the running task's state on its worker
  (``distributed.worker.thread_state.key`` and ``Worker.state.tasks``). A worker cannot
  interrupt a running task, so this is how a cancelled task notices it should stop.
  Fallback: None (tasks run to their end; results are the same, only later).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dabc.samplers")


def scatter_broadcast(client: Any, data: Any, timeout: float) -> Any:
    """Put ``data`` on every worker of ``client``; raise an ``OSError`` subclass (Dask's
    ``TimeoutError``) when the whole broadcast takes more than ``timeout`` seconds.

    Returns the future of the scattered data.
    """
    private = getattr(client, "_scatter", None)
    if private is None:
        warnings.warn("this version of distributed has no Client._scatter: scattering without "
                      "an overall deadline (a dead worker can delay a generation)", stacklevel=2)
        return client.scatter(data, broadcast=True, hash=False)
    return client.sync(private, data, broadcast=True, hash=False, callback_timeout=timeout)


def cancellation_check() -> Callable[[], bool] | None:
    """On a Dask worker, inside a task: a cheap function answering whether the client has
    cancelled this task. None when not on a worker or when the worker's internals differ."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        ts = get_worker().state.tasks.get(thread_state.key)
    except (ImportError, ValueError, AttributeError):  # not on a worker, or other internals
        return None
    if ts is None:
        return None
    return lambda: ts.state == "cancelled"
