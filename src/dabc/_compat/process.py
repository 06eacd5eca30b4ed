"""Process facilities of the OS that dabc's worker processes rely on.

**A parent-death signal**: Linux ``prctl(PR_SET_PDEATHSIG, sig)``.

What it relies on: the Linux system call ``prctl`` with option ``PR_SET_PDEATHSIG`` (1),
called through ``ctypes`` on the C library. The kernel then sends ``sig`` to the calling
process when the *thread* that forked it exits, so a worker forked by a master's main
thread dies with the master even when the master is killed with SIGKILL (no cleanup code of
the master runs then). It is not inherited across a further fork.

Checked on Linux kernels 4.x to 6.x with glibc (6.x installed when this was written).

Fallback: on other systems (or when the call fails) :func:`set_parent_death_signal`
returns False; the caller then relies on a watchdog thread that notices a changed
``os.getppid()`` (which cannot run while a C call holds the GIL).

**Forks that inherit no held database lock.** A forked child has one thread, a copy of the
one that forked; every lock another thread held at that instant stays held in the child for
good. dabc's master has such threads (the live-state recorder writes to the database while
the run goes on), and SQLite keeps a process-wide mutex: a worker forked while that thread was
inside SQLite hung as soon as its garbage collector finalized a connection object it had
inherited (seen as a generation that never ended, 1 run in about 100 under load). Two
measures, both with public Python APIs only (``os.register_at_fork``, ``gc.freeze``):

- :data:`database_lock`: dabc's background threads hold it while they are inside a database
  driver, and every fork of the process waits for it (at most :data:`FORK_WAIT` seconds, then
  it forks anyway with a warning), so no such lock is held when the child is made;
- the child freezes every object it inherited (``gc.freeze()``) before any Python code runs
  in it, so its garbage collector never finalizes the parent's objects: closing an inherited
  SQLite connection in a child would also release the parent's file locks.

Private API: when a fork went ahead without the lock, the child resets it with
``threading.RLock._at_fork_reinit()`` (Python 3.9 to 3.13; skipped where it is missing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import threading

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread exits.

    Returns True on success, False where the platform has no such call.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


FORK_WAIT = 30.0
"""Seconds a fork waits for :data:`database_lock` before it goes ahead regardless."""

database_lock = threading.RLock()
"""Held by dabc's background threads while they are inside a database driver (see the
module docstring); every fork of this process waits until it is free."""

_held_for_fork = threading.local()


def _before_fork() -> None:
    # no collection between the fork and the child's gc.freeze() (hooks of other modules
    # run Python code in between); the collector's state is put back on both sides
    _held_for_fork.gc_was_enabled = gc.isenabled()
    gc.disable()
    _held_for_fork.value = database_lock.acquire(timeout=FORK_WAIT)
    if not _held_for_fork.value:
        logging.getLogger("dabc").warning(
            "forking while a dabc background thread has been inside the database for over "
            "%g s; the child process may inherit a held database lock", FORK_WAIT)


def _after_fork_in_parent() -> None:
    if getattr(_held_for_fork, "value", False):
        _held_for_fork.value = False
        database_lock.release()
    if getattr(_held_for_fork, "gc_was_enabled", False):
        _held_for_fork.gc_was_enabled = False
        gc.enable()


def _after_fork_in_child() -> None:
    gc.freeze()  # never finalize what the parent owns (its database connections above all)
    if not getattr(_held_for_fork, "value", False) and hasattr(database_lock, "_at_fork_reinit"):
        # forked after FORK_WAIT while another thread held it: that thread does not exist
        # here, so the lock would stay held for good (private RLock API, Python >= 3.9)
        database_lock._at_fork_reinit()
    _after_fork_in_parent()  # the forking thread owns the lock in the child as well


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
