"""DaskDistributedSampler(mode="pull") on a real ``distributed.LocalCluster`` (no mocks).

The pull mode runs one long-running puller task per worker thread that takes id ranges from
a ``distributed.Queue`` (:mod:`dabc.samplers.dask_pull`); the master re-issues the ranges of
a lost puller. Checked: the population equals the multicore sampler's for the same seed
(1, 2 and 3 workers, automatic and fixed task sizes, a vectorized model) and no Dask task
other than the pullers ran; a worker SIGKILLed by its PID, and one closed by the scheduler,
mid-generation change nothing (nothing lost, nothing counted twice: the simulation counts
are the undisturbed run's); a stuck worker's ranges get backup copies; a puller cancelled
at a generation's end stops at its next evaluation; the queues and tasks are gone after a
run; a master SIGKILLed while its pullers wait frees every worker thread within seconds;
model errors; no workers, and an adaptive cluster.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

import dabc
from determinism import assert_same, snapshot
from watch import plain_failures, stored_generations, when

# The pull mode is not the default and these tests take 0.5-4.5 min: slow suite
pytestmark = pytest.mark.slow

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEED = 7_345_113
N, GENS = 200, 3
LOSS_N, LOSS_GENS = 100, 4
OBS = {"y": 1.0}
PRIOR_X = dabc.Prior(x=dabc.RV("norm", 0, 1))


def sleepy(p, rng):
    """0-4 ms random sleeps, so that ranges finish out of order."""
    time.sleep(0.004 * rng.random() ** 3)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


@dabc.vectorized(block_size=16)
def sleepy_vec(p, rng):
    time.sleep(0.01 * rng.random())
    x = p["x"]
    return {"y": x + 0.3 * rng.standard_normal(len(x))}


def slow5(p, rng):
    """5 ms per simulation: a generation lasts about a second on two workers."""
    time.sleep(0.005)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def always_fails(p, rng):
    raise ValueError(f"simulator exploded in pid {os.getpid()} (sentinel 81fa)")


def run(model, sampler, db: Path, *, n=N, gens=GENS, seed=SEED) -> dabc.History:
    abc = dabc.ABCSMC(model, PRIOR_X, population_size=n, sampler=sampler, seed=seed,
                      progress=False)
    return abc.run(OBS, db=f"sqlite:///{db}", max_generations=gens)


def pull(client, **kwargs) -> dabc.DaskDistributedSampler:
    return dabc.DaskDistributedSampler(client, mode="pull", **kwargs)


_REFS: dict = {}


def reference(tmp_path_factory, model, n=N, gens=GENS) -> dict:
    key = (model.__name__, n, gens)
    if key not in _REFS:
        db = tmp_path_factory.mktemp("ref") / "ref.db"
        _REFS[key] = snapshot(run(model, dabc.MulticoreEvalParallelSampler(2), db, n=n,
                                  gens=gens))
        assert len(_REFS[key]["t"]) == gens
    return _REFS[key]


def _wait_workers(client, n: int, timeout: float = 90, gone=()) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        workers = set(client.nthreads())
        if len(workers) == n and not set(gone) & workers:
            pids = client.run(os.getpid) if n else {}
            if set(pids) == workers:
                return pids
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster has workers {workers}, expected {n}")
        time.sleep(0.05)


class Cluster:
    def __init__(self, n: int):
        self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None,
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        self.client = Client(self.cluster)

    def use(self, n: int) -> dict:
        self.cluster.scale(n)
        deadline = time.monotonic() + 90
        while len(self.cluster.workers) != n:
            assert time.monotonic() < deadline, "the cluster did not scale"
            time.sleep(0.05)
        return _wait_workers(self.client, n)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Multicore references first: the multicore sampler forks this process."""
    for model in (sleepy, sleepy_vec):
        reference(tmp_path_factory, model)
    reference(tmp_path_factory, slow5, LOSS_N, LOSS_GENS)


@pytest.fixture(scope="module")
def cluster(references):
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        c = Cluster(3)
        yield c
        c.client.close()
        c.cluster.close()


class StartedTasks(SchedulerPlugin):
    """On the scheduler: the key of every task sent to a worker."""

    name = "dabc-test-started-tasks"

    def __init__(self):
        self.keys: list[str] = []

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "processing":
            self.keys.append(str(key))


def _queues(dask_scheduler) -> list[str]:
    return sorted(dask_scheduler.extensions["queues"].queues)


def _keys(dask_scheduler) -> list[str]:
    return [str(k) for k in dask_scheduler.tasks]


