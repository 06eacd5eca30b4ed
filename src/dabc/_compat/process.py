"""A parent-death signal for worker processes: Linux ``prctl(PR_SET_PDEATHSIG, sig)``.

What it relies on: the Linux system call ``prctl`` with option ``PR_SET_PDEATHSIG`` (1),
called through ``ctypes`` on the C library. The kernel then sends ``sig`` to the calling
process when the *thread* that forked it exits, so a worker forked by a master's main
thread dies with the master even when the master is killed with SIGKILL (no cleanup code of
the master runs then). It is not inherited across a further fork.

Checked on Linux kernels 4.x to 6.x with glibc (6.x installed when this was written).

Fallback: on other systems (or when the call fails) :func:`set_parent_death_signal`
returns False; the caller then relies on a watchdog thread that notices a changed
``os.getppid()`` (which cannot run while a C call holds the GIL).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

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
