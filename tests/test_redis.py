"""Redis samplers against a real, private redis-server and real worker subprocesses.

Every test gets its own ``redis-server`` (127.0.0.1, free port, password, no persistence)
and starts its workers through the CLI (``python -m dabc.cli.redis_cli redis-worker``), one
subprocess per worker with ``--processes 1`` unless stated, so a PID we started is the
worker we signal. The master (``ABCSMC.run``) runs in a thread of the test process, so the
test can watch the server and signal workers mid-generation. Every test ends with workers
exited and ``DBSIZE == 0``: nothing an analysis or a worker wrote may stay on the server.

Models are pickled *by value* (``cloudpickle.register_pickle_by_value``), so the worker
subprocesses never import this module. Each model draws the random number of its sleep in
every configuration, so how long it sleeps never changes a result: the references run the
same model with no sleep, on one core (DYN) or the builtin map (STAT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import cloudpickle
import numpy as np
import pytest

import dabc
from dabc.samplers import MappingSampler, SingleCoreSampler
from dabc.samplers.redis import manager
from determinism import assert_same, snapshot
from redis_server import CLI, RedisServer, Worker, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEED = 8061
N = 200
GENS = 3
OBS = {"y": 1.0}
PRIOR_X = dabc.Prior(x=dabc.RV("norm", 0, 1))
PRIOR_AB = dabc.Prior(a=dabc.RV("uniform", -2, 6), b=dabc.RV("norm", 0, 1))
STALL_ENV = "DABC_TEST_STALL_MARKER"  # see Sleepy
FACTOR_ENV = "DABC_TEST_SLEEP_FACTOR"
STALL_SECONDS = 120.0


# --- models -----------------------------------------------------------------------------
class Sleepy:
    """y = x + N(0, 0.3^2), after sleeping uniformly 0 to 2 * ``mean`` seconds.

    The sleep's uniform number is drawn whatever ``mean`` is, so ``Sleepy(0)`` gives exactly
    the results of ``Sleepy(0.005)``. In a process whose environment sets ``STALL_ENV`` to a
    file name, the model creates that file and sleeps ``STALL_SECONDS``: a worker stuck in a
    long task, and the file says that it is inside the model. ``FACTOR_ENV`` multiplies the
    sleep in a process (a slow machine).
    """

    def __init__(self, mean: float = 0.0):
        self.mean = mean

    def __repr__(self) -> str:  # the sleep does not change results: one reference for all
        return "Sleepy"

    def __call__(self, p, rng):
        u = rng.random()
        marker = os.environ.get(STALL_ENV)
        if marker:
            open(marker, "a").close()
            time.sleep(STALL_SECONDS)
        elif self.mean:
            time.sleep(2 * self.mean * u * float(os.environ.get(FACTOR_ENV, 1)))
        return {"y": p["x"] + 0.3 * rng.standard_normal()}


def affine(p, rng):
    """Competitor with two parameters (exercises model selection and parameter padding)."""
    time.sleep(0.001 * rng.random())
    return {"y": p["a"] + 0.5 * p["b"] + 0.3 * rng.standard_normal()}


def always_fails(p, rng):
    raise ValueError(f"simulator exploded at x={p['x']:.3f} (sentinel 5e2c)")


# --- running and comparing ----------------------------------------------------------------
def run_abc(models, priors, sampler, db, *, n=N, gens=GENS, seed=SEED, observed=None):
    abc = dabc.ABCSMC(models, priors, population_size=n, sampler=sampler, seed=seed,
                      progress=False)
    return abc.run(observed or OBS, db=f"sqlite:///{db}", max_generations=gens)






_REFS: dict = {}


def reference(kind: str, tmp_path_factory, models=None, priors=PRIOR_X, *, n=N, gens=GENS,
              seed=SEED, sampler=None) -> dict:
    """A cached reference snapshot: single core (DYN) or builtin map (STAT), no sleeping."""
    models = Sleepy(0.0) if models is None else models
    key = (kind, repr(models), n, gens, seed, None if sampler is None else type(sampler))
    if key not in _REFS:
        if sampler is None:
            sampler = SingleCoreSampler() if kind == "dyn" else MappingSampler(map)
        db = tmp_path_factory.mktemp("ref") / "ref.db"
        with sampler:
            snap = snapshot(run_abc(models, priors, sampler, db, n=n, gens=gens, seed=seed))
        assert len(snap["t"]) == gens
        for g in snap["arrays"]:
            assert sum(len(a["id"]) for a in g.values()) == n
        _REFS[key] = snap
    return _REFS[key]


class Background:
    """Run a function in a daemon thread; ``result()`` returns its value or re-raises.

    With ``record_warnings=True`` the warnings it emits are kept in ``caught`` (the warnings
    module's state is global: use it only when no other thread records warnings).
    """

    def __init__(self, fn, *args, record_warnings: bool = False, **kwargs):
        self.value = self.error = None
        self.caught: list = []

        def target():
            try:
                if record_warnings:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        try:
                            self.value = fn(*args, **kwargs)
                        finally:
                            self.caught = list(caught)
                else:
                    self.value = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the test thread by result()
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the run did not end within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


# --- fixtures and server helpers ----------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    s = RedisServer(tmp_path / "redis").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def workers(server, tmp_path):
    """``workers(k, processes=1, env=None)`` starts k worker subprocesses; all are reaped."""
    started: list[Worker] = []

    def start(k: int = 1, processes: int = 1, env: dict | None = None,
              args: tuple[str, ...] = ()) -> list[Worker]:
        new = [Worker(server, processes, env, log_dir=tmp_path, args=args) for _ in range(k)]
        started.extend(new)
        return new

    yield start
    for w in started:
        w.reap()


@pytest.fixture
def rc(server):
    """A client of the test's server, for watching it."""
    c = server.client()
    yield c
    c.close()


def sampler_for(server, kind: str = "dyn", **kwargs):
    cls = dabc.RedisEvalParallelSampler if kind == "dyn" else dabc.RedisStaticSampler
    kwargs.setdefault("secret_file", server.secret_file)
    return cls(host=server.host, port=server.port, password=server.password, **kwargs)


def wait_registered(server, count: int, timeout: float = 60) -> None:
    """Wait until ``count`` workers have registered (Python start-up takes seconds)."""
    wait_for(lambda: len(server.worker_ids()) >= count, timeout, 0.05,
             f"{count} registered workers")


def current_gen(rc, sampler) -> tuple[str, int] | None:
    """(generation key suffix, t) of the analysis' running generation, or None."""
    g = rc.get(f"{sampler.prefix}:gen")
    if g is None:
        return None
    g = g.decode()
    return g, int(g.rsplit("-", 1)[1])


def claims(rc, sampler, gen: str) -> dict[str, str]:
    """Claimed tasks of a generation: task -> worker id."""
    return {k.decode(): v.decode()
            for k, v in rc.hgetall(f"{sampler.prefix}:claims:{gen}").items()}


def wait_generation(rc, sampler, t: int, bg: Background, timeout: float = 60) -> str:
    """Wait until generation ``t`` (or a later one) of the analysis is running."""
    def running():
        if bg.done:
            bg.result(0)
            raise AssertionError(f"the run ended before generation {t} started")
        cur = current_gen(rc, sampler)
        return cur[0] if cur is not None and cur[1] >= t else None
    return wait_for(running, timeout, 0.005, f"generation {t}")


def kill_claim_holder(rc, sampler, candidates: list[Worker], t: int, bg: Background,
                      timeout: float = 60) -> tuple[Worker, str]:
    """SIGKILL one of ``candidates`` while it holds a claim of generation ``t``.

    The worker is first frozen with SIGSTOP and its claim read again, so the claim is known
    to be unfinished when it dies. Returns the worker and the claimed task.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gen = wait_generation(rc, sampler, t, bg, timeout)
        for task, wid in claims(rc, sampler, gen).items():
            w = next((w for w in candidates if f"-{w.pid}-" in wid), None)
            if w is None or not w.alive():
                continue
            os.kill(w.pid, signal.SIGSTOP)
            time.sleep(0.05)  # let a command it sent just before reach the server
            if claims(rc, sampler, gen).get(task) == wid:
                os.kill(w.pid, signal.SIGKILL)
                return w, task
            os.kill(w.pid, signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"no candidate worker held a claim in generation {t}")


def finish(server, live: list[Worker], timeout: float = 30) -> list[dict]:
    """SIGTERM the live workers; each must exit with code 0 and print its stats. Then the
    server must be empty. Returns every worker process's stats."""
    for w in live:
        w.signal(signal.SIGTERM)
    stats = []
    for w in live:
        code = w.wait(timeout)
        assert code == 0, f"worker {w.pid} exited with {code}:\n{w.stderr()}"
        got = w.stats()
        assert len(got) == w.processes, (w.stdout, w.stderr())
        stats += got
    server.wait_empty(timeout=10)
    return stats


# --- 1. same seed, same populations -------------------------------------------------------
EQUIVALENCE = {
    # name: (kind, worker subprocesses, --processes each)
    "dyn-2-workers": ("dyn", 2, 1),
    "dyn-3-workers": ("dyn", 1, 3),  # one `redis-worker --processes 3`
    "stat-2-workers": ("stat", 2, 1),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(EQUIVALENCE))
def test_same_seed_same_population_as_multicore(case, server, workers, tmp_path,
                                                tmp_path_factory):
    kind, k, procs = EQUIVALENCE[case]
    ws = workers(k, processes=procs)
    model = Sleepy(0.0005)  # random sleeps: tasks finish out of order
    if kind == "dyn":
        multicore = dabc.MulticoreEvalParallelSampler(2)
    else:
        multicore = dabc.MulticoreParticleParallelSampler(2)
    ref = reference(kind, tmp_path_factory, model, sampler=multicore)
    wait_registered(server, k * procs)
    with sampler_for(server, kind) as s:
        got = snapshot(run_abc(model, PRIOR_X, s, tmp_path / "redis.db"))
    assert_same(got, ref)
    # the multicore reference is itself the one-core / map result (the DYN/STAT contract)
    assert_same(ref, reference(kind, tmp_path_factory))
    stats = finish(server, ws)
    assert sum(st["evaluations"] for st in stats) >= int(got["n_simulations"].sum())
    assert sum(st["tasks"] > 0 for st in stats) >= 2, f"one worker did all the work: {stats}"


# --- 2. a worker killed mid-generation ----------------------------------------------------
def _kill_one_of_three(kind, server, workers, rc, tmp_path, tmp_path_factory):
    ws = workers(3)
    ref = reference(kind, tmp_path_factory)  # computed while the workers start
    wait_registered(server, 3)
    s = sampler_for(server, kind)
    bg = Background(run_abc, Sleepy(0.005), PRIOR_X, s, tmp_path / "killed.db")
    victim, task = kill_claim_holder(rc, s, ws, 1, bg)
    got = snapshot(bg.result(120))
    assert_same(got, ref)
    assert victim.wait(10) == -signal.SIGKILL
    # the killed worker's task was needed for the population, so it was run again elsewhere
    kind_, start, stop = task.split(":")[:3]
    pop_ids = np.concatenate([a["id"] for a in got["arrays"][1].values()])
    if kind == "dyn":
        assert kind_ == "ids" and int(start) <= pop_ids.max(), (task, pop_ids.max())
    else:
        assert kind_ == "slots" and set(range(int(start), int(stop))) <= set(pop_ids.tolist())
    stats = finish(server, [w for w in ws if w is not victim])
    assert all(st["tasks"] > 0 for st in stats), stats


@pytest.mark.timeout(120)
def test_killed_worker_changes_nothing(server, workers, rc, tmp_path, tmp_path_factory):
    _kill_one_of_three("dyn", server, workers, rc, tmp_path, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_killed_worker_changes_nothing_stat(server, workers, rc, tmp_path, tmp_path_factory):
    _kill_one_of_three("stat", server, workers, rc, tmp_path, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("repetition", range(10))
def test_killed_worker_changes_nothing_repeated(repetition, server, workers, rc, tmp_path,
                                               tmp_path_factory):
    _kill_one_of_three("dyn", server, workers, rc, tmp_path, tmp_path_factory)


# --- 3. every worker killed ---------------------------------------------------------------
@pytest.mark.timeout(90)
def test_all_workers_killed_is_a_worker_error(server, workers, rc, tmp_path):
    ws = workers(2)
    wait_registered(server, 2)
    s = sampler_for(server, no_worker_timeout=3)
    db = tmp_path / "dead.db"
    bg = Background(run_abc, Sleepy(0.005), PRIOR_X, s, db)
    wait_generation(rc, s, 1, bg)
    for w in ws:
        os.kill(w.pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(dabc.WorkerError, match="no live workers"):
        bg.result(60)
    elapsed = time.monotonic() - killed
    # 3 s until the heartbeats count as expired, 3 s no_worker_timeout, 0.5 s ticks
    assert 3 <= elapsed < 12, elapsed
    for w in ws:
        assert w.wait(5) == -signal.SIGKILL
    h = dabc.History(f"sqlite:///{db}")
    assert h.all_runs().status.tolist() == ["failed"]
    assert h.n_populations == 1
    server.wait_empty(timeout=10)


@pytest.mark.timeout(120)
def test_waits_for_new_workers_when_asked(server, workers, rc, tmp_path, tmp_path_factory):
    ws = workers(2)
    ref = reference("dyn", tmp_path_factory)
    wait_registered(server, 2)
    s = sampler_for(server, no_worker_timeout=0.5, wait_for_workers=True)
    bg = Background(run_abc, Sleepy(0.005), PRIOR_X, s, tmp_path / "wait.db",
                    record_warnings=True)
    wait_generation(rc, s, 1, bg)
    for w in ws:
        os.kill(w.pid, signal.SIGKILL)
    # the master drops the dead from the registry once their heartbeats expire (3 s), then
    # waits: far longer than no_worker_timeout (0.5 s) before the new worker has started up
    wait_for(lambda: not server.worker_ids(), 10, 0.05, "dead workers to be dropped")
    time.sleep(1.0)
    assert not bg.done, "the run should wait for workers"
    (fresh,) = workers(1)
    got = snapshot(bg.result(90))
    assert_same(got, ref)
    assert any("waiting for workers" in str(w.message) for w in bg.caught), bg.caught
    for w in ws:
        assert w.wait(5) == -signal.SIGKILL
    (st,) = finish(server, [fresh])
    assert st["tasks"] > 0


# --- 4. two analyses on one server and one pool -------------------------------------------
@pytest.mark.timeout(120)
def test_two_analyses_share_server_and_workers(server, workers, tmp_path, tmp_path_factory):
    ws = workers(3)
    model_a = Sleepy(0.001)
    models_b, priors_b = [Sleepy(0.001), affine], [PRIOR_X, PRIOR_AB]
    ref_a = reference("dyn", tmp_path_factory, model_a, seed=101)
    ref_b = reference("dyn", tmp_path_factory, models_b, priors_b, seed=202, gens=4)
    wait_registered(server, 3)
    sa, sb = sampler_for(server), sampler_for(server)
    a = Background(run_abc, model_a, PRIOR_X, sa, tmp_path / "a.db", seed=101)
    b = Background(run_abc, models_b, priors_b, sb, tmp_path / "b.db", seed=202, gens=4)
    together = False
    while not (a.done and b.done):
        rows = manager("info", server.host, server.port, server.password)
        together |= {r["analysis"] for r in rows} == {sa.analysis_id, sb.analysis_id}
        time.sleep(0.05)
    assert_same(snapshot(a.result(5)), ref_a)
    assert_same(snapshot(b.result(5)), ref_b)
    assert together, "the two analyses never ran at the same time"
    stats = finish(server, ws)
    assert all(st["tasks"] > 0 for st in stats), stats


# --- 5. passwords, model errors, workers joining ------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("password, message", [("wrong-password", "password"),
                                               (None, "needs a password")])
def test_bad_password_is_an_input_error_at_once(password, message, server, tmp_path):
    s = dabc.RedisEvalParallelSampler(host=server.host, port=server.port, password=password)
    t0 = time.monotonic()
    with pytest.raises(dabc.InputError, match=message):
        run_abc(Sleepy(), PRIOR_X, s, tmp_path / "pw.db")
    elapsed = time.monotonic() - t0
    # one round trip on the loopback interface; a refused password is not worth retrying
    assert elapsed < 2.0, f"InputError after {elapsed:.1f} s"
    db = tmp_path / "pw.db"  # the sampler starts before the run is written: no run behind
    assert not db.exists() or dabc.History(f"sqlite:///{db}").all_runs().empty
    assert server.dbsize() == 0


@pytest.mark.timeout(60)
def test_cli_refuses_bad_password_and_killed_idle_worker_leaves_no_key(server, workers):
    """The worker and manager CLIs exit with code 1 (a DabcError, as every dabc command) and
    a clear message on a wrong or missing password. Meanwhile a worker is SIGKILLed while
    no analysis runs: what it wrote must expire on its own ("every key with a TTL")."""
    (idle,) = workers(1)
    base = ["--host", server.host, "--port", str(server.port)]
    cmds = {"worker-wrong": [*CLI, "redis-worker", *base, "--password", "nope"],
            "manager-missing": [*CLI, "redis-manager", "info", *base]}
    procs = {k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL) for k, c in cmds.items()}
    try:
        for name, p in procs.items():
            out, err = p.communicate(timeout=40)
            assert p.returncode == 1, (name, p.returncode, out, err)
            command = "redis-worker" if name.startswith("worker") else "redis-manager"
            assert f"dabc {command}: error:" in err and "Traceback" not in err, (name, err)
            assert "password" in err, (name, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
    wait_for(idle.registered, 60, 0.05, "the idle worker")
    idle.signal(signal.SIGKILL)
    assert idle.wait(5) == -signal.SIGKILL
    server.wait_empty(timeout=8)  # its heartbeat key lives 4 s


@pytest.mark.timeout(60)
def test_model_raising_on_a_worker_is_a_model_error(server, workers, tmp_path):
    ws = workers(2)
    wait_registered(server, 2)
    with sampler_for(server) as s, pytest.raises(dabc.ModelError) as info:
        run_abc(always_fails, PRIOR_X, s, tmp_path / "f.db")
    msg = str(info.value)
    assert "'always_fails'" in msg
    assert "Traceback (most recent call last)" in msg
    assert "ValueError: simulator exploded at x=" in msg and "sentinel 5e2c" in msg
    assert "max_failure_rate" in msg
    h = dabc.History(f"sqlite:///{tmp_path / 'f.db'}")
    assert h.n_populations == 0 and h.all_runs().status.tolist() == ["failed"]
    assert all(w.alive() for w in ws), "a failing model must not take its worker down"
    stats = finish(server, ws)
    assert sum(st["evaluations"] for st in stats) >= 10


@pytest.mark.timeout(120)
def test_early_and_late_workers_both_contribute(server, workers, rc, tmp_path,
                                                tmp_path_factory):
    """A worker started before the master and one joining mid-generation both do tasks.

    The early worker is slow (20 ms per evaluation; alone it would need ~20 s), so the run
    is still going when the late one (2 ms) has started up, whatever the load.
    """
    (early,) = workers(1, env={FACTOR_ENV: "10"})
    ref = reference("dyn", tmp_path_factory)
    wait_registered(server, 1)
    s = sampler_for(server)
    bg = Background(run_abc, Sleepy(0.002), PRIOR_X, s, tmp_path / "join.db")
    wait_generation(rc, s, 0, bg)
    (late,) = workers(1)
    wait_for(late.registered, 60, 0.01, "the late worker")
    running = current_gen(rc, s)
    assert running is not None, "the run ended before the late worker joined"
    got = snapshot(bg.result(120))
    assert_same(got, ref)
    st_early, st_late = finish(server, [early, late])
    assert st_early["tasks"] > 0, st_early
    assert st_late["tasks"] > 0, (st_late, f"joined during generation {running[1]}")


@pytest.mark.timeout(90)
def test_idle_workers_are_woken_when_tasks_are_queued(server, workers, rc, tmp_path,
                                                      tmp_path_factory):
    """Idle workers wait for a master's wake-up message instead of polling. With
    ``--idle-wait 10m`` they would otherwise sit out every generation's start: the 3
    generations of this run would take 30 minutes; woken, it ends with the reference."""
    ws = workers(2, args=("--idle-wait", "10m"))
    ref = reference("dyn", tmp_path_factory)
    wait_registered(server, 2)
    time.sleep(0.5)  # both are waiting for a message by now
    got = snapshot(run_abc(Sleepy(0.0002), PRIOR_X, sampler_for(server), tmp_path / "w.db"))
    assert_same(got, ref)
    stats = finish(server, ws)
    assert sum(s["tasks"] for s in stats) > 0, stats


# --- 6. redis-manager and SIGTERM ---------------------------------------------------------
@pytest.mark.timeout(120)
def test_manager_info_and_stop(server, workers, rc, tmp_path, tmp_path_factory):
    ws = workers(3)
    wait_registered(server, 3)
    s = sampler_for(server)
    db = tmp_path / "stop.db"
    bg = Background(run_abc, Sleepy(0.005), PRIOR_X, s, db, gens=30)
    wait_generation(rc, s, 0, bg)
    info = server.cli("redis-manager", "info", "--json")
    assert info.returncode == 0, info.stderr
    got = json.loads(info.stdout)
    (row,) = [r for r in got["analyses"] if r["analysis"] == s.analysis_id]
    assert row["generation"] >= 0 and row["n"] == N
    assert len(got["workers"]) == 3
    assert not bg.done
    seen: dict = {}

    def watch():  # the generation running when the stop flag appears on the server
        stop_key, last = f"{s.prefix}:stop", None
        while not bg.done:
            last = current_gen(rc, s) or last
            if rc.exists(stop_key):
                seen["at_stop"] = last
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stop = server.cli("redis-manager", "stop")
    assert stop.returncode == 0, stop.stderr
    assert s.analysis_id in stop.stdout
    h = bg.result(60)
    watcher.join(10)
    at_stop = seen.get("at_stop")
    assert at_stop is not None, "the run ended before the stop"
    k = h.n_populations
    # the generation running when the stop arrived is finished (the flag is read twice a
    # second, so the one after it at the latest), and stored; then the run ends
    assert at_stop[1] + 1 <= k <= at_stop[1] + 2, (at_stop, k)
    (reason,) = h.all_runs().stop_reason.tolist()
    assert "stop requested" in reason, reason
    assert h.all_runs().status.tolist() == ["done"]
    assert_same(snapshot(h), reference("dyn", tmp_path_factory, gens=k))
    finish(server, ws)
    idle = json.loads(server.cli("redis-manager", "info", "--json").stdout)
    assert (idle["workers"], idle["analyses"]) == ([], [])
    assert server.dbsize() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["running", "suspended"])
def test_sigterm_worker_exits_at_once_and_hands_back_its_claim(how, server, workers, rc,
                                                               tmp_path, tmp_path_factory):
    """Workers stuck in a long task get SIGTERM: each exits with code 0 at once, printing its
    stats, and its claim is back in the queue at once (not after the heartbeat timeout); the
    other workers finish the run, identical to the reference.

    "running": plain SIGTERM to one stuck worker. "suspended": each of three stuck workers
    is stopped (SIGSTOP, like Ctrl-Z or a batch system suspending a job) when SIGTERM
    arrives, then continued (SIGCONT), as bash's ``kill %1`` does. Which of a worker's
    threads takes the signal is then up to the kernel, hence three workers.
    """
    ws = workers(2)
    markers = [tmp_path / f"in-model-{i}" for i in range(3 if how == "suspended" else 1)]
    stuck = [workers(1, env={STALL_ENV: str(m)})[0] for m in markers]  # sleep for minutes
    ref = reference("dyn", tmp_path_factory)
    wait_registered(server, len(ws) + len(stuck))
    s = sampler_for(server)
    bg = Background(run_abc, Sleepy(0.002), PRIOR_X, s, tmp_path / "term.db")
    wait_for(lambda: all(m.exists() for m in markers), 60, 0.01, "stuck workers in the model")
    gen = current_gen(rc, s)[0]
    held = claims(rc, s, gen).values()
    assert all(any(f"-{w.pid}-" in wid for wid in held) for w in stuck), held
    for w in stuck:
        if how == "suspended":
            w.signal(signal.SIGSTOP)
            time.sleep(0.1)
            w.signal(signal.SIGTERM)
            time.sleep(0.1)
            w.signal(signal.SIGCONT)
        else:
            w.signal(signal.SIGTERM)
    t0 = time.monotonic()
    for w in stuck:
        try:
            code = w.wait(max(0.5, t0 + 6 - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"exit code {code} 6 s after SIGTERM; stderr:\n{w.stderr()}"
    assert time.monotonic() - t0 < 5
    left = claims(rc, s, gen).values()
    for w in stuck:
        (st,) = w.stats()
        assert st["tasks"] == 0, st
        assert st["worker"] not in server.worker_ids()
        assert st["worker"] not in left, "the claim was not handed back"
    got = snapshot(bg.result(60))
    assert_same(got, ref)
    stats = finish(server, ws)
    assert all(x["tasks"] > 0 for x in stats), stats


def test_results_not_yet_read_count_as_in_flight(server, rc):
    """The master keeps 2 W tasks in flight, counting queued, claimed *and* finished results
    it has not read yet. Before, waiting results were not counted: with a busy master the
    workers ran tasks past the generation's end (3,090 simulations for 2,543 used, 100
    workers of 1 s)."""
    from dabc.samplers.scheduling import DynamicScheduler

    sampler = sampler_for(server)
    sampler._outstanding = {}
    keys = {k: f"dabc:test:{k}" for k in ("queue", "claims", "results")}
    workers = 4  # target: 8 in flight

    def refill() -> int:
        sched = DynamicScheduler(1000, fixed_size=1)
        sampler._refill(rc, sched, keys, workers)
        queued = rc.llen(keys["queue"])
        rc.delete(keys["queue"])
        return queued

    assert refill() == 8
    rc.hset(keys["claims"], mapping={"t1": "w1", "t2": "w2"})
    assert refill() == 6
    rc.rpush(keys["results"], *[b"r"] * 5)  # finished, not yet read by the master
    assert refill() == 1
    rc.rpush(keys["results"], *[b"r"] * 5)
    assert refill() == 0
