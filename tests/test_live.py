"""The master's live state and steering, through the database only (issue 13, part 4).

Real runs of dabc.ABCSMC write real SQLite files; they run in a background thread of this
process (StopGuard installs no signal handlers there) or, for the dead-master case, in a
subprocess that is SIGKILLed. Every reader opens its own History, as a dashboard on another
machine would. The model sleeps 4 ms per evaluation under a constant epsilon, so every
generation of 60 particles takes a few tenths of a second: long enough for a request to land
while it runs.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import dabc
from dabc.engine.progress import ProgressLine, estimate_remaining, format_duration
from dabc.errors import InputError
from dabc.storage import live as storage_live
from watch import BackgroundRun

POP = 60
SLEEP_S = 0.004
OBSERVED = {"y": 2.0}


def _model(p, rng):
    time.sleep(SLEEP_S)
    return {"y": p["theta"] + 0.5 * rng.standard_normal()}


def _abc(seed: int = 3, population: int = POP) -> dabc.ABCSMC:
    return dabc.ABCSMC(_model, dabc.Prior(theta=dabc.RV("uniform", 0, 4)),
                       population_size=population, sampler=dabc.SingleCoreSampler(),
                       seed=seed, epsilon=dabc.ConstantEpsilon(1.0), progress=False)


class Background(BackgroundRun):
    """``abc.run(OBSERVED, ...)`` in a daemon thread (see :class:`watch.BackgroundRun`)."""

    def __init__(self, abc: dabc.ABCSMC, db: Path, **kwargs):
        super().__init__(abc, OBSERVED, db, **kwargs)


def _wait(what, timeout: float = 30, every: float = 0.02):
    """Poll ``what()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = what()
        except InputError:  # the database or its first run is not there yet
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _reader(db: Path) -> dabc.History:
    return dabc.History(f"sqlite:///{db}")


def _stored(db: Path) -> int:
    """Generations stored so far (-1: none), read as a separate process would."""
    h = _reader(db)
    return h.max_t if h.id is not None else -1


def _run_row(h: dabc.History) -> dict:
    return h.all_runs().set_index("id").loc[h.id].to_dict()


# -- the live row ----------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_live_rows_advance_and_live_states_reads_all_runs_in_one_query(tmp_path):
    db = tmp_path / "live.db"
    bg = Background(_abc(population=150), db, max_generations=3)  # ~1.3 s per generation
    seen = []
    while bg.thread.is_alive():
        try:
            state = _reader(db).live_state()
        except InputError:
            state = None
        if state is not None:
            seen.append((state["t"], state["accepted"], state["evaluations"], state["alive"],
                         state["updated"]))
        time.sleep(0.05)
    h = bg.join()
    assert seen, "no live row was ever seen"
    ts = [s[0] for s in seen]
    assert ts == sorted(ts) and set(ts) >= {0, 1, 2}, ts
    # within a generation, the accepted count and evaluations grow between snapshots
    within = [(a, e) for t, a, e, _, _ in seen if t == 1]
    assert len({a for a, _ in within}) >= 2, within
    assert [e for _, e in within] == sorted(e for _, e in within)
    assert all(alive for *_, alive, _ in seen[:-1])
    beats = sorted({s[4] for s in seen})
    gaps = [(b - a).total_seconds() for a, b in zip(beats, beats[1:], strict=False)]
    assert max(gaps) < 2 * storage_live.HEARTBEAT + 1, gaps  # a heartbeat at least every 2 s

    final = h.live_state()
    assert final["t"] == 2 and final["accepted"] == final["needed"] == 150
    assert final["worker_seconds"] >= final["evaluations"] * SLEEP_S * 0.9
    assert final["rules"] == {"max_generations": 3, "minimum_epsilon": 0.0,
                              "max_total_simulations": None, "max_walltime": None,
                              "min_acceptance_rate": 0.0, "min_eps_diff": 0.05}
    assert final["steerable"] is True and final["pid"] == os.getpid()
    assert final["alive"] is False and final["status"] == "done"  # ended: not alive

    for seed in (4, 5):  # two more runs in the same database
        _abc(seed=seed, population=10).run(OBSERVED, db=f"sqlite:///{db}", max_generations=1)
    reader = _reader(db)
    reader.live_states()  # the first call also checks once that the live tables exist
    statements = []
    sa.event.listen(reader.engine, "before_cursor_execute",
                    lambda *args, **kw: statements.append(args[2]))
    states = reader.live_states()
    assert len(statements) == 1, statements
    assert sorted(states) == [1, 2, 3]
    assert states[2]["needed"] == states[3]["needed"] == 10
    runs = reader.all_runs()
    assert list(runs["status"]) == ["done"] * 3 and not runs["alive"].any()
    assert runs["updated"].notna().all()