def test_mode_is_checked():
    with pytest.raises(ValueError, match="mode must be 'push' or 'pull'"):
        dabc.DaskDistributedSampler(mode="fast")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("model_name", "n_workers", "batch_size"), [
    pytest.param("sleepy", 3, "auto", id="sleepy-3workers"),
    pytest.param("sleepy_vec", 3, 5, id="vectorized-3workers-batch5"),
    pytest.param("sleepy", 2, 5, id="sleepy-2workers-batch5"),
])
@plain_failures
def test_same_population_as_multicore(model_name, n_workers, batch_size, cluster, tmp_path,
                                      tmp_path_factory):
    model = globals()[model_name]
    ref = reference(tmp_path_factory, model)
    cluster.use(n_workers)
    client = cluster.client
    client.register_plugin(StartedTasks())
    try:
        h = run(model, pull(client, batch_size=batch_size), tmp_path / "p.db")
        keys = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins[StartedTasks.name].keys)
    finally:
        client.unregister_scheduler_plugin(StartedTasks.name)
    assert_same(snapshot(h), ref)
    assert h.all_runs().status.tolist() == ["done"]
    assert keys and all("-pull-" in k for k in keys), keys  # no task per range
    # one puller per thread and a spare, for the whole run: far fewer tasks than ranges
    assert len(keys) <= n_workers + 1, keys
    # nothing of the run is left on the scheduler: tasks released, queues closed
    deadline = time.monotonic() + 10
    while (left := client.run_on_scheduler(_keys) + client.run_on_scheduler(_queues)):
        assert time.monotonic() < deadline, f"left on the scheduler: {left}"
        time.sleep(0.1)


def _kill_mid_generation(cluster, n_workers, tmp_path, tmp_path_factory, how: str):
    """Run slow5 and, 0.2 s into generation 2, SIGKILL a worker by its PID (``"kill"``) or
    have the scheduler close it (``"close"``); the result must be the undisturbed one."""
    ref = reference(tmp_path_factory, slow5, LOSS_N, LOSS_GENS)
    pids = cluster.use(n_workers)
    assert os.getpid() not in pids.values()
    client = cluster.client
    db = tmp_path / "killed.db"
    state: dict = {}

    def act(address):
        state["victim"] = address
        if how == "kill":
            os.kill(pids[address], signal.SIGKILL)
        else:
            client.run_on_scheduler(_close_worker, address)

    killer = when(lambda: stored_generations(db) >= 2 and min(pids), act, state, delay=0.2)
    try:
        h = run(slow5, pull(client), db, n=LOSS_N, gens=LOSS_GENS)
    finally:
        state["stop"] = True
        killer.join(10)
    assert "at" in state, "the worker was never stopped; the test is void"
    pops = h.get_all_populations()
    during = pops[(pops.started <= state["at"]) & (pops.finished >= state["at"])].t.tolist()
    assert during == [2], (state["at"], pops[["t", "started", "finished"]])
    assert_same(snapshot(h), ref)  # same ids, same simulation counts: nothing lost or doubled
    assert h.all_runs().status.tolist() == ["done"]
    if how == "kill":  # the nanny restarts it
        _wait_workers(client, n_workers, timeout=60, gone=[state["victim"]])


async def _close_worker(address: str, dask_scheduler=None) -> None:
    await dask_scheduler.remove_worker(address, stimulus_id="dabc-test-close", close=True)


@pytest.mark.timeout(120)
@plain_failures
def test_killed_worker_changes_nothing(cluster, tmp_path, tmp_path_factory):
    _kill_mid_generation(cluster, 2, tmp_path, tmp_path_factory, "kill")


@pytest.mark.timeout(120)
@plain_failures
def test_worker_closed_by_the_scheduler_changes_nothing(cluster, tmp_path, tmp_path_factory):
    _kill_mid_generation(cluster, 3, tmp_path, tmp_path_factory, "close")


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def stuck_where_flagged(p, rng):
    """``sleepy``, but blocked for as long as its worker process has DABC_TEST_STUCK set."""
    while os.environ.get("DABC_TEST_STUCK"):
        time.sleep(0.02)
    return sleepy(p, rng)


@pytest.mark.timeout(120)
@plain_failures
def test_stuck_worker_does_not_hold_up_generations(cluster, tmp_path, tmp_path_factory):
    """One of two workers hangs in every simulation: the ranges it holds below the cutoff
    get backup copies elsewhere, so every generation ends with the identical result."""
    ref = reference(tmp_path_factory, sleepy)
    pids = cluster.use(2)
    client = cluster.client
    stuck = sorted(pids)[0]
    client.run(_set_env, "DABC_TEST_STUCK", "1", workers=[stuck])
    try:
        h = run(stuck_where_flagged, pull(client), tmp_path / "s.db")
    finally:
        client.run(_set_env, "DABC_TEST_STUCK", None)
    assert_same(snapshot(h), ref)


def slow_where_flagged(p, rng):
    """0.05 s per simulation, but 0.25 s (each logged) where DABC_TEST_SLOW is set."""
    log = os.environ.get("DABC_TEST_SLOW")
    if log:
        with open(log, "a") as f:
            f.write("evaluation\n")
    time.sleep(0.25 if log else 0.05)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def _lines(path: str) -> int:
    return len(Path(path).read_text().splitlines()) if Path(path).exists() else 0


