"""Worker jobs that end early, on a real SLURM: the ABC run finishes with the same result.

Three ways a worker job ends before the run does, each on an adaptive SLURMCluster that keeps
two jobs (adapt(minimum_jobs=2, maximum_jobs=2): the lost job is replaced, nothing manual):

- ``scancel`` of one job mid-generation (also in the default suite, once);
- the job reaches its walltime and SLURM kills it ("CANCELLED AT ... DUE TO TIME LIMIT" in its
  log, during the run; ``walltime_margin=None`` so no lifetime pre-empts it). slurmctld checks
  time limits about every 30 s, so with a 1-minute walltime the kill comes 60-90 s after the
  job starts and the run is sized to last longer;
- the worker retires by its lifetime (``walltime_margin``): its log shows "Closing worker
  gracefully ... Reason: worker-lifetime-reached" during the run, and no job log shows SLURM's
  time limit (also in the default suite, once, with shorter lifetimes).

Each gives the population of MulticoreEvalParallelSampler bit for bit; the slow suite repeats
each 10 times in a row. The models sleep only inside SLURM jobs (tests/slurm.py GaussModel),
so the reference runs in under a second.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client

import dabc
from determinism import assert_same, snapshot
from slurm import abc_run, cancel, job_state, reference, slurm_cluster, slurm_cluster_ready
from watch import plain_failures, stored_generations, when

__all__ = ["slurm_cluster_ready"]  # the fixture, imported for pytest

_SLURM_KILL = re.compile(r"CANCELLED AT (\S+) DUE TO TIME LIMIT")
_LIFETIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ - distributed\.worker - INFO - "
                       r"Closing worker gracefully: .* Reason: worker-lifetime-reached",
                       re.MULTILINE)


def job_logs(directory: Path) -> dict[str, str]:
    """Job id -> the text of its .out and .err files (dask-jobqueue names them
    ``<job name>-<job id>.out/.err``)."""
    logs: dict[str, str] = {}
    for path in sorted(directory.glob("*-*.*")):
        if path.suffix in (".out", ".err"):
            job_id = path.stem.rsplit("-", 1)[1]
            logs[job_id] = logs.get(job_id, "") + path.read_text(errors="replace")
    return logs


def _local(stamp: str, fmt: str) -> float:
    return datetime.strptime(stamp, fmt).timestamp()  # SLURM and Dask log local time


def run_on_two_adaptive_jobs(cluster, tmp_path, tmp_path_factory, *, n, gens, sleep,
                             fault=None):
    """Run ABC on the cluster with adapt() keeping two jobs; ``fault(db, state)`` may start
    a thread that breaks something. Checks the result against the reference; returns
    (history, start, end) with wall-clock times of the run."""
    ref = reference(tmp_path_factory, n=n, gens=gens)
    db = tmp_path / "run.db"
    state: dict = {}
    adaptive = cluster.adapt(minimum_jobs=2, maximum_jobs=2, interval="500ms")
    thread = None
    try:
        cluster.wait_for_workers(2, timeout=60)
        thread = fault(db, state) if fault else None
        with Client(cluster) as client:
            start = time.time()
            h = abc_run(dabc.DaskDistributedSampler(client), db, n=n, gens=gens, sleep=sleep)
            end = time.time()
    finally:
        state["stop"] = True
        if thread is not None:
            thread.join(10)
        adaptive.stop()
    assert_same(snapshot(h), ref)
    assert h.all_runs().status.tolist() == ["done"]
    return h, start, end, state


def _mid_generation(h, at: datetime) -> list[int]:
    pops = h.get_all_populations()
    t = np.datetime64(at, "us")
    return pops[(pops.started.values <= t) & (pops.finished.values >= t)].t.tolist()


# --- scancel ------------------------------------------------------------------------------
def scancel_case(tmp_path, tmp_path_factory):
    logs = tmp_path / "logs"

    def fault(db, state):
        def kill(_):
            state["job"] = sorted(cluster.job_ids().values())[0]
            cancel(job_id=state["job"])
        return when(lambda: stored_generations(db) >= 1, kill, state, delay=0.3, limit=300,
                poll=0.05)

    with slurm_cluster(logs) as cluster:
        h, start, end, state = run_on_two_adaptive_jobs(
            cluster, tmp_path, tmp_path_factory, n=100, gens=4, sleep=0.02, fault=fault)
        assert "at" in state, "no job was cancelled; the test is void"
        assert _mid_generation(h, state["at"]), "cancelled between generations, not in one"
        assert job_state(state["job"]) in ("CANCELLED", None)
    return end - start


@pytest.mark.timeout(150)
@plain_failures
def test_scancel_one_worker_job_mid_generation(slurm_cluster_ready, tmp_path,
                                                tmp_path_factory):
    scancel_case(tmp_path, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("repetition", range(10))
@plain_failures
def test_scancel_repeated(repetition, slurm_cluster_ready, tmp_path, tmp_path_factory):
    scancel_case(tmp_path, tmp_path_factory)


# --- walltime -----------------------------------------------------------------------------
def walltime_case(tmp_path, tmp_path_factory):
    """1-minute jobs without a lifetime: SLURM kills them (60-90 s) mid-run; adapt()
    replaces them."""
    logs = tmp_path / "logs"
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}):
        with slurm_cluster(logs, walltime="1", walltime_margin=None) as cluster:
            assert cluster.worker_lifetime is None
            assert "--lifetime" not in cluster.job_script()
            h, start, end, _ = run_on_two_adaptive_jobs(
                cluster, tmp_path, tmp_path_factory, n=200, gens=6, sleep=0.04)
    kills = {j: _local(m.group(1), "%Y-%m-%dT%H:%M:%S")
             for j, text in job_logs(logs).items() if (m := _SLURM_KILL.search(text))}
    assert kills, f"no job reached its walltime during the run ({end - start:.0f} s); void"
    during = [j for j, at in kills.items() if start <= at <= end]
    assert during, (kills, start, end)
    return end - start


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("repetition", range(10))
@plain_failures
def test_walltime_kill_repeated(repetition, slurm_cluster_ready, tmp_path, tmp_path_factory):
    walltime_case(tmp_path, tmp_path_factory)


# --- lifetime -----------------------------------------------------------------------------
def lifetime_case(tmp_path, tmp_path_factory, n=100, gens=6, sleep=0.03, margin=90,
                  lifetime=(22.5, 7.5)):
    """2-minute jobs, margin 90 s: workers retire 15-30 s after they start, long before
    SLURM's limit; their tasks move to the other worker and adapt() replaces the job."""
    logs = tmp_path / "logs"
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}):
        with slurm_cluster(logs, walltime="2", walltime_margin=margin) as cluster:
            assert cluster.worker_lifetime == lifetime
            h, start, end, _ = run_on_two_adaptive_jobs(
                cluster, tmp_path, tmp_path_factory, n=n, gens=gens, sleep=sleep)
    texts = job_logs(logs)
    assert not [j for j, t in texts.items() if _SLURM_KILL.search(t)], \
        "SLURM's time limit killed a job that should have retired first"
    retired = {j: _local(m.group(1), "%Y-%m-%d %H:%M:%S")
               for j, t in texts.items() if (m := _LIFETIME.search(t))}
    during = [j for j, at in retired.items() if start <= at <= end]
    assert during, (f"no worker retired by lifetime during the run ({end - start:.0f} s)",
                    retired, start, end)
    return end - start


@pytest.mark.slow  # 33-49 s: the default suite must stay well under 15 min
@pytest.mark.timeout(120)
@plain_failures
def test_worker_retires_by_lifetime(slurm_cluster_ready, tmp_path, tmp_path_factory):
    """The quick version for the default suite: margin 105 s, workers retire 7.5-15 s in."""
    lifetime_case(tmp_path, tmp_path_factory, n=100, gens=5, sleep=0.02, margin=105,
                  lifetime=(11.25, 3.75))


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("repetition", range(10))
@plain_failures
def test_lifetime_retirement_repeated(repetition, slurm_cluster_ready, tmp_path,
                                      tmp_path_factory):
    lifetime_case(tmp_path, tmp_path_factory)
