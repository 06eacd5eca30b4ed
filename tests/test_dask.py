"""DaskDistributedSampler on a real ``distributed.LocalCluster`` (worker processes, no mocks).

One cluster, listening on 127.0.0.1 only, serves the whole module and is scaled to what each
test needs (starting a worker process costs seconds on a two-core machine). This module is
pickled *by value* (cloudpickle), so its models reach worker processes and client
subprocesses whatever their ``sys.path``.

Checked: the DYN determinism contract against the multicore sampler (1, 2, 3 workers,
automatic and fixed task sizes, a vectorized model); that the work is scattered once per
generation, reaches tasks as a future and is unpickled once per worker and generation; task
sizing; model errors raised on workers; two analyses from two client processes sharing the
cluster; a client that is not the default one; SIGKILLed workers (one of two, the only one,
the only holder of the work); a cluster without workers, an adaptive one, and one whose
workers all leave mid-run.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream
from distributed.diagnostics.plugin import SchedulerPlugin

import dabc
from determinism import assert_same, snapshot
from watch import plain_failures, stored_generations, when

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEED = 7_345_112
N = 200          # population size of the equivalence runs
GENS = 3
OBS = {"y": 1.0}
PRIOR_X = dabc.Prior(x=dabc.RV("norm", 0, 1))
_MAIN_PID = os.getpid()


# --- models -----------------------------------------------------------------------------
def sleepy(p, rng):
    """0-4 ms random sleeps (mean 1 ms), so that tasks finish out of order."""
    time.sleep(0.004 * rng.random() ** 3)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


@dabc.vectorized(block_size=16)
def sleepy_vec(p, rng):
    """Vectorized: one call per block of 16 ids, with a random sleep per block."""
    time.sleep(0.01 * rng.random())
    x = p["x"]
    return {"y": x + 0.3 * rng.standard_normal(len(x))}


def slow5(p, rng):
    """5 ms per simulation: a generation lasts about a second on two workers."""
    time.sleep(0.005)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def always_fails(p, rng):
    raise ValueError(f"simulator exploded in pid {os.getpid()} at x={p['x']:.3f} (sentinel 5c2e)")


def _unpickling_key() -> str:
    """The cache key ``load_work`` is unpickling for (the generation's token), or '?'."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "load_work" and "key" in frame.f_locals:
            key = frame.f_locals["key"]
            return key.decode() if isinstance(key, bytes) else repr(key)
        frame = frame.f_back
    return "?"


class CountingModel:
    """A fast ``gauss`` that logs, per process, every time it is unpickled, and by which
    ``load_work`` call (its key is the generation's token; '?' if unpickled elsewhere).

    The model is part of the generation's work, so one line is one unpickling of the work.
    """

    def __init__(self, log_dir):
        self.log_dir = str(log_dir)

    def __getstate__(self):
        return {"log_dir": self.log_dir}

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(os.path.join(self.log_dir, f"{os.getpid()}.log"), "a") as f:
            f.write(_unpickling_key() + "\n")

    def __call__(self, p, rng):
        return {"y": p["x"] + 0.3 * rng.standard_normal()}


# --- runs and comparisons ---------------------------------------------------------------
def run(model, sampler, db: Path, *, n=N, gens=GENS, seed=SEED, **kwargs) -> dabc.History:
    abc = dabc.ABCSMC(model, PRIOR_X, population_size=n, sampler=sampler, seed=seed,
                      progress=False, **kwargs)
    return abc.run(OBS, db=f"sqlite:///{db}", max_generations=gens)






_REFERENCES: dict[tuple, dict] = {}


def reference(tmp_path_factory, model, *, n=N, gens=GENS, seed=SEED) -> dict:
    """The run on ``MulticoreEvalParallelSampler(2)`` (cached): the expected result."""
    key = (model.__name__, n, gens, seed)
    if key not in _REFERENCES:
        db = tmp_path_factory.mktemp("ref") / "ref.db"
        snap = snapshot(run(model, dabc.MulticoreEvalParallelSampler(2), db, n=n, gens=gens,
                            seed=seed))
        assert len(snap["t"]) == gens
        assert all(len(g[0]["id"]) == n for g in snap["arrays"])
        assert np.all(np.diff(snap["epsilon"]) < 0), snap["epsilon"]
        _REFERENCES[key] = snap
    return _REFERENCES[key]


def task_ranges(stream: list[dict]) -> list[tuple[str, int, int, int, str]]:
    """(token, t, start, stop, worker) of the dabc tasks in a task stream.

    The sampler names a task ``dabc-<uuid hex>-<t>-<start>-<stop>``; the generation's token
    is ``<uuid hex>:<t>``.
    """
    out = []
    for rec in stream:
        key = rec["key"]
        if isinstance(key, str) and key.startswith("dabc-"):
            _, hexid, t, start, stop = key.split("-")[:5]
            out.append((f"{hexid}:{t}", int(t), int(start), int(stop), rec["worker"]))
    return out


# --- the cluster ---------------------------------------------------------------------------
def _wait_workers(client: Client, n: int, timeout: float = 90, gone=(), cluster=None,
                  settle: float = 0.3) -> dict:
    """Wait until exactly ``n`` workers (none of the addresses in ``gone``) have been
    registered for ``settle`` seconds (and, given the cluster, it holds n nannies); their PIDs.
    """
    deadline = time.monotonic() + timeout
    seen, since = None, time.monotonic()
    while True:
        workers = set(client.nthreads())
        ok = len(workers) == n and not set(gone) & workers
        if cluster is not None:
            ok = ok and len(cluster.workers) == n
        if not ok or workers != seen:
            seen, since = workers, time.monotonic()
        elif time.monotonic() - since >= settle:
            pids = client.run(os.getpid) if n else {}
            if set(pids) == workers:
                return pids
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster has workers {workers}, expected {n}")
        time.sleep(0.05)


class Cluster:
    """One LocalCluster for the module, scaled to what each test needs.

    Starting a worker process costs seconds of CPU on this two-core machine, so the tests
    are ordered to mostly scale *down* (3, 2, 1, 0 workers); each still asks for its size.
    """

    def __init__(self, n_workers: int):
        # dashboard_address=None: no dashboard. The scheduler still serves its small HTTP
        # API (health, metrics); "127.0.0.1:0" keeps it on loopback and off port 8787.
        self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None,
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        self.client = Client(self.cluster)
        self.address = self.cluster.scheduler_address
        assert self.address.startswith("tcp://127.0.0.1:")

    def use(self, n: int) -> dict:
        """Scale to n single-threaded worker processes and wait for them; their PIDs."""
        self.cluster.scale(n)
        return _wait_workers(self.client, n, cluster=self.cluster)

    def close(self):
        self.client.close()
        self.cluster.close()


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The multicore references, computed before the cluster starts: the multicore sampler
    forks this process, better done before distributed starts its threads here."""
    for model in (sleepy, sleepy_vec):
        reference(tmp_path_factory, model)
    reference(tmp_path_factory, slow5, n=LOSS_N, gens=LOSS_GENS)


@pytest.fixture(scope="module")
def dask_cluster(references):
    # A LocalCluster hard-closes the nanny of a worker that left the scheduler if, 15 s
    # (lost-worker-timeout) later, no worker *of that name* is registered. The timer is not
    # cancelled when the nanny restarts the worker, so killing a same-named worker again
    # ~15 s later closed its nanny during the restart: the cluster lost a worker for good.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        cluster = Cluster(3)
        yield cluster
        cluster.close()


# Tests run in file order; it follows the cluster's size: 3 and 2 workers, then 1, then 0.

# --- 1. equivalence with the multicore sampler -----------------------------------------------
def _check_equivalence(dask_cluster, model, n_workers, batch_size, tmp_path, tmp_path_factory):
    ref = reference(tmp_path_factory, model)
    dask_cluster.use(n_workers)
    client = dask_cluster.client
    with get_task_stream(client) as stream:
        h = run(model, dabc.DaskDistributedSampler(client, batch_size=batch_size),
                tmp_path / "dask.db")
    assert_same(snapshot(h), ref)
    assert h.all_runs().status.tolist() == ["done"]
    ranges = task_ranges(stream.data)
    assert {t for _, t, *_ in ranges} == set(range(GENS))
    sizes = np.array([stop - start for _, _, start, stop, _ in ranges])
    block = 16 if model is sleepy_vec else 1
    assert np.all(sizes % block == 0), "tasks must cover whole blocks of a vectorized model"
    if batch_size != "auto":
        expected = -(-batch_size // block) * block
        assert set(sizes.tolist()) == {expected}, collections.Counter(sizes.tolist())
    # every evaluation counted in a generation was run by a (completed) dabc task
    evaluated = h.get_all_populations().n_evaluated.to_numpy()
    for t in range(GENS):
        ran = sum(stop - start for _, g, start, stop, _ in ranges if g == t)
        assert ran >= evaluated[t], (t, ran, evaluated[t])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("model_name", "n_workers", "batch_size"), [
    pytest.param("sleepy", 3, "auto", id="sleepy-3workers"),
    pytest.param("sleepy_vec", 3, 5, id="vectorized-3workers-batch5"),
    pytest.param("sleepy", 2, "auto", id="sleepy-2workers"),
    pytest.param("sleepy", 2, 5, id="sleepy-2workers-batch5"),
    pytest.param("sleepy_vec", 2, "auto", id="vectorized-2workers"),
])
@plain_failures
def test_same_population_as_multicore(model_name, n_workers, batch_size, dask_cluster,
                                      tmp_path, tmp_path_factory):
    _check_equivalence(dask_cluster, globals()[model_name], n_workers, batch_size, tmp_path,
                       tmp_path_factory)


@pytest.mark.timeout(120)
@plain_failures
def test_client_not_set_as_default(dask_cluster, tmp_path, tmp_path_factory):
    """The sampler must use the client it was given, not ``distributed.default_client()``:
    in a process whose only client was made with ``set_as_default=False``."""
    ref = reference(tmp_path_factory, sleepy)
    dask_cluster.use(2)
    db = tmp_path / "d.db"
    _wait_clients([_start_client(dask_cluster.address, SEED, db, default=False)])
    assert_same(snapshot(dabc.History(f"sqlite:///{db}")), ref)


def _set_env(name: str, value: str | None) -> None:
    """Set (or with None, clear) the environment variable ``name`` in this process; run on
    chosen workers to make test models behave differently there."""
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
def test_stuck_worker_does_not_hold_up_generations(dask_cluster, tmp_path, tmp_path_factory):
    """One of two workers hangs in every simulation (a wedged node): the tasks it holds
    below a generation's cutoff are run again elsewhere (backup copies; tasks are pure), so
    every generation ends, with the identical result. Without backups this run never ends."""
    ref = reference(tmp_path_factory, sleepy)
    pids = dask_cluster.use(2)
    client = dask_cluster.client
    stuck = sorted(pids)[0]
    client.run(_set_env, "DABC_TEST_STUCK", "1", workers=[stuck])
    try:
        with get_task_stream(client) as stream:
            h = run(stuck_where_flagged, dabc.DaskDistributedSampler(client),
                    tmp_path / "s.db")
    finally:
        client.run(_set_env, "DABC_TEST_STUCK", None)
    assert_same(snapshot(h), ref)
    keys = [str(r["key"]) for r in stream.data]
    assert any(k.endswith("-backup") for k in keys), "no backup copy ever ran"
    assert not any(r["worker"] == stuck for r in stream.data
                   if str(r["key"]).startswith("dabc-")), "the stuck worker finished a task"


def slow_where_flagged(p, rng):
    """Instant, but 0.25 s per simulation (each logged) where DABC_TEST_SLOW is set."""
    log = os.environ.get("DABC_TEST_SLOW")
    if log:
        with open(log, "a") as f:
            f.write("evaluation\n")
        time.sleep(0.25)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def _lines(path: str) -> int:
    return len(Path(path).read_text().splitlines()) if Path(path).exists() else 0


@pytest.mark.timeout(120)
@plain_failures
def test_cancelled_task_stops_early_and_frees_its_worker(dask_cluster, tmp_path):
    """A worker cannot interrupt a running task, so a task cancelled because it can no
    longer contribute used to run to its last evaluation, holding its worker. Now it stops
    at the next evaluation. One of two workers is slow (0.25 s per simulation): whichever
    20-id task it holds is cancelled once the fast worker has decided the generation, and
    the probe task sent to it afterwards runs only when that task has ended."""
    pids = dask_cluster.use(2)
    client = dask_cluster.client
    slow = sorted(pids)[0]
    log = str(tmp_path / "slow.log")
    client.run(_set_env, "DABC_TEST_SLOW", log, workers=[slow])
    try:
        h = run(slow_where_flagged, dabc.DaskDistributedSampler(client, batch_size=20),
                tmp_path / "c.db", n=5, gens=1)
        evaluated = client.submit(_lines, log, workers=[slow], pure=False).result(timeout=60)
    finally:
        client.run(_set_env, "DABC_TEST_SLOW", None)
    assert h.n_populations == 1
    assert evaluated >= 1, "the slow worker never ran a simulation; the test is void"
    assert evaluated < 10, (f"the cancelled task went on for {evaluated} of its 20 "
                            "simulations")


# --- 2. the work: scattered once per generation, passed as a future, unpickled once ---------
class DependencyRecorder(SchedulerPlugin):
    """On the scheduler: for each dabc task sent to a worker, what it depends on."""

    name = "dabc-test-dependencies"

    def __init__(self):
        self.records = []

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        if finish != "processing" or not str(key).startswith("dabc-"):
            return
        ts = self.scheduler.tasks.get(key)
        if ts is None:
            return
        deps = [(d.key, d.run_spec is None, len(d.who_has or ()), d.nbytes)
                for d in ts.dependencies]
        self.records.append((key, deps, len(cloudpickle.dumps(ts.run_spec))))


def _worker_cache_keys():
    from dabc.samplers import worker

    return [k.decode() if isinstance(k, bytes) else repr(k) for k in worker._WORK_CACHE]


@pytest.mark.timeout(120)
@plain_failures
def test_work_is_scattered_once_and_unpickled_once_per_worker_and_generation(
        dask_cluster, tmp_path):
    n_workers, gens = 2, 4
    pids = dask_cluster.use(n_workers)
    client = dask_cluster.client
    logs = tmp_path / "logs"
    logs.mkdir()
    client.register_plugin(DependencyRecorder())
    try:
        with get_task_stream(client) as stream:
            h = run(CountingModel(logs), dabc.DaskDistributedSampler(client),
                    tmp_path / "c.db", gens=gens)
        records = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins[DependencyRecorder.name].records)
    finally:
        client.unregister_scheduler_plugin(DependencyRecorder.name)
    assert h.n_populations == gens
    assert _wait_workers(client, n_workers) == pids, "no worker may have restarted"
    ranges = task_ranges(stream.data)
    tokens = sorted({tok for tok, *_ in ranges}, key=lambda tok: int(tok.split(":")[1]))
    assert [int(tok.split(":")[1]) for tok in tokens] == list(range(gens))

    # Scheduler side: every task depends on exactly one key, data scattered (no task
    # computes it), one such key per generation, sent to every worker (broadcast; the
    # Active Memory Manager may drop copies later, so: on every worker at some point);
    # the task itself is small.
    assert records
    work_key_of_gen: dict[str, set] = collections.defaultdict(set)
    replicas_of_gen: dict[str, int] = collections.defaultdict(int)
    for key, deps, spec_bytes in records:
        assert len(deps) == 1, (key, deps)
        dep_key, scattered, replicas, nbytes = deps[0]
        assert scattered, f"{key}: the work must be scattered data, not a task"
        assert spec_bytes < 2048 and spec_bytes * 4 < nbytes, (key, spec_bytes, nbytes)
        hexid, t = key.split("-")[1:3]
        work_key_of_gen[f"{hexid}:{t}"].add(dep_key)
        replicas_of_gen[f"{hexid}:{t}"] = max(replicas_of_gen[f"{hexid}:{t}"], replicas)
    assert sorted(work_key_of_gen) == sorted(tokens)
    assert all(len(keys) == 1 for keys in work_key_of_gen.values()), work_key_of_gen
    assert len(set().union(*work_key_of_gen.values())) == gens
    assert set(replicas_of_gen.values()) == {n_workers}, replicas_of_gen

    # Worker side: the work was unpickled by load_work, at most once per process and
    # generation, and in every process for every generation in which it ran a task.
    unpickled = {int(f.stem): f.read_text().split() for f in logs.iterdir()}
    assert _MAIN_PID not in unpickled, "the client process must not unpickle the work"
    assert set(unpickled) <= set(pids.values()), (unpickled, pids)
    ran_in = collections.defaultdict(set)
    for tok, _, _, _, worker in ranges:
        ran_in[pids[worker]].add(tok)
    for pid, keys in unpickled.items():
        assert "?" not in keys, f"worker {pid} unpickled the work outside load_work"
        counts = collections.Counter(keys)
        assert max(counts.values()) == 1, f"worker {pid} unpickled a generation twice: {counts}"
        assert set(counts) <= set(tokens)
        assert ran_in[pid] <= set(counts), (pid, ran_in[pid], counts)
    assert set().union(*map(set, unpickled.values())) == set(tokens)
    # after the run each worker caches one generation's work at most: keyed by its token
    for address, keys in client.run(_worker_cache_keys).items():
        assert len(keys) <= 1 and set(keys) <= set(tokens), (address, keys)

    # Task sizing for a fast model: after the first generation measured the model, a task
    # holds many ids (the default target is ~0.3 s of work per task).
    evaluated = h.get_all_populations().n_evaluated.to_numpy()
    for t in range(1, gens):
        sizes = [stop - start for _, g, start, stop, _ in ranges if g == t]
        assert max(sizes) >= 10, (t, sizes)
        assert len(sizes) * 4 <= evaluated[t], (t, sizes, evaluated[t])

    # nothing of the run is left on the cluster: futures released, the work cancelled
    deadline = time.monotonic() + 10
    while leftover := client.run_on_scheduler(
            lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]):
        assert time.monotonic() < deadline, f"keys left on the scheduler: {leftover}"
        time.sleep(0.1)


# --- 3. model errors raised on a worker ---------------------------------------------------------
@pytest.mark.timeout(60)
@plain_failures
def test_model_raising_on_a_worker_is_a_model_error(dask_cluster, tmp_path):
    pids = dask_cluster.use(2)
    with pytest.raises(dabc.ModelError) as info:
        run(always_fails, dabc.DaskDistributedSampler(dask_cluster.client), tmp_path / "f.db")
    msg = str(info.value)
    assert "'always_fails'" in msg
    assert "max_failure_rate" in msg
    assert "Traceback (most recent call last)" in msg
    found = re.search(r"ValueError: simulator exploded in pid (\d+) at x=\S+ \(sentinel 5c2e\)",
                      msg)
    assert found, msg
    assert int(found.group(1)) in pids.values(), "the model must have raised on a worker"
    h = dabc.History(f"sqlite:///{tmp_path / 'f.db'}")
    assert h.n_populations == 0
    assert h.all_runs().status.tolist() == ["failed"]


# --- 4. two analyses from two client processes on one cluster ---------------------------------
def _client_main(address: str, seed: int, db: str, barrier: str | None, default: bool) -> None:
    """Entry point of a client subprocess: wait for the other clients (if any), then run."""
    with Client(address, set_as_default=default) as client:
        if barrier is not None:
            Path(barrier, f"{seed}.ready").touch()
            deadline = time.monotonic() + 60
            while len(list(Path(barrier).glob("*.ready"))) < 2:
                if time.monotonic() > deadline:
                    raise TimeoutError("the other client never connected")
                time.sleep(0.02)
        run(sleepy, dabc.DaskDistributedSampler(client), Path(db), seed=seed)


def _start_client(address: str, seed: int, db: Path, barrier: Path | None = None,
                  default: bool = True) -> subprocess.Popen:
    """A Python process running ``_client_main``, importing this module by its name."""
    depth = len(__name__.split("."))
    root = Path(__file__).resolve().parents[depth - 1]  # where ``import <__name__>`` works
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    code = (f"import {__name__} as m; m._client_main({address!r}, {seed}, {str(db)!r}, "
            f"{None if barrier is None else str(barrier)!r}, {default})")
    with open(db.with_suffix(".log"), "w") as log:  # a file: a pipe could fill up
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=db.parent,
                                stdout=log, stderr=subprocess.STDOUT)
    proc.log = db.with_suffix(".log")
    return proc


def _wait_clients(procs: list[subprocess.Popen], timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
            assert proc.returncode == 0, \
                f"client process failed:\n{proc.log.read_text()[-5000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.timeout(180)
@plain_failures
def test_two_client_processes_share_a_cluster(dask_cluster, tmp_path):
    seeds = (SEED + 1, SEED + 2)
    refs = {}
    for seed in seeds:  # single-core references
        refs[seed] = snapshot(run(sleepy, dabc.SingleCoreSampler(), tmp_path / f"r{seed}.db",
                                  seed=seed))
    dask_cluster.use(2)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    _wait_clients([_start_client(dask_cluster.address, seed, tmp_path / f"{seed}.db", barrier)
                   for seed in seeds])
    spans = []
    for seed in seeds:
        h = dabc.History(f"sqlite:///{tmp_path / f'{seed}.db'}")
        assert_same(snapshot(h), refs[seed])
        pops = h.get_all_populations()
        spans.append((pops.started.min(), pops.finished.max()))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, f"the two analyses did not run at the same time: {spans}"


# --- 5. a worker process SIGKILLed mid-generation -------------------------------------------
LOSS_N, LOSS_GENS = 100, 4


def _work_holders(dask_scheduler) -> dict:
    """On the scheduler: the workers holding each scattered work (keys ``bytes-...``)."""
    return {str(k): sorted(ws.address for ws in ts.who_has or ())
            for k, ts in dask_scheduler.tasks.items() if str(k).startswith("bytes-")}


def _kill_worker_mid_generation(dask_cluster, n_workers, tmp_path, tmp_path_factory,
                                sole_holder=False, **sampler_args):
    """Run slow5 and SIGKILL a worker mid-run; the result must be the undisturbed one.

    By default the victim is killed 0.2 s into generation 2. With ``sole_holder``, it is
    the worker holding the only copy of the work, once there is only one.
    """
    ref = reference(tmp_path_factory, slow5, n=LOSS_N, gens=LOSS_GENS)
    pids = dask_cluster.use(n_workers)
    assert _MAIN_PID not in pids.values() and os.getpid() not in pids.values()
    client = dask_cluster.client
    db = tmp_path / "killed.db"
    state: dict = {}

    def kill(address):
        state["victim"] = address
        os.kill(pids[address], signal.SIGKILL)

    if sole_holder:
        def ready():  # the current generation's work, on one worker only
            holders = list(client.run_on_scheduler(_work_holders).values())
            if len(holders) == 1 and len(holders[0]) == 1 and stored_generations(db) >= 1:
                return holders[0][0]
            return None
        killer = when(ready, kill, state, delay=0.0)
    else:  # generations 0 and 1 stored: kill in generation 2 (which lasts ~0.6 s or more)
        killer = when(lambda: stored_generations(db) >= 2 and min(pids), kill, state, delay=0.2)
    try:
        h = run(slow5, dabc.DaskDistributedSampler(client, **sampler_args), db, n=LOSS_N,
                gens=LOSS_GENS)
    finally:
        state["stop"] = True
        killer.join(10)
    assert "at" in state, "the worker was never killed; the test is void"
    pops = h.get_all_populations()
    during = pops[(pops.started <= state["at"]) & (pops.finished >= state["at"])].t.tolist()
    if sole_holder:  # mid-generation, or (rarely) just as the next work is scattered
        assert pops.started.min() <= state["at"] <= pops.finished.max(), state["at"]
    else:
        assert during == [2], (state["at"], pops[["t", "started", "finished"]])
    assert_same(snapshot(h), ref)
    assert h.all_runs().status.tolist() == ["done"]
    # the nanny restarted the worker: as many workers as before, with a new process
    new_pids = _wait_workers(client, n_workers, timeout=60, gone=[state["victim"]])
    assert pids[state["victim"]] not in new_pids.values()


@pytest.mark.timeout(120)
@plain_failures
def test_killed_worker_changes_nothing(dask_cluster, tmp_path, tmp_path_factory):
    """Two workers: the scattered work survives on the other; its tasks are recomputed."""
    _kill_worker_mid_generation(dask_cluster, 2, tmp_path, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("repetition", range(10))
@plain_failures
def test_killed_worker_changes_nothing_repeated(repetition, dask_cluster, tmp_path,
                                               tmp_path_factory):
    _kill_worker_mid_generation(dask_cluster, 2, tmp_path, tmp_path_factory)


@pytest.mark.timeout(120)
@plain_failures
def test_killed_sole_holder_of_the_work_changes_nothing(dask_cluster, tmp_path,
                                                       tmp_path_factory):
    """Broadcast copies of the work do not stay: distributed's Active Memory Manager (every
    2 s) drops replicas no waiting task needs. With one task in flight (client_max_jobs=1)
    one of the two workers soon holds the only copy; it is killed. The sampler must scatter
    the work again and finish with the same result."""
    _kill_worker_mid_generation(dask_cluster, 2, tmp_path, tmp_path_factory, sole_holder=True,
                                client_max_jobs=1)


# --- one worker --------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@plain_failures
def test_same_population_as_multicore_one_worker(dask_cluster, tmp_path, tmp_path_factory):
    _check_equivalence(dask_cluster, sleepy, 1, "auto", tmp_path, tmp_path_factory)


@pytest.mark.timeout(120)
@plain_failures
def test_killed_only_worker_changes_nothing(dask_cluster, tmp_path, tmp_path_factory):
    """One worker: the scattered work is lost with it; once the nanny has restarted the
    worker, the sampler must scatter the work again and finish with the same result."""
    _kill_worker_mid_generation(dask_cluster, 1, tmp_path, tmp_path_factory)


# --- 6. no workers; adaptive clusters ---------------------------------------------------------
@pytest.mark.timeout(60)
@plain_failures
def test_no_workers_is_a_worker_error(dask_cluster, tmp_path):
    dask_cluster.use(0)
    t0 = time.monotonic()
    with pytest.raises(dabc.WorkerError, match="no live workers"):
        run(sleepy, dabc.DaskDistributedSampler(dask_cluster.client, no_worker_timeout=2),
            tmp_path / "n.db")
    elapsed = time.monotonic() - t0
    assert 2 <= elapsed < 15, elapsed
    h = dabc.History(f"sqlite:///{tmp_path / 'n.db'}")
    assert h.n_populations == 0
    assert h.all_runs().status.tolist() == ["failed"]


@pytest.mark.timeout(120)
@plain_failures
def test_adaptive_cluster(dask_cluster, tmp_path, tmp_path_factory):
    """From zero workers, the sampler waits for adapt() to start some and follows them."""
    ref = reference(tmp_path_factory, sleepy)
    dask_cluster.use(0)
    adaptive = dask_cluster.cluster.adapt(minimum=1, maximum=2)
    try:
        h = run(sleepy, dabc.DaskDistributedSampler(dask_cluster.client), tmp_path / "a.db")
    finally:
        adaptive.stop()
    assert_same(snapshot(h), ref)


@pytest.mark.timeout(90)
@plain_failures
def test_all_workers_gone_mid_run_is_a_worker_error(dask_cluster, tmp_path):
    """Workers retired mid-generation (and their scattered work with them): after
    ``no_worker_timeout`` the run fails with "no live workers"; no hang, no other error."""
    dask_cluster.use(1)
    db = tmp_path / "g.db"
    state: dict = {}
    watcher = when(lambda: stored_generations(db) >= 1,
                   lambda _: dask_cluster.cluster.scale(0), state, delay=0.1)
    try:
        with pytest.raises(dabc.WorkerError, match="no live workers"):
            run(slow5, dabc.DaskDistributedSampler(dask_cluster.client, no_worker_timeout=3),
                db, n=LOSS_N, gens=LOSS_GENS)
    finally:
        state["stop"] = True
        watcher.join(10)
    assert "at" in state, "the cluster was never scaled down; the test is void"
    h = dabc.History(f"sqlite:///{db}")
    assert h.n_populations >= 1
    assert h.all_runs().status.tolist() == ["failed"]


# --- 7. the sampler's own cluster -------------------------------------------------------------
class _RecordingSampler(dabc.DaskDistributedSampler):
    def sample(self, request):
        self.seen = self._client().run(dask.config.get, "distributed.worker.profile.enabled")
        self.cluster_seen = self._cluster
        return super().sample(request)


@pytest.mark.timeout(120)
@plain_failures
def test_sampler_without_client_starts_and_closes_a_lean_local_cluster(tmp_path):
    sampler = _RecordingSampler()
    h = run(sleepy, sampler, tmp_path / "own.db", n=20, gens=2)
    assert h.n_populations == 2
    assert sampler.seen and set(sampler.seen.values()) == {False}  # Dask's profiler is off
    assert sampler.client is None and sampler.cluster_seen.status.name == "closed"
