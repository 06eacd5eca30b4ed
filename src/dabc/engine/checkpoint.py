"""Loss-free stops inside a generation: checkpoints of received results, and graceful stops.

Why: a master killed 90 % into a generation of expensive simulations would otherwise lose
the whole generation. Under the determinism contract a DYN population is the first ``n``
accepted evaluation ids and a STAT population one result per slot, so results that are in
can be kept without changing the answer (the scheduler sees them through the sampler
contract's :class:`~dabc.samplers.base.Checkpoint`).

:class:`GenerationCheckpoint` saves the batches the scheduler counts into the History, each
write one transaction holding a columnar npz blob. Results that each took longer to
simulate than a write takes are written as soon as the waiting ones are worth 20 writes
(in practice every batch); cheaper ones about once a second (``interval``), since redoing
a second of them costs less than saving them promptly; and always at least every ``every``
results. Fast generations that end within a second write nothing. On resume it hands the
saved batches back to the scheduler.

:class:`StopGuard` turns SIGTERM (what SLURM sends before a kill) and SIGINT into
:class:`RunInterrupted` in the run's thread, and ``max_walltime`` into the same stop even in
the middle of a generation (a timer thread signals the main thread). A signal that arrives
while a checkpoint or a generation is being written waits until the write has committed.
After the first signal SIGINT and SIGTERM get their default behaviour back, so a second
Ctrl-C stops at once. A SIGKILL needs nothing: every write is one transaction.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from ..errors import InputError
from ..samplers.base import IDS, Batch, Task
from ..storage import History

_log = logging.getLogger("dabc.engine")

_COLUMNS = ("ids", "attempt", "model", "theta", "stats", "distance", "accepted", "failed")


class RunInterrupted(SystemExit):
    """The run stopped in the middle of a generation, after saving what it had received.

    Raised by :meth:`dabc.ABCSMC.run` after SIGTERM or SIGINT (the first one; a second
    SIGINT raises ``KeyboardInterrupt`` at once). It is a ``SystemExit`` whose code is
    128 plus the signal number (143 for SIGTERM, 130 for SIGINT), so an uncaught one ends
    the script with the status a shell expects of a signalled process, and ``except
    Exception`` does not swallow it. Its message says how to resume.

    Parameters
    ----------
    message : str
        What happened and how to resume.
    signum : int or None
        The signal; None for a ``max_walltime`` stop (which :meth:`~dabc.ABCSMC.run` does
        not raise: it returns).

    Attributes
    ----------
    message, signum
        As given.
    """

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(128 + signum if signum else 0)
        self.message, self.signum = message, signum

    def __str__(self) -> str:
        return self.message


class StopGuard:
    """Graceful stops for one :meth:`~dabc.ABCSMC.run` call (a context manager).

    Parameters
    ----------
    deadline : float, optional
        ``time.monotonic()`` at which ``max_walltime`` ends the run, even mid-generation.
    signals : bool, default True
        Handle SIGTERM and SIGINT (only possible, and only done, in the main thread).
    """

    def __init__(self, deadline: float | None = None, signals: bool = True):
        self.deadline = deadline
        self.signals = signals and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None       # the first signal received
        self.walltime = False                # the deadline has passed
        self._depth = 0                      # inside critical(): a stop waits
        self._waiting = False                # a stop arrived inside critical()
        self._raised = False
        self._handled = False                # a stop has been taken up
        self._saved: dict[int, object] = {}
        self._lock = threading.Lock()
        self._active = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> StopGuard:
        if self.signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[sig] = signal.signal(sig, self._on_signal)
            self._active = True
            if self.deadline is not None:
                self._timer = threading.Timer(max(self.deadline - time.monotonic(), 0.0),
                                              self._on_deadline)
                self._timer.daemon = True
                self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._active = False
        if self._timer is not None:
            self._timer.cancel()
        for sig, handler in self._saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved.clear()

    @property
    def stopping(self) -> bool:
        """Whether a stop (signal or deadline) has been asked for."""
        return self.signum is not None or self.walltime

    def _on_deadline(self) -> None:
        with self._lock:  # never signal a process whose handlers are already restored
            if self._active and not self.stopping:
                self.walltime = True
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    def _on_signal(self, signum, frame) -> None:
        if self._handled:  # a second signal: stop at once
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._handled = True
        if not self.walltime:  # else it is the timer's signal
            self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self._depth:
            self._waiting = True
            return
        self._raise()

    def _raise(self) -> None:
        self._raised = True
        raise RunInterrupted("stop", self.signum)

    def check(self) -> None:
        """Raise :class:`RunInterrupted` once the deadline has passed, for a run outside
        the main thread (in the main thread the timer signals instead)."""
        if (self.signals or self._handled or self._depth or self.deadline is None
                or time.monotonic() < self.deadline):
            return
        self.walltime = self._handled = True
        self._raise()

    @contextmanager
    def critical(self):
        """A block that a stop must not cut (a database write): a signal arriving inside
        takes effect when it ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._waiting and not self._raised:
                self._waiting = False
                self._raise()