# -- steering ----------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_a_stop_request_ends_the_run_after_its_current_generation(tmp_path):
    db = tmp_path / "stop.db"
    bg = Background(_abc(), db, max_generations=50)
    _wait(lambda: _stored(db) >= 1)
    asker = _reader(db)
    assert asker.live_state()["alive"]
    event = asker.request_control("stop", source="test-suite 127.0.0.1")
    at = asker.max_t  # the request is read once the generation in progress is stored
    h = bg.join()
    assert h.max_t in (at, at + 1), (at, h.max_t)
    row = _run_row(h)
    assert row["status"] == "done"
    assert row["stop_reason"] == f"stopped from test-suite 127.0.0.1 after generation {h.max_t}"
    log = h.events()
    assert list(log["id"]) == [event] and list(log["action"]) == ["stop"]
    assert log["applied"].notna().all() and log["value"].isna().all()
    assert log["outcome"][0] == f"stopping after generation {h.max_t}"
    assert log["applied"][0] >= log["time"][0]


@pytest.mark.timeout(90)
def test_max_generations_raised_then_lowered_mid_run(tmp_path, caplog):
    db = tmp_path / "rules.db"
    caplog.set_level(logging.INFO, logger="dabc.engine")
    bg = Background(_abc(), db, max_generations=3)
    _wait(lambda: _stored(db) >= 0)
    asker = _reader(db)
    first = asker.request_control("max_generations", 5, source="notebook")
    # the raise is applied after generation 0 or 1: before the run would stop at 3
    _wait(lambda: _stored(db) >= 2)
    # the live row shows the new rule within one write interval (0.5 s)
    _wait(lambda: asker.live_state()["rules"]["max_generations"] == 5, timeout=2)
    second = asker.request_control("max_generations", 4, source="dashboard 127.0.0.1")
    h = bg.join()
    assert h.n_populations == 4
    assert _run_row(h) == {**_run_row(h), "status": "done",
                           "stop_reason": "max_generations=4 reached"}
    log = h.events()
    assert list(log["id"]) == [first, second]
    assert list(log["outcome"]) == ["max_generations 3 -> 5", "max_generations 5 -> 4"]
    assert list(log["value"]) == [5, 4] and list(log["source"]) == ["notebook",
                                                                    "dashboard 127.0.0.1"]
    assert h.live_state()["rules"]["max_generations"] == 4
    texts = [r.getMessage() for r in caplog.records if r.name == "dabc.engine"]
    assert any(f"run {h.id}: max_generations 3 -> 5, requested by notebook at " in t
               for t in texts), texts
    assert any(f"run {h.id}: max_generations 5 -> 4, requested by dashboard 127.0.0.1 at " in t
               for t in texts), texts


@pytest.mark.timeout(90)
def test_steering_false_refuses_rule_changes_but_honours_stop(tmp_path):
    db = tmp_path / "locked.db"
    abc = _abc()
    bg = Background(abc, db, max_generations=30, steering=False)
    _wait(lambda: _stored(db) >= 0)
    asker = _reader(db)
    state = asker.live_state()
    assert state["steerable"] is False and state["alive"]
    with pytest.raises(InputError, match="steering=False.*request_control\\('stop'\\)"):
        asker.request_control("max_generations", 2, source="dashboard")
    # a request written past the check (an older client, a race) is refused by the master
    sneaked = storage_live.insert_event(asker.engine, asker.id, "minimum_epsilon", 0.5,
                                        "old client")
    _wait(lambda: asker.events()["applied"].notna().all())
    assert asker.events()["outcome"].tolist() == \
        ["refused: the run was started with steering=False"]
    assert asker.live_state()["rules"]["minimum_epsilon"] == 0.0
    stop = asker.request_control("stop", source="dashboard")
    h = bg.join()
    log = h.events()
    assert list(log["id"]) == [sneaked, stop]
    assert log["outcome"].iloc[1] == f"stopping after generation {h.max_t}"
    assert _run_row(h)["stop_reason"] == f"stopped from dashboard after generation {h.max_t}"
    assert h.max_t < 29


