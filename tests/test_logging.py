"""What the library logs, and that it never prints.

Real runs (SingleCoreSampler, real multicore worker processes, one SIGKILLed mid-generation),
records caught with pytest's ``caplog``; output caught at the file-descriptor level (``capfd``),
so a print from a forked worker would be seen too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time

import pytest

import dabc
from dabc.samplers import SingleCoreSampler

PRIOR = dabc.Prior(x=dabc.RV("norm", 0, 1))
OBS = {"y": 1.0}
_MAIN_PID = os.getpid()


def gauss(p, rng):
    return {"y": p["x"] + 0.5 * rng.standard_normal()}


def gauss_sleepy(p, rng):
    time.sleep(0.002)
    return {"y": p["x"] + 0.5 * rng.standard_normal()}


def always_fails(p, rng):
    raise ValueError("simulator exploded (sentinel 3c9e)")


def _messages(caplog, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


@pytest.mark.timeout(60)
def test_run_logs_start_generations_stop_and_resume(tmp_path, caplog):
    db = f"sqlite:///{tmp_path / 'log.db'}"
    caplog.set_level(logging.INFO, logger="dabc")
    abc = dabc.ABCSMC(gauss, PRIOR, population_size=30, sampler=SingleCoreSampler(), seed=7,
                      progress=False)
    h = abc.run(OBS, db=db, max_generations=2)
    info = _messages(caplog, "dabc.engine", logging.INFO)
    started = [m for m in info if "started" in m]
    assert len(started) == 1, info
    assert f"run {h.id} started in {tmp_path / 'log.db'}" in started[0] or \
        f"run {h.id} started in {db}" in started[0]
    assert "SingleCoreSampler" in started[0]
    assert "population size 30" in started[0] and "seed 7" in started[0]
    stored = [m for m in info if "stored:" in m]
    assert len(stored) == 2, info
    for t, m in enumerate(stored):
        assert f"generation {t} stored" in m
        for word in ("epsilon", "simulations", "acceptance rate", "ESS", " s"):
            assert word in m, m
    assert any("stopped" in m and "max_generations=2 reached" in m for m in info), info

    caplog.clear()
    resumed = dabc.ABCSMC.load(db, sampler=SingleCoreSampler(), progress=False)
    resumed.run(max_generations=3)
    info = _messages(caplog, "dabc.engine", logging.INFO)
    assert any(f"run {h.id}" in m and "resumed from generation 2" in m for m in info), info
    assert sum("generation 2 stored:" in m for m in info) == 1, info
    assert sum("stored:" in m for m in info) == 1, info
    assert any("max_generations=3 reached" in m for m in info), info


@pytest.mark.timeout(60)
def test_records_hide_the_database_password(pg_url, caplog):
    """A real PostgreSQL run whose URL holds a password: no record shows it (the test server
    trusts local connections, so any password is accepted; a server that checks passwords
    gets its own, given in DABC_TEST_POSTGRES_URL)."""
    import sqlalchemy as sa

    from dabc.storage import display_url

    url = sa.engine.make_url(pg_url)
    if not url.password:
        url = url.set(username=url.username or os.environ.get("USER") or "postgres",
                      password="s3cret-7f2a")
    password = url.password
    db = url.render_as_string(hide_password=False)
    caplog.set_level(logging.DEBUG, logger="dabc")
    abc = dabc.ABCSMC(gauss, PRIOR, population_size=10, sampler=SingleCoreSampler(), seed=1,
                      progress=False)
    h = abc.run(OBS, db=db, max_generations=2)
    dabc.ABCSMC.load(db, sampler=SingleCoreSampler(), progress=False).run(max_generations=3)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"run {h.id} started in {display_url(db)}" in m for m in messages), messages
    assert any(f"run {h.id} of {display_url(db)} resumed" in m for m in messages), messages
    # the password as it would stand in a URL (it may equal the user or database name)
    assert not [m for m in messages if f":{password}@" in m]


@pytest.mark.timeout(60)
def test_failed_run_is_logged_once_at_error(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dabc")
    abc = dabc.ABCSMC(always_fails, PRIOR, population_size=20, sampler=SingleCoreSampler(),
                      seed=3, progress=False)
    with pytest.raises(dabc.ModelError):
        abc.run(OBS, db=f"sqlite:///{tmp_path / 'f.db'}", max_generations=2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].name == "dabc.engine"
    msg = errors[0].getMessage()
    assert "failed in generation 0" in msg and "ModelError" in msg and "always_fails" in msg
    assert "Traceback" not in msg  # the traceback is logged once, by the samplers
    first = _messages(caplog, "dabc.samplers", logging.WARNING)
    tracebacks = [m for m in first if "first failed evaluation" in m]
    assert len(tracebacks) == 1 and "sentinel 3c9e" in tracebacks[0]
    assert not [r for r in caplog.records if r.name == "dabc.engine" and "stopped" in
                r.getMessage()]


class KillMidGeneration(dabc.MulticoreEvalParallelSampler):
    """Real multicore sampler that SIGKILLs one of its workers in the middle of generation 1,
    from the master's progress callback (so other evaluations of the generation are in
    flight, and the victim holds unfinished tasks)."""

    def __init__(self, n_procs):
        super().__init__(n_procs)
        self.killed: list[int] = []

    def sample(self, request):
        if request.generation == 1:
            inner = request.progress

            def progress(accepted, needed, evaluations):
                if inner is not None:
                    inner(accepted, needed, evaluations)
                if not self.killed and evaluations >= 20:
                    pid = self.worker_pids[0]
                    assert pid != _MAIN_PID
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)

            request = dataclasses.replace(request, progress=progress)
        return super().sample(request)


@pytest.mark.timeout(90)
def test_worker_killed_mid_generation_is_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dabc")
    sampler = KillMidGeneration(2)
    abc = dabc.ABCSMC(gauss_sleepy, PRIOR, population_size=200, sampler=sampler, seed=11,
                      progress=False)
    h = abc.run(OBS, db=f"sqlite:///{tmp_path / 'k.db'}", max_generations=3)
    assert len(sampler.killed) == 1, "the worker was never killed; the test is void"
    assert h.n_populations == 3
    warnings = _messages(caplog, "dabc.samplers", logging.WARNING)
    died = [m for m in warnings if "worker process" in m and "died" in m]
    assert len(died) == 1, warnings
    assert str(sampler.killed[0]) in died[0]
    infos = _messages(caplog, "dabc.samplers", logging.INFO)
    assert any("re-queued" in m for m in infos), infos
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sampler", ["single", "multicore"])
def test_complete_run_without_progress_prints_nothing(sampler, tmp_path, capfd):
    s = SingleCoreSampler() if sampler == "single" else dabc.MulticoreEvalParallelSampler(2)
    abc = dabc.ABCSMC(gauss, PRIOR, population_size=40, sampler=s, seed=5, progress=False)
    h = abc.run(OBS, db=f"sqlite:///{tmp_path / 'quiet.db'}", max_generations=3)
    dabc.ABCSMC.load(h.url, sampler=SingleCoreSampler(), progress=False).run(max_generations=4)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