def _pack_pairs(pairs: Sequence[tuple[Task, Batch]]) -> dict[str, np.ndarray]:
    """Tasks and their batches as one set of columns (what a checkpoint row stores)."""
    arrays = {
        "starts": np.array([t.start for t, _ in pairs], dtype=np.int64),
        "stops": np.array([t.stop for t, _ in pairs], dtype=np.int64),
        "max_attempts": np.array([-1 if t.max_attempts is None else t.max_attempts
                                  for t, _ in pairs], dtype=np.int64),
        "rows": np.array([len(b) for _, b in pairs], dtype=np.int64),
        "seconds": np.array([b.seconds for _, b in pairs], dtype=np.float64),
    }
    for col in _COLUMNS:
        arrays[col] = np.concatenate([getattr(b, col) for _, b in pairs])
    return arrays


def _unpack_pairs(kind: str, arrays: dict, first_failure: str | None) -> list[tuple[Task,
                                                                                     Batch]]:
    """The inverse of :func:`_pack_pairs`."""
    out = []
    ends = np.cumsum(arrays["rows"])
    for i, (start, stop, tries) in enumerate(zip(arrays["starts"], arrays["stops"],
                                                 arrays["max_attempts"], strict=True)):
        lo, hi = (ends[i - 1] if i else 0), ends[i]
        batch = Batch(*(arrays[col][lo:hi] for col in _COLUMNS),
                      first_failure=first_failure if i == 0 else None,
                      seconds=float(arrays["seconds"][i]))
        task = Task(kind, int(start), int(stop), None if tries < 0 else int(tries))
        out.append((task, batch))
    return out


