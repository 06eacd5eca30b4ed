"""The master's side of the live state: a heartbeat thread and the steering it obeys.

A dashboard or ``dabc info`` elsewhere sees a run only through its database
(:mod:`dabc.storage.live`). While :meth:`dabc.ABCSMC.run` runs, a :class:`LiveRecorder`
thread writes the latest snapshot of the generation in progress to ``dabc_live``: at most
every 0.5 s when it changed (a new generation at once, but never two writes within
:attr:`LiveRecorder.MIN_GAP`), and at least every
:data:`~dabc.storage.live.HEARTBEAT` seconds, so a reader can tell a slow generation from a
dead master.

The sampler's progress callback runs once per result, on the thread that schedules work:
it must not wait for a database. :meth:`LiveRecorder.progress` therefore only replaces one
tuple in memory (an atomic assignment, no lock); the thread copies it out and writes it. A
database error in the thread is logged (at WARNING the first time, then at DEBUG until a
write succeeds again) and never reaches the run: a run outlives a flaky database
connection, it only looks stale meanwhile.

Steering requests are applied by the engine itself between generations
(:func:`apply_controls`), so a change never lands in the middle of one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa

from .._compat.process import database_lock
from ..errors import InputError
from ..storage import History
from ..storage import live as _live

__all__ = ["LiveRecorder", "ProgressFanout", "apply_controls", "discard_pending"]

_log = logging.getLogger("dabc.engine")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class LiveRecorder:
    """Writes a running run's live row from a daemon thread.

    Parameters
    ----------
    history : History
        The run's history (its engine is shared; the thread uses its own connections).
    rules : dict
        The stopping rules in force (see :data:`dabc.storage.live.RULES`).
    steerable : bool
        Whether the rules may be changed from outside (shown to readers).
    interval : float, default 0.5
        Shortest time between two writes of a changed snapshot.
    heartbeat : float, optional
        Longest time between two writes; default :data:`dabc.storage.live.HEARTBEAT`.

    Examples
    --------
    >>> with LiveRecorder(history, rules, True) as rec:        # doctest: +SKIP
    ...     rec.generation(0, float("inf"), 1000)
    ...     sampler.sample(WorkRequest(work, 1000, progress=rec.progress))
    """

    MIN_GAP = 0.05
    """Shortest time between two writes, even for a new generation (seconds)."""

    def __init__(self, history: History, rules: dict, steerable: bool,
                 interval: float = 0.5, heartbeat: float | None = None):
        self._engine = history.engine
        self.run_id = int(history.id)
        self.interval = float(interval)
        self.heartbeat = _live.HEARTBEAT if heartbeat is None else float(heartbeat)
        self._fixed = {"host": socket.gethostname(), "pid": os.getpid(),
                       "steerable": bool(steerable)}
        self._gen: tuple = (0, float("inf"), 0, None)  # t, epsilon, needed, started
        self._numbers: tuple = (0, 0, 0.0)            # accepted, evaluations, worker seconds
        self._rules = dict(rules)
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new generation: write it now, not at the next tick
        self._thread: threading.Thread | None = None
        self._failing = False
        self.writes = 0

    # -- fed by the engine and the sampler -----------------------------------------------
    def generation(self, t: int, epsilon: float, needed: int) -> None:
        """A new generation begins (resets the counts; the thread writes it at once, or
        :attr:`MIN_GAP` after its last write)."""
        self._numbers = (0, 0, 0.0)
        self._gen = (int(t), float(epsilon), int(needed), _now())
        self._wake.set()

    def progress(self, accepted: int, needed: int, evaluations: int,
                 worker_seconds: float = 0.0) -> None:
        """The sampler's callback: remember the counts (O(1), no I/O, no lock)."""
        self._numbers = (accepted, evaluations, worker_seconds)

    def set_rules(self, rules: dict) -> None:
        """The stopping rules changed (steering); written with the next snapshot."""
        self._rules = dict(rules)

    # -- the thread -------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        t, eps, needed, started = self._gen
        accepted, evaluations, seconds = self._numbers
        return {"t": t, "epsilon": eps,
                "accepted": int(accepted), "needed": needed, "evaluations": int(evaluations),
                "worker_seconds": float(seconds), "generation_started": started,
                "rules": self._rules, **self._fixed}

    def write(self) -> bool:
        """Write the current snapshot now; False (and a log record) when that failed."""
        try:
            with database_lock:  # no fork of the master meanwhile (see _compat.process)
                _live.write_live(self._engine, self.run_id, self._snapshot())
        except (sa.exc.SQLAlchemyError, OSError, InputError) as exc:
            level = logging.DEBUG if self._failing else logging.WARNING
            _log.log(level, "run %s: could not record the live state (the run goes on; "
                     "readers see it as stale until a write succeeds): %s", self.run_id,
                     str(getattr(exc, "orig", None) or exc).splitlines()[0])
            self._failing = True
            return False
        if self._failing:
            _log.info("run %s: the live state is recorded again", self.run_id)
        self._failing = False
        self.writes += 1
        return True

    def _loop(self) -> None:
        last_written, last_time = None, time.monotonic()
        while True:
            self._wake.wait(self.interval)
            # never two writes closer than MIN_GAP: a new generation is shown at once (a
            # dashboard then sees it in progress), but a run of generations of a few
            # milliseconds costs a write every MIN_GAP, not one per generation
            rest = last_time + self.MIN_GAP - time.monotonic()
            if rest > 0:
                self._stop.wait(rest)
            self._wake.clear()
            if self._stop.is_set():
                break
            snap = (self._gen, self._numbers, tuple(sorted(self._rules.items())))
            now = time.monotonic()
            if snap != last_written or now - last_time >= self.heartbeat:
                if self.write():
                    last_written = snap
                last_time = now  # a failed write is retried at the next heartbeat or change

    def start(self) -> LiveRecorder:
        """Write the first snapshot (from now on the run can be steered) and start the
        thread.

        The first write is made here, on the caller's thread: written from the new thread
        it would hold the interpreter while the run starts (one write costs about 1 ms of
        Python; a thread that does not give the interpreter back is interrupted only every
        5 ms)."""
        self.write()
        self._thread = threading.Thread(target=self._loop, name=f"dabc-live-{self.run_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and write the final snapshot."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval))
            self._thread = None
        self.write()

    def __enter__(self) -> LiveRecorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ProgressFanout:
    """One progress callback for the sampler that feeds the recorder and the progress line.

    Parameters
    ----------
    recorder : LiveRecorder
        Gets every call.
    line : callable
        The :class:`~dabc.engine.progress.ProgressLine` (rate-limits itself).
    """

    def __init__(self, recorder: LiveRecorder, line):
        self.recorder, self.line = recorder, line

    def __call__(self, accepted: int, needed: int, evaluations: int,
                 worker_seconds: float = 0.0) -> None:
        self.recorder.progress(accepted, needed, evaluations, worker_seconds)
        self.line(accepted, needed, evaluations, worker_seconds)