@pytest.mark.timeout(120)
@plain_failures
def test_cancelled_puller_stops_early(cluster, tmp_path):
    """One of two workers is slow (0.25 s per simulation) and holds 20-id ranges: once the
    fast worker has decided the generation, the slow puller is cancelled and stops at its
    next evaluation: a probe task sent to that worker (it runs only once the puller has
    stopped) finds at most two more simulations begun than when the run ended. Whichever
    puller starts first, the slow one is mid-range then (the fast one's ranges last 1 s)."""
    pids = cluster.use(2)
    client = cluster.client
    slow = sorted(pids)[0]
    log = str(tmp_path / "slow.log")
    client.run(_set_env, "DABC_TEST_SLOW", log, workers=[slow])
    try:
        h = run(slow_where_flagged, pull(client, batch_size=20), tmp_path / "c.db", n=5,
                gens=1)
        at_end = _lines(log)  # simulations the slow worker had begun when the run ended
        evaluated = client.submit(_lines, log, workers=[slow], pure=False).result(timeout=60)
    finally:
        client.run(_set_env, "DABC_TEST_SLOW", None)
    assert h.n_populations == 1
    assert at_end >= 1, "the slow worker never ran a simulation; the test is void"
    assert at_end % 20, "the slow puller was between ranges at the end; the test is void"
    # without cancellation it would finish its 20-id range (and the next one it holds)
    assert evaluated - at_end <= 2, (at_end, evaluated)


@pytest.mark.timeout(60)
@plain_failures
def test_model_raising_on_a_worker_is_a_model_error(cluster, tmp_path):
    pids = cluster.use(2)
    with pytest.raises(dabc.ModelError, match=r"sentinel 81fa") as info:
        run(always_fails, pull(cluster.client), tmp_path / "f.db")
    found = re.search(r"ValueError: simulator exploded in pid (\d+) \(sentinel 81fa\)",
                      str(info.value))
    assert found, str(info.value)
    assert int(found.group(1)) in pids.values(), "the model must have raised on a worker"


@pytest.mark.timeout(120)
@plain_failures
def test_same_population_one_worker(cluster, tmp_path, tmp_path_factory):
    ref = reference(tmp_path_factory, sleepy)
    cluster.use(1)
    assert_same(snapshot(run(sleepy, pull(cluster.client), tmp_path / "o.db")), ref)


@pytest.mark.timeout(60)
@plain_failures
def test_no_workers_is_a_worker_error(cluster, tmp_path):
    cluster.use(0)
    with pytest.raises(dabc.WorkerError, match="no live workers"):
        run(sleepy, pull(cluster.client, no_worker_timeout=2), tmp_path / "n.db")


@pytest.mark.timeout(120)
@plain_failures
def test_adaptive_cluster(cluster, tmp_path, tmp_path_factory):
    """From zero workers, the sampler waits for adapt() to start some and follows them."""
    ref = reference(tmp_path_factory, sleepy)
    cluster.use(0)
    adaptive = cluster.cluster.adapt(minimum=1, maximum=2)
    try:
        h = run(sleepy, pull(cluster.client), tmp_path / "a.db")
    finally:
        adaptive.stop()
    assert_same(snapshot(h), ref)
    assert np.all(h.get_all_populations().n_simulations.to_numpy() > 0)


_MASTER = """
import sys, time
import dabc
from dabc.storage import History
from distributed import Client

def slow(p, rng):
    time.sleep(0.005)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}

store = History.append_generation

def store_then_dawdle(self, t, *a, **k):  # the master busy between generations: idle pullers
    store(self, t, *a, **k)
    open(sys.argv[3], "w").close()
    time.sleep(600)

History.append_generation = store_then_dawdle
client = Client(sys.argv[1])
abc = dabc.ABCSMC(slow, dabc.Prior(x=dabc.RV("norm", 0, 1)), population_size=200,
                  sampler=dabc.DaskDistributedSampler(client, mode="pull"), progress=False)
abc.run({"y": 1.0}, db="sqlite:///" + sys.argv[2], max_generations=3)
"""


@pytest.mark.timeout(180)
@plain_failures
def test_a_dead_master_frees_the_workers_threads(cluster, tmp_path):
    """A master SIGKILLed while its pullers wait for the next generation (it is busy between
    generations): the scheduler drops its client, the pullers see their tasks cancelled at
    their next look and return, and every worker thread runs a new task again within
    seconds (a puller blocked in a queue get without end would hold its thread for good)."""
    import subprocess

    pids = cluster.use(2)
    client = cluster.client
    stored = tmp_path / "stored"
    master = subprocess.Popen([sys.executable, "-c", _MASTER, cluster.cluster.scheduler_address,
                               str(tmp_path / "m.db"), str(stored)])
    try:
        deadline = time.monotonic() + 60
        while not stored.exists():
            assert master.poll() is None, "the master ended before storing a generation"
            assert time.monotonic() < deadline, "the master stored no generation"
            time.sleep(0.05)
        time.sleep(1.0)  # the pullers are idle, waiting on their bells
        master.kill()
        master.wait(30)
        killed = time.monotonic()
        probes = [client.submit(os.getpid, pure=False, workers=[w]) for w in pids]
        got = client.gather(probes)
        freed = time.monotonic() - killed
    finally:
        if master.poll() is None:
            master.kill()
    assert sorted(got) == sorted(pids.values())
    assert freed < 20, freed