@pytest.mark.timeout(90)
def test_bad_steering_requests_say_what_to_do(tmp_path):
    db = tmp_path / "bad.db"
    bg = Background(_abc(), db, max_generations=30)
    _wait(lambda: _stored(db) >= 0)
    h = _reader(db)
    cases = [
        (("pause",), "Unknown steering action 'pause'; use one of 'stop'"),
        (("stop", 3), "'stop' takes no value"),
        (("max_generations",), "whole number >= 1, not None"),
        (("max_generations", 0), "whole number >= 1, not 0"),
        (("max_generations", 2.5), "whole number"),
        (("max_generations", "5"), "whole number"),
        (("max_generations", True), "whole number"),
        (("max_total_simulations", -3), "whole number >= 1"),
        (("minimum_epsilon", -0.1), "finite number >= 0"),
        (("minimum_epsilon", float("nan")), "finite number >= 0"),
        (("minimum_epsilon", "0.1"), "finite number >= 0"),
    ]
    for args, message in cases:
        with pytest.raises(InputError, match=message.replace("(", "\\(")):
            h.request_control(*args)
    assert h.events().empty  # nothing was recorded
    # accepted forms: an integral float, None for no simulation limit
    h.request_control("max_generations", 30.0, source="x")
    h.request_control("max_total_simulations", None, source="x")
    h.request_control("stop", source="x")
    done = bg.join()
    assert list(done.events()["value"]) == [30, None, None]
    with pytest.raises(InputError, match="is not running \\(status 'done'.*dabc resume"):
        done.request_control("stop")
    with pytest.raises(InputError, match="No run with id 99"):
        done.request_control("stop", run_id=99)


def test_the_liveness_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DABC_LIVE_TIMEOUT", "0.5")
    assert storage_live.live_timeout() == 0.5
    monkeypatch.setenv("DABC_LIVE_TIMEOUT", "soon")
    with pytest.raises(InputError, match="DABC_LIVE_TIMEOUT='soon'"):
        storage_live.live_timeout()
    monkeypatch.delenv("DABC_LIVE_TIMEOUT")
    assert storage_live.live_timeout() == storage_live.LIVE_TIMEOUT == 10.0


# -- a dead master ----------------------------------------------------------------------------
SCRIPT = textwrap.dedent("""
    import sys, time
    import dabc

    def model(p, rng):
        time.sleep(0.004)
        return {"y": p["theta"] + 0.5 * rng.standard_normal()}

    abc = dabc.ABCSMC(model, dabc.Prior(theta=dabc.RV("uniform", 0, 4)), population_size=40,
                      sampler=dabc.SingleCoreSampler(), seed=7,
                      epsilon=dabc.ConstantEpsilon(1.0), progress=False)
    abc.run({"y": 2.0}, db="sqlite:///" + sys.argv[1], max_generations=1000)
""")


