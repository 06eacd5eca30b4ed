"""The worker side of every sampler: load a generation's work once, run a task, time it,
and hold every simulation to its time limit.

Every backend evaluates tasks through :func:`execute` (or :func:`run_task`, which first
unpickles the work from its payload), so a task's time is measured in one place, on the
worker, and the schedulers size later tasks from it.

The work calls each model through :func:`call_model`. With a ``timeout`` given to
:func:`execute`, a simulation that runs longer raises :class:`SimulationTimeout` inside the
model: in a process's main thread through ``SIGALRM`` (``signal.setitimer``; interrupts
Python code and ``time.sleep``), in any other thread (a Dask worker's) through an
asynchronous exception fired by one watchdog thread per process
(:mod:`dabc._compat.threads`; interrupts Python code only). The work counts such an
evaluation as failed. Code that cannot be interrupted at all (a C call holding the GIL) is
the multicore master's to handle: it watches each worker's :class:`Monitor` and kills a
worker whose simulation overran its deadline.
"""

from __future__ import annotations

import hashlib
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import cloudpickle

from .._compat.threads import async_raise
from .base import Batch, Task, Work


class SimulationTimeout(BaseException):
    """Raised inside a model that ran longer than ``simulation_timeout``.

    A ``BaseException``, so that a model's own ``except Exception`` does not swallow it.
    """


class Monitor:
    """Shared memory between a multicore worker and its master.

    The worker shows what it is doing: ``start`` (``time.monotonic()`` when the current
    simulation began, 0 when none runs) and ``calls`` (model calls begun in the current
    task). The master shows which of its tasks are still wanted: the serial of the
    generation it samples and, once known, that generation's DYN cut-off (tasks starting
    beyond it cannot contribute); see :meth:`cancelled_for`.
    """

    def __init__(self, ctx):
        self._array = ctx.RawArray("d", 4)  # start, calls, generation serial, cut-off
        self._array[2], self._array[3] = -1.0, math.inf

    def open(self, serial: int) -> None:
        """The master samples generation ``serial`` now (no cut-off yet)."""
        self._array[3] = math.inf
        self._array[2] = serial

    def close(self) -> None:
        """The master is done with its generation: every task still running may stop."""
        self._array[2] = -1.0

    def set_cutoff(self, cutoff: int) -> None:
        """DYN tasks starting beyond evaluation id ``cutoff`` are no longer wanted."""
        self._array[3] = cutoff

    def cancelled_for(self, serial: int, task: Task) -> Callable[[], bool]:
        """The ``cancelled`` callable of :func:`execute` for ``task`` of generation
        ``serial`` (about 0.1 µs a call): True once the master no longer wants it."""
        array, start = self._array, task.start
        return lambda: array[2] != serial or start > array[3]

    @property
    def start(self) -> float:
        """When the running simulation began (0.0: none runs)."""
        return self._array[0]

    @property
    def calls(self) -> int:
        """Model calls begun in the current task."""
        return int(self._array[1])

    def begin(self, call: int) -> None:
        """Model call ``call`` of the current task starts now."""
        self._array[1] = call
        self._array[0] = time.monotonic()

    def end(self) -> None:
        """No simulation runs any more."""
        self._array[0] = 0.0


class _State(threading.local):
    timeout: float | None = None    # seconds per simulation, or None
    alarm: bool = False              # the limit is enforced by SIGALRM (main thread)
    armed: bool = False              # a SIGALRM now means our simulation overran
    monitor: Monitor | None = None   # set in a multicore worker process
    calls: int = 0                   # model calls begun in the current task
    doomed: frozenset = frozenset()  # call indices that hung uninterruptibly before


_state = _State()


def set_monitor(monitor: Monitor | None) -> None:
    """Publish this thread's simulations to ``monitor`` (a multicore worker's)."""
    _state.monitor = monitor


