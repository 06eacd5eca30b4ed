"""Helpers for tests that act on a run while it runs (kill a worker, cancel a job) from a
watcher thread, shared by the Dask and the SLURM fault tests."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import pytest


def now_utc() -> datetime:
    """The current time as History stores ``started``/``finished`` (naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def stored_generations(db: Path) -> int:
    """Generations stored so far, read with plain sqlite3 while the run is writing."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM dabc_generations").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet, or busy


def when(ready, action, state: dict, delay: float = 0.0, limit: float = 120.0,
         poll: float = 0.02) -> threading.Thread:
    """A thread that runs ``action(ready())`` ``delay`` s after ``ready()`` is truthy.

    It records the time of the action (:func:`now_utc`) in ``state["at"]`` and gives up
    once ``state["stop"]`` is set or after ``limit`` seconds; ``ready`` is polled every
    ``poll`` seconds.
    """

    def watch():
        deadline = time.monotonic() + limit
        while not state.get("stop") and time.monotonic() < deadline:
            if value := ready():
                time.sleep(delay)
                state["at"] = now_utc()
                action(value)
                return
            time.sleep(poll)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def plain_failures(test):
    """Report a failing test as plain text (``pytest.fail(..., pytrace=False)``).

    On CPython 3.11.7, ``ast.parse`` running in two threads at once can raise SystemError
    "AST constructor recursion depth mismatch" (gh-106905, fixed in 3.11.8). pytest parses
    source files to format a failure while distributed's threads in this process (the
    LocalCluster's scheduler, the clients) format tracebacks for their logs, which turned
    failing tests into an INTERNALERROR that ended the whole session.
    """

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except (pytest.fail.Exception, pytest.skip.Exception):
            raise
        except Exception as exc:
            pytest.fail(_format_exception(exc), pytrace=False)

    return wrapper


def _format_exception(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:  # the same CPython bug; format without parsing the source
        frames = [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n    {f.line}'
                  for f in traceback.extract_tb(exc.__traceback__)]
        return "\n".join(["Traceback (most recent call last):", *frames,
                          f"{type(exc).__name__}: {exc}"])


class BackgroundRun:
    """``abc.run(observed, db=sqlite:///db, **kwargs)`` in a daemon thread (StopGuard installs
    no signal handlers there); ``join()`` returns its History or re-raises its error."""

    def __init__(self, abc, observed: dict, db: Path, **kwargs):
        self.result, self.error = None, None

        def target():
            try:
                self.result = abc.run(observed, db=f"sqlite:///{db}", **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        return self.result