def _dabc(*args, env: dict) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "dabc"
    found = str(exe) if exe.exists() else shutil.which("dabc")
    assert found, "the 'dabc' console script is not installed (pip install -e '.[test]')"
    return subprocess.run([found, *map(str, args)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


@pytest.mark.timeout(90)
def test_a_sigkilled_master_shows_as_interrupted_after_the_timeout(tmp_path, monkeypatch):
    db = tmp_path / "killed.db"
    script = tmp_path / "master.py"
    script.write_text(SCRIPT)
    timeout = 1.5
    monkeypatch.setenv("DABC_LIVE_TIMEOUT", str(timeout))
    env = {"DABC_LIVE_TIMEOUT": str(timeout)}
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait(lambda: _stored(db) >= 1)
        h = _reader(db)
        row = _run_row(h)
        assert row["status"] == "running" and row["alive"]
        info = _dabc("info", db, env=env)
        assert info.returncode == 0, info.stderr
        assert "running on " in info.stdout and f"(pid {proc.pid})" in info.stdout
        assert " elapsed, about " in info.stdout and " left" in info.stdout
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = time.monotonic()
    last = h.live_state()["updated"]
    row = _wait(lambda: (r := _run_row(_reader(db)))["status"] == "interrupted" and r,
                timeout=timeout + 5)
    # not before the timeout: the last heartbeat was at most 0.5 s before the kill
    assert time.monotonic() - killed_at >= timeout - 0.6
    assert not row["alive"]
    assert row["stop_reason"].startswith(f"master stopped responding at {last:%Y-%m-%d %H:%M:%S}"
                                         " UTC (no heartbeat for ")
    state = _reader(db).live_state()
    assert state["alive"] is False and state["status"] == "running"  # stored status untouched
    with pytest.raises(InputError, match="master stopped responding.*dabc resume"):
        _reader(db).request_control("stop")
    info = _dabc("info", db, env=env)
    assert info.returncode == 0, info.stderr
    assert "interrupted" in info.stdout and "master stopped responding at" in info.stdout
    assert "running on" not in info.stdout
    # with a longer timeout the same run still counts as running (nothing was written)
    fresh = _dabc("info", db, env={"DABC_LIVE_TIMEOUT": "60"}).stdout.split("Run ")[0]
    assert "running" in fresh and "interrupted" not in fresh


# -- the progress line ------------------------------------------------------------------------
def test_the_progress_line_shows_elapsed_time_and_an_estimate():
    out = io.StringIO()
    line = ProgressLine(enabled=True, stream=out)
    line.start(3, 0.5)
    time.sleep(0.25)
    line(100, 400, 800, 0.5)
    text = out.getvalue()
    assert text.startswith("\r\033[K")
    assert "generation 3 | accepted 100/400 | evaluations 800 | epsilon 0.5 | " \
           "acceptance rate 0.125 | 0 s elapsed, about 1 s left | workers busy 2." in text
    assert line.text(250, 1000, 2000, 40.0, 10.0).endswith(
        "10 s elapsed, about 30 s left | workers busy 4.0")
    assert line.text(0, 1000, 20, None, 5.0).endswith("5 s elapsed, about ? left")
    # three arguments, the contract before worker_seconds, still work
    time.sleep(0.11)
    line(200, 400, 900)
    assert out.getvalue().count("\r\033[K") == 2 and "workers busy" not in \
        out.getvalue().rsplit("\r", 1)[1]


def test_estimate_remaining_is_the_time_at_the_rate_so_far():
    assert estimate_remaining(250, 1000, 10.0) == pytest.approx(30.0)
    assert estimate_remaining(1000, 1000, 10.0) == 0.0
    assert estimate_remaining(1200, 1000, 10.0) == 0.0
    assert estimate_remaining(0, 1000, 10.0) is None
    assert estimate_remaining(10, 1000, 0.0) is None
    assert [format_duration(s) for s in (None, 0.4, 59.6, 185.2, 7500)] == \
        ["?", "0 s", "1 min 00 s", "3 min 05 s", "2 h 05 min"]


def test_progress_callables_of_both_contracts_are_recognised():
    """The scheduler calls a callable with worker_seconds only when it takes a 4th
    positional argument (the live row's worker_seconds, checked end to end in the first
    test, come through this)."""
    from dabc.samplers.scheduling import _takes_four

    def three(a, n, e):
        pass

    def four(a, n, e, s):
        pass

    def optional(a, n, e, s=None):
        pass

    def star(*args):
        pass

    def keyword_only(a, n, e, *, s=None):
        pass

    assert [_takes_four(f) for f in (three, four, optional, star, keyword_only, None, print)] \
        == [False, True, True, True, False, False, True]
    assert _takes_four(ProgressLine(enabled=False))