def check_timeout(timeout: float | None) -> float | None:
    """A sampler's ``simulation_timeout`` argument: None or a positive number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"simulation_timeout must be a positive number of seconds or None, "
                         f"not {timeout!r}")
    return float(timeout)


def timeout_message(params) -> str:
    """The failure reason of an evaluation that exceeded its limit."""
    t = _state.timeout
    limit = f"simulation_timeout={t:g} s" if t is not None else "simulation_timeout"
    return (f"simulation exceeded {limit} with parameters {params}; raise "
            "simulation_timeout or fix the model")


def call_model(model: Callable, params, rng):
    """Call ``model(params, rng)`` under this thread's limits (see the module docstring)."""
    st = _state
    if st.timeout is None and st.monitor is None:
        return model(params, rng)
    call = st.calls
    st.calls = call + 1
    if call in st.doomed:  # it hung beyond interruption before: it would hang again
        raise SimulationTimeout
    mon = st.monitor
    if mon is not None:
        mon.begin(call)
    try:
        if st.timeout is None:
            return model(params, rng)
        if st.alarm:
            st.armed = True
            signal.setitimer(signal.ITIMER_REAL, st.timeout)
            try:
                return model(params, rng)
            finally:
                st.armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        with _watchdog.deadline(st.timeout):
            return model(params, rng)
    finally:
        if mon is not None:
            mon.end()


def _on_alarm(signum, frame):
    if _state.armed:
        _state.armed = False
        raise SimulationTimeout


class _Watchdog:
    """One thread per process that raises SimulationTimeout in threads past their deadline."""

    def __init__(self):
        self._cond = threading.Condition()
        self._deadlines: dict[int, list] = {}  # thread id -> [deadline, fired]
        self._thread: threading.Thread | None = None

    @contextmanager
    def deadline(self, seconds: float):
        tid = threading.get_ident()
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="dabc-timeout",
                                                daemon=True)
                self._thread.start()
            self._deadlines[tid] = [time.monotonic() + seconds, False]
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                entry = self._deadlines.pop(tid, None)
                if entry is not None and entry[1]:
                    async_raise(tid, None)  # not yet delivered: clear it, raise it here
            if entry is not None and entry[1]:
                raise SimulationTimeout

    def _loop(self):
        with self._cond:
            while True:
                waiting = [e[0] for e in self._deadlines.values() if not e[1]]
                if not waiting:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if min(waiting) > now:
                    self._cond.wait(min(waiting) - now)
                    continue
                for tid, entry in self._deadlines.items():
                    if not entry[1] and entry[0] <= now:
                        entry[1] = True
                        async_raise(tid, SimulationTimeout)


_watchdog = _Watchdog()

_WORK_CACHE: dict[bytes, Work] = {}


def load_work(payload: bytes, key: bytes | None = None) -> Work:
    """Unpickle ``payload`` once per process; later calls with the same key reuse it.

    Only the latest generation's work is kept. ``key`` defaults to a hash of the payload;
    pass the work's token to skip hashing.
    """
    if key is None:
        key = hashlib.blake2b(payload, digest_size=16).digest()
    work = _WORK_CACHE.get(key)
    if work is None:
        _WORK_CACHE.clear()  # keep only the current generation
        work = _WORK_CACHE[key] = cloudpickle.loads(payload)
    return work


def execute(work: Work, task: Task, cancelled: Callable[[], bool] | None = None,
            timeout: float | None = None, doomed: frozenset = frozenset()) -> Batch:
    """Run one task of ``work`` and record its wall time in ``batch.seconds``.

    ``timeout`` limits each simulation (seconds; None: no limit); ``doomed`` holds the
    indices of model calls of this task that hung beyond interruption in an earlier run:
    they fail at once instead of being called again.
    """
    st = _state
    saved = st.timeout, st.alarm, st.calls, st.doomed
    st.timeout, st.calls, st.doomed = timeout, 0, doomed
    st.alarm = (timeout is not None and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread())
    old_handler = signal.signal(signal.SIGALRM, _on_alarm) if st.alarm else None
    try:
        t0 = time.perf_counter()
        batch = work.run(task, cancelled)
        batch.seconds = time.perf_counter() - t0
        return batch
    finally:
        if st.alarm:
            signal.signal(signal.SIGALRM, signal.SIG_DFL if old_handler is None else old_handler)
        st.timeout, st.alarm, st.calls, st.doomed = saved


def run_task(payload: bytes, task: Task, key: bytes | None = None,
             cancelled: Callable[[], bool] | None = None,
             timeout: float | None = None) -> tuple[Task, Batch]:
    """Evaluate one task of a pickled generation's work (for maps, executors and clusters);
    returns the task with its batch, so results can arrive in any order. ``timeout``
    limits each simulation (see :func:`execute`)."""
    return task, execute(load_work(payload, key), task, cancelled, timeout)
