"""Forked Dask worker processes for dabc's own local cluster, so that a plain script works.

Why: ``distributed`` starts a nanny's worker process with the start method named by the
public config key ``distributed.worker.multiprocessing-method`` (default ``"spawn"``). A
spawned (or forkserver) child re-runs the main script as ``__mp_main__`` before it starts, so
a script without an ``if __name__ == "__main__":`` guard starts the whole analysis again in
every worker, and the workers fail ("Nanny failed to start", hundreds of lines). A forked
child does not re-run anything: the multicore sampler forks for the same reason.

What it relies on: ``Nanny.instantiate()`` (public name, not in Dask's user docs) creates and
starts the worker process, on the first start and on every restart after a worker died;
``distributed.utils.get_mp_context()`` reads the config key when the process object is made
inside it. :class:`ForkingNanny` holds the key at ``"fork"`` while its ``instantiate`` runs
(reference-counted, so that nannies starting together restore the user's value once the
last one is up); the nannies of other clusters starting at that same moment fork too, which
works as well. A forked worker inherits the master's Python signal handlers (during a run,
dabc's :class:`~dabc.engine.checkpoint.StopGuard`); the worker classes here put back those
of a fresh interpreter, as a spawned worker has them.

Checked on distributed 2024.1 to 2026.8.0 (the version installed when this was written).

Fallback: where ``fork`` is not a start method (Windows), :func:`fork_available` is False and
dabc's local cluster uses plain nannies (then a script needs the ``__main__`` guard).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading

import dask
from distributed import Nanny, Worker

from .distributed_http import QuietWorker

KEY = "distributed.worker.multiprocessing-method"

_lock = threading.Lock()
_holders = 0
_saved = None


def fork_available() -> bool:
    """Whether worker processes can be forked here (not on Windows).

    Returns
    -------
    bool
        True when ``"fork"`` is one of this platform's start methods.
    """
    return sys.platform != "win32" and "fork" in multiprocessing.get_all_start_methods()


class _Fork:
    """Hold ``distributed.worker.multiprocessing-method`` at "fork" (reference-counted)."""

    def __enter__(self):
        global _holders, _saved
        with _lock:
            if _holders == 0:
                _saved = dask.config.get(KEY, default="spawn")
                dask.config.set({KEY: "fork"})
            _holders += 1

    def __exit__(self, *exc):
        global _holders
        with _lock:
            _holders -= 1
            if _holders == 0:
                dask.config.set({KEY: _saved})


def _fresh_signals() -> None:
    """A forked worker: the signal handlers of a fresh interpreter, not the master's."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class ForkedWorker(Worker):
    """A ``Worker`` that starts with default SIGINT/SIGTERM handlers."""

    def __init__(self, *args, **kwargs):
        _fresh_signals()
        super().__init__(*args, **kwargs)


class QuietForkedWorker(QuietWorker):
    """A :class:`~dabc._compat.distributed_http.QuietWorker` with default signal handlers."""

    def __init__(self, *args, **kwargs):
        _fresh_signals()
        super().__init__(*args, **kwargs)


class ForkingNanny(Nanny):
    """A ``Nanny`` whose worker process is forked (see the module docstring)."""

    def __init__(self, *args, worker_class=None, **kwargs):
        super().__init__(*args, worker_class=worker_class or ForkedWorker, **kwargs)

    async def instantiate(self):
        with _Fork():
            return await super().instantiate()


class QuietForkingNanny(ForkingNanny):
    """A :class:`ForkingNanny` whose worker opens no HTTP port."""

    def __init__(self, *args, worker_class=None, **kwargs):
        super().__init__(*args, worker_class=worker_class or QuietForkedWorker, **kwargs)