class GenerationCheckpoint:
    """Saves generation ``t``'s counted batches in the History while it runs, and gives
    back what an earlier, stopped attempt saved (the sampler contract's ``Checkpoint``).

    Parameters
    ----------
    history : History
        The run's history (writable).
    t : int
        The running generation.
    kind : {"ids", "slots"}
        The sampler's contract (DYN or STAT): saved results of the other kind are not used.
    guard : StopGuard, optional
        Writes are critical sections of it, and the deadline is checked with each batch.
    interval : float, default 1.0
        Seconds after which waiting results are written (fast simulations).
    every : int, default 100000
        Results after which they are written whatever the time.
    cost_factor : float, default 20.0
        For results that each took longer to simulate than a write takes: write as soon as
        the waiting ones took this many times a write's duration to simulate (in practice
        each batch as it arrives; writes then cost at most 5 % of the simulation time, on
        the master).
    cheap_factor : float, default 1000.0
        The same for cheaper results (under 0.1 % of the simulation time; mostly the
        ``interval`` decides).
    fresh : bool, default False
        The generation is known to have no saved results (the run itself started it):
        the database is not asked.
    costs : list of float, optional
        The durations of earlier writes of the run (shared between its generations and
        appended to): the cost of a write is their recent median, so that one slow write
        on a busy machine does not make slow simulations look cheap.
    """

    def __init__(self, history: History, t: int, kind: str, guard: StopGuard | None = None,
                 interval: float = 1.0, every: int = 100_000, cost_factor: float = 20.0,
                 cheap_factor: float = 1000.0, fresh: bool = False,
                 costs: list[float] | None = None):
        self.history, self.t, self.kind, self.guard = history, int(t), kind, guard
        self.interval, self.every, self.cost_factor = interval, every, cost_factor
        self.cheap_factor = cheap_factor
        self.pending: list[tuple[Task, Batch]] = []
        self._rows = 0
        self._seconds = 0.0
        self.costs = costs if costs is not None else []
        self.saved_rows = 0      # results in the database (this attempt and earlier ones)
        self.writes = 0
        self.write_seconds = 0.0
        self._last = time.monotonic()
        self._seq: int | None = 0 if fresh else None
        self._received: list[tuple[Task, Batch]] | None = [] if fresh else None
        self._failed_once = False
        self.closed = False

    @property
    def write_cost(self) -> float:
        """Seconds a write takes: the median of the run's last 9 writes (with a prior
        guess of 1 ms among them until 3 are measured)."""
        recent = self.costs[-9:] + ([1e-3] if len(self.costs) < 3 else [])
        return float(statistics.median(recent))  # np.median's value, in 1 us, not 20

    def close(self) -> None:
        """The generation is stored (or given up): write nothing more."""
        self.closed = True
        self.pending, self._rows, self._seconds = [], 0, 0.0

    def received(self) -> list[tuple[Task, Batch]]:
        """The batches saved by earlier attempts at this generation (read once)."""
        if self._received is None:
            self._received = []
            other = 0
            for row in self.history.load_checkpoint(self.t):
                if row["kind"] != self.kind:
                    other += int(row["n_rows"])
                    continue
                self._received += _unpack_pairs(row["kind"], row["arrays"],
                                                row["first_failure"])
            self.saved_rows = sum(len(b) for _, b in self._received)
            if other:
                _log.warning("run %s: the checkpoint of generation %d holds %d results of the "
                             "other sampler contract (%s); they are not used with a %s sampler",
                             self.history.id, self.t, other,
                             "STAT" if self.kind == IDS else "DYN",
                             "DYN" if self.kind == IDS else "STAT")
            if self._received:
                _log.info("run %s: generation %d continues from its checkpoint: %d results in "
                          "%d tasks", self.history.id, self.t, self.saved_rows,
                          len(self._received))
        return self._received

    def record(self, task: Task, batch: Batch) -> None:
        """Keep a counted batch; write the waiting ones when they are due."""
        if self.closed:
            return
        self.pending.append((task, batch))
        self._rows += len(batch)
        self._seconds += batch.seconds
        # a result that took longer to simulate than a write takes is saved within
        # cost_factor writes' worth of simulation (slow models: each batch); cheaper ones
        # about once a second (redoing them costs less than saving them promptly)
        per_row = self._seconds / max(self._rows, 1)
        factor = self.cost_factor if per_row >= self.write_cost else self.cheap_factor
        if (self._seconds >= factor * self.write_cost or self._rows >= self.every
                or time.monotonic() - self._last >= self.interval):
            self.flush()
        if self.guard is not None:
            self.guard.check()

    def flush(self) -> None:
        """Write the waiting batches now, in one transaction (nothing when none wait).

        A failed write is logged and retried at the next one; the run goes on.
        """
        if not self.pending or self.closed:
            return
        ctx = self.guard.critical() if self.guard is not None else _nothing()
        with ctx:
            pairs, rows = self.pending, self._rows
            if self._seq is None:
                self._seq = self.history.next_checkpoint_seq(self.t)
            first = next((b.first_failure for _, b in pairs if b.first_failure), None)
            try:
                cost = self.history.save_checkpoint(self.t, self._seq, self.kind,
                                                    _pack_pairs(pairs), len(pairs), rows, first)
            except InputError as exc:
                self._last = time.monotonic()
                if not self._failed_once:
                    self._failed_once = True
                    _log.warning("run %s: could not save a checkpoint of generation %d (%s); "
                                 "retrying with the next results", self.history.id, self.t, exc)
                return
            self._seq += 1
            self.pending, self._rows, self._seconds = [], 0, 0.0
            self.saved_rows += rows
            self.writes += 1
            self.write_seconds += cost
            self.costs.append(cost)
            self._last = time.monotonic()


@contextmanager
def _nothing():
    yield
