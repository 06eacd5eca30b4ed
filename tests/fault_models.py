"""Models of the fault suite (tests/test_faults.py, cases 3, 5 and 13).

This module is pickled by value (cloudpickle), so its models reach Dask's spawned worker
processes whatever their ``sys.path``; forked multicore workers inherit it anyway.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import cloudpickle
import numpy as np

import dabc

cloudpickle.register_pickle_by_value(sys.modules[__name__])

PRIOR_X = dabc.Prior(x=dabc.RV("norm", 0, 1))
OBS = {"y": 1.0}


def hangs_1_in_1000(p, rng):
    """Never returns for about 1 call in 1,000, chosen by the parameter (so every sampler
    hangs on the same evaluations): a Python loop of short sleeps, like a solver that never
    converges."""
    if int(abs(p["x"]) * 1e6) % 1000 == 7:
        while True:
            time.sleep(0.05)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def stuck_uninterruptibly(p, rng):
    """Like ``hangs_1_in_1000``, but SIGALRM is blocked first, as C code that masks signals
    or holds the GIL would: only the master killing the worker can end it."""
    if int(abs(p["x"]) * 1e6) % 1000 == 7:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def slow_1_in_1000(p, rng):
    """About 1 ms per call, and 3 s for about 1 call in 1,000 (a 3000x outlier)."""
    time.sleep(3.0 if int(abs(p["x"]) * 1e6) % 1000 == 7 else 0.001)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


_LEAK: list = []


def leaky(p, rng):
    """Keeps 1 MB per call (written, so resident), like a model with a growing cache (the
    issue's model kept 100 kB; more here, so a few hundred calls cross a limit)."""
    _LEAK.append(np.ones(125_000))
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def sleepy(p, rng):
    """1-3 ms per call."""
    time.sleep(0.001 + 0.002 * rng.random())
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def pid_then_hang(p, rng):
    """Writes its worker's PID to $DABC_TEST_PIDFILE, then never returns."""
    with open(os.environ["DABC_TEST_PIDFILE"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(3600)
    return {"y": p["x"]}