def _fmt(value) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def apply_controls(history: History, t: int, rules: dict, steering: bool,
                   recorder: LiveRecorder | None = None) -> str | None:
    """Apply the run's pending steering requests after generation ``t`` was stored.

    A rule change replaces ``rules[action]`` in place (refused when ``steering`` is False);
    every request is marked applied with its outcome and logged at INFO on
    ``dabc.engine``. A database error is logged and the requests stay pending (read again
    after the next generation).

    Parameters
    ----------
    history : History
        The run's history.
    t : int
        The generation just stored.
    rules : dict
        The stopping rules in force; changed in place.
    steering : bool
        Whether the rules may be changed from outside.
    recorder : LiveRecorder, optional
        Told the new rules.

    Returns
    -------
    str or None
        The stop reason, "stopped from <source> after generation t", when a stop was
        requested; else None.
    """
    try:
        pending = history.pending_controls()
    except (sa.exc.SQLAlchemyError, InputError) as exc:
        _log.warning("run %s: could not read steering requests after generation %d: %s",
                     history.id, t, exc)
        return None
    reason = None
    for req in pending:
        action, value = req["action"], req["value"]
        who = req["source"] or "an unnamed source"
        when = f"{req['time']:%Y-%m-%d %H:%M:%S} UTC"
        if action == "stop":
            reason = reason or f"stopped from {who} after generation {t}"
            outcome = f"stopping after generation {t}"
            _log.info("run %s: stop after generation %d, requested by %s at %s", history.id, t,
                      who, when)
        elif action not in _live.ACTIONS:
            outcome = f"refused: unknown action {action!r}"
            _log.warning("run %s: %s (request %d by %s)", history.id, outcome, req["id"], who)
        elif not steering:
            outcome = "refused: the run was started with steering=False"
            _log.info("run %s: %s %s -> %s refused (steering=False), requested by %s at %s",
                      history.id, action, _fmt(rules.get(action)), _fmt(value), who, when)
        else:
            old = rules.get(action)
            rules[action] = value
            outcome = f"{action} {_fmt(old)} -> {_fmt(value)}"
            _log.info("run %s: %s, requested by %s at %s", history.id, outcome, who, when)
        try:
            history.mark_applied(req["id"], outcome)
        except (sa.exc.SQLAlchemyError, InputError) as exc:
            _log.warning("run %s: could not record the outcome of steering request %d: %s",
                         history.id, req["id"], exc)
    if recorder is not None and pending:
        recorder.set_rules(rules)
    return reason


def discard_pending(history: History, why: str) -> None:
    """Mark the run's pending requests as not applied (the run ended, or they predate this
    call of ``run``), so that a later resume does not obey stale ones."""
    try:
        for req in history.pending_controls():
            history.mark_applied(req["id"], f"not applied: {why}")
    except (sa.exc.SQLAlchemyError, InputError) as exc:
        _log.warning("run %s: could not close the pending steering requests: %s", history.id,
                     exc)
