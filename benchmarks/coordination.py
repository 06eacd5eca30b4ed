"""How many tasks one master can coordinate, and real runs with many workers (JSON).

    python benchmarks/coordination.py capacity [--workers 4] [--population 1000] [--repeats 3]
    python benchmarks/coordination.py real [--workers 100] [--sleep 1] [--population 500]
                                           [--generations 4] [--only redis,dask]

``capacity``: a no-op model (``y = theta``) on the Redis sampler (this process is the master;
a private ``redis-server`` on a free loopback port with a random password, and ``dabc
redis-worker`` processes) and on the Dask sampler (this process is the client; a ``dask
scheduler`` process and ``dask worker --no-nanny`` processes, all on 127.0.0.1, with
dabc's lean settings :data:`dabc.samplers.dask.LEAN_CONFIG`). Each sampler runs with its
default ``batch_size="auto"`` and with ``batch_size=1`` (one evaluation per task: the
per-task cost). Reported per configuration (median of ``--repeats`` runs, by tasks/s):
tasks and evaluations per second of sampling, and the CPU per task of the master (this
process, ``resource.getrusage``), of the server or scheduler and of the workers (psutil).
Also measured, for the scale simulation (benchmarks/scale_sim.py): the engine's CPU per
evaluation (the same run on ``SingleCoreSampler``), the loopback round trip to the server
and scheduler, the idle load of a worker on the server, and the Redis master's periodic
tick at 1,000 and 10,000 registered workers.

``real``: one analysis per sampler with ``--workers`` worker processes and a sleeping model
(``time.sleep(--sleep)``), population ``--population``, ``--generations`` generations, as a
user would run it (auto batch size). Memory (RSS summed over the master, the server or
scheduler and every worker process) is sampled every second; its peak is reported, with
the machine's lowest available memory. Efficiency is defined as in bench_distributed.py:
``simulations * sleep / workers / wall``, wall including ABCSMC's construction and the
SQLite history, not the start of the workers.

Nothing here touches the machine's own Redis (6379) or binds anything but 127.0.0.1; every
process started is stopped by its PID. The machine has 2 cores shared with other work:
absolute rates are noise; ``uptime`` is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import dabc  # noqa: E402
from dabc.samplers.dask import LEAN_CONFIG  # noqa: E402


def noop(p, rng):
    """The no-op model: no randomness, no work."""
    return {"y": p["theta"]}


def make_sleeper(seconds: float):
    def sleeper(p, rng):
        time.sleep(seconds)
        return {"y": p["theta"] + rng.normal()}
    return sleeper


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(procs) -> float:
    """User + system CPU of the given psutil processes (gone ones count 0)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def check_loopback(procs) -> None:
    """Refuse to go on if any of our processes listens on something but loopback."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN and not (
                        c.laddr.ip.startswith("127.") or c.laddr.ip == "::1"):
                    raise RuntimeError(f"process {p.pid} listens on {c.laddr}: not loopback")


_WATCH = """
import json, signal, sys, time, psutil
roots = [int(x) for x in sys.argv[1:]]
peak, low = 0, psutil.virtual_memory().available
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
while not stop:
    seen = {}
    for r in roots:
        try:
            p = psutil.Process(r)
            seen[r] = p
            for c in p.children(recursive=True):
                seen[c.pid] = c
        except psutil.Error:
            pass
    total = 0
    for p in seen.values():
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    peak = max(peak, total)
    low = min(low, psutil.virtual_memory().available)
    time.sleep(1.0)
print(json.dumps({"peak": peak, "low": low}), flush=True)
"""


class MemoryWatch:
    """Samples the summed RSS of a set of processes (and their children) every second, in a
    separate process (a thread would take the GIL from the master it measures)."""

    def __init__(self, roots):
        self.roots = [int(r) for r in roots]

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCH, *map(str, self.roots)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        got = json.loads(out.strip().splitlines()[-1])
        self.peak_rss, self.min_available = got["peak"], got["low"]

    def report(self) -> dict:
        return {"peak_rss_total_gb": round(self.peak_rss / 2**30, 2),
                "min_available_gb": round(self.min_available / 2**30, 2)}


class LoadProbe:
    """How much the machine's load stretches CPU work: a separate process spins 5 ms of CPU
    every 0.5 s and records wall time / CPU time of each spin (1.0 on an idle core; about
    (runnable processes / cores) on a loaded machine). The scale simulation multiplies the
    CPU costs of master and server by it."""

    def __enter__(self):
        code = ("import time,sys\n"
                "while True:\n"
                "    w0,c0=time.perf_counter(),time.process_time()\n"
                "    while time.process_time()-c0<0.005: pass\n"
                "    print((time.perf_counter()-w0)/(time.process_time()-c0),flush=True)\n"
                "    time.sleep(0.5)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        values = [float(x) for x in out.split()]
        self.stretch = round(statistics.median(values), 2) if values else None
        self.stretch_p90 = (round(sorted(values)[int(0.9 * (len(values) - 1))], 2)
                            if values else None)

    def report(self) -> dict:
        return {"stretch_median": self.stretch, "stretch_p90": self.stretch_p90}


# --- Redis --------------------------------------------------------------------------------
class CountingRedisSampler(dabc.RedisEvalParallelSampler):
    """The Redis sampler, counting the results its master receives (a benchmark hook on a
    private method; the sampler's behaviour is unchanged)."""

    received = 0

    def _receive(self, r, sched, keys, raw):
        CountingRedisSampler.received += 1
        return super()._receive(r, sched, keys, raw)


class RedisPool:
    """A private redis-server (free loopback port, random password, no persistence, its own
    HMAC secret file) and one ``dabc redis-worker --processes n``; all stopped by PID."""

    def __init__(self, workers: int):
        self.workers = workers

    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="dabc-coord-")
        d = Path(self.tmp.name)
        self.secret_file = d / "secret"
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24) + "\n")
        self.password = secrets.token_hex(12)
        self.port = free_port()
        self.server = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass",
             self.password, "--save", "", "--appendonly", "no", "--dir", str(d),
             "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.r = dabc.samplers.redis.connect("127.0.0.1", self.port, self.password)
                break
            except dabc.InputError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        env = dict(os.environ, DABC_REDIS_SECRET_FILE=str(self.secret_file),
                   REDISCLI_AUTH=self.password)
        env.pop("DABC_REDIS_SECRET", None)
        self.worker_proc = subprocess.Popen(
            [sys.executable, "-m", "dabc.cli.redis_cli", "redis-worker", "--host", "127.0.0.1",
             "--port", str(self.port), "--processes", str(self.workers)],
            stdout=subprocess.PIPE, stderr=open(d / "workers.err", "wb"),
            stdin=subprocess.DEVNULL, env=env, text=True)
        deadline = time.monotonic() + 60 + 6 * self.workers  # 100 imports on 2 loaded cores
        while len(dabc.samplers.redis.live_workers(self.r)) < self.workers:
            if time.monotonic() > deadline or self.worker_proc.poll() is not None:
                self.__exit__()
                raise RuntimeError("redis workers did not start: "
                                   + (d / "workers.err").read_text()[-2000:])
            time.sleep(0.2)
        self.server_ps = psutil.Process(self.server.pid)
        self.worker_ps = [psutil.Process(self.worker_proc.pid),
                          *psutil.Process(self.worker_proc.pid).children(recursive=True)]
        check_loopback([self.server_ps])
        return self

    def sampler(self, batch_size="auto"):
        return CountingRedisSampler(host="127.0.0.1", port=self.port, password=self.password,
                                    batch_size=batch_size, secret_file=self.secret_file)

    def tasks_done(self) -> int:
        """Tasks the workers have finished (their heartbeats carry the counts, 1 s old)."""
        st = dabc.samplers.redis._status(self.r)
        return sum(w.get("tasks") or 0 for w in st["workers"])

    def roots(self):
        return [self.server.pid, self.worker_proc.pid]

    def __exit__(self, *exc):
        if self.worker_proc.poll() is None:
            self.worker_proc.send_signal(signal.SIGTERM)
        try:
            self.worker_proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.worker_proc.kill()
            self.worker_proc.communicate()
        self.r.close()
        self.server.terminate()
        self.server.wait(20)
        self.tmp.cleanup()


# --- Dask ---------------------------------------------------------------------------------
def lean_env() -> dict:
    """dabc's LEAN_CONFIG as DASK_* environment variables, for CLI-started processes."""
    env = dict(os.environ)
    for key, value in LEAN_CONFIG.items():
        env["DASK_" + key.upper().replace(".", "__").replace("-", "_")] = str(value)
    return env


class DaskPool:
    """A ``dask scheduler`` process and ``workers`` ``dask worker --no-nanny`` processes (one
    thread each) on 127.0.0.1, with dabc's lean settings; this process is the client.

    The workers start with ``--preload dabc``, as a Redis worker (a dabc process) starts with
    dabc imported: without it each Dask worker imports dabc with its first task (about 1.5 s
    of CPU), which 100 workers on 2 cores pay inside the first generation (measured: 117 s
    for generation 0 against 12-22 s for the others). The scheduler too: it unpickles each
    graph it receives, so without dabc imported it imports dabc on the first submission
    (1.4 s before the first task reaches it with 4 workers; 11.2 s for generation 0 of the
    100-worker run against 5.9 s simulated, on 2026-12-04).
    """

    def __init__(self, workers: int):
        self.workers = workers

    def __enter__(self):
        import dask
        from distributed import Client

        env = lean_env()
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
             "--preload", "dabc"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=env)
        self.worker_procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads",
             "1", "--no-nanny", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
             "--host", "127.0.0.1", "--death-timeout", "120", "--preload", "dabc"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=env) for _ in range(self.workers)]
        self._cfg = dask.config.set(LEAN_CONFIG)
        self._cfg.__enter__()
        self.client = None
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    self.client = Client(self.address, timeout=10)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            self.client.wait_for_workers(self.workers, timeout=60 + 6 * self.workers)
        except BaseException:
            self.__exit__()
            raise
        self.scheduler_ps = psutil.Process(self.scheduler.pid)
        self.worker_ps = [psutil.Process(p.pid) for p in self.worker_procs]
        check_loopback([self.scheduler_ps, *self.worker_ps[:3]])
        return self

    def sampler(self, batch_size="auto"):
        return dabc.DaskDistributedSampler(self.client, batch_size=batch_size)

    def tasks_done(self) -> int:
        counts = self.client.run(lambda dask_worker: dask_worker.state.executed_count)
        return sum(counts.values())

    def roots(self):
        return [self.scheduler.pid, *(p.pid for p in self.worker_procs)]

    def __exit__(self, *exc):
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        self._cfg.__exit__(None, None, None)
        for p in [*self.worker_procs, self.scheduler]:
            p.terminate()
        for p in [*self.worker_procs, self.scheduler]:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# --- measurements -----------------------------------------------------------------------------
def one_run(model, sampler, population: int, generations: int, seed: int = 1) -> dict:
    """An ABCSMC run as a user writes it; wall time and per-generation figures."""
    prior = dabc.Prior(theta=dabc.RV("uniform", -10, 20))
    with tempfile.TemporaryDirectory() as tmp:
        t0, epoch0 = time.perf_counter(), time.time()
        abc = dabc.ABCSMC(model, prior, population_size=population, sampler=sampler,
                          seed=seed, progress=False)
        h = abc.run({"y": 2.0}, db=f"sqlite:///{tmp}/coord.db", max_generations=generations)
        wall = time.perf_counter() - t0
        epoch1 = time.time()
        g = h.get_all_populations()
        with contextlib.suppress(Exception):
            sampler.close()
    started = [t.timestamp() for t in g.started]
    finished = [t.timestamp() for t in g.finished]
    return {"wall_s": wall, "simulations": [int(x) for x in g.n_simulations],
            "evaluated": [int(x) for x in g.n_evaluated],
            "generation_s": [float(x) for x in g.walltime_s],
            "gaps_s": [started[i + 1] - finished[i] for i in range(len(g) - 1)],
            "startup_s": started[0] - epoch0, "tail_s": epoch1 - finished[-1]}


def measured(pool, model, population, generations, batch_size) -> dict:
    """One run on a pool with CPU accounting of master, server/scheduler and workers."""
    server_ps = getattr(pool, "server_ps", None) or pool.scheduler_ps
    tasks0, received0 = pool.tasks_done(), CountingRedisSampler.received
    c_master, c_server, c_workers = self_cpu(), cpu_seconds([server_ps]), cpu_seconds(
        pool.worker_ps)
    with LoadProbe() as probe:
        run = one_run(model, pool.sampler(batch_size), population, generations)
    c_master = self_cpu() - c_master
    c_server = cpu_seconds([server_ps]) - c_server
    time.sleep(1.2 if isinstance(pool, RedisPool) else 0.0)  # heartbeats carry the counts
    c_workers = cpu_seconds(pool.worker_ps) - c_workers
    executed = pool.tasks_done() - tasks0
    # tasks whose results the master handled (Redis: counted; Dask: every executed task's
    # result reaches the client unless cancelled first)
    tasks = (CountingRedisSampler.received - received0 if isinstance(pool, RedisPool)
             else executed)
    evals = sum(run["evaluated"])
    sampling = sum(run["generation_s"])
    return {"batch_size": batch_size, "tasks": tasks, "tasks_executed": executed,
            "evaluations": evals, **probe.report(),
            "sampling_s": round(sampling, 4), "wall_s": round(run["wall_s"], 4),
            "tasks_per_s": round(tasks / sampling, 1),
            "evaluations_per_s": round(evals / sampling, 1),
            "evaluations_per_task": round(evals / max(tasks, 1), 2),
            "master_cpu_per_task_us": round(1e6 * c_master / max(tasks, 1), 1),
            "server_cpu_per_task_us": round(1e6 * c_server / max(tasks, 1), 1),
            "workers_cpu_per_task_us": round(1e6 * c_workers / max(tasks, 1), 1),
            "master_cpu_s": round(c_master, 3), "server_cpu_s": round(c_server, 3),
            "workers_cpu_s": round(c_workers, 3)}


def median_of(runs: list[dict], key: str = "tasks_per_s") -> dict:
    runs = sorted(runs, key=lambda r: r[key])
    out = dict(runs[(len(runs) - 1) // 2])
    out["repeats"] = [r[key] for r in runs]
    return out


def idle_load(pool, seconds: float = 8.0) -> dict:
    """Server/scheduler and worker CPU per second with every worker idle."""
    server_ps = getattr(pool, "server_ps", None) or pool.scheduler_ps
    s0, w0, t0 = cpu_seconds([server_ps]), cpu_seconds(pool.worker_ps), time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return {"server_cpu_per_worker_per_s_us": round(
                1e6 * (cpu_seconds([server_ps]) - s0) / dt / pool.workers, 1),
            "worker_cpu_per_worker_per_s_us": round(
                1e6 * (cpu_seconds(pool.worker_ps) - w0) / dt / pool.workers, 1)}


def redis_round_trip_us(pool, n: int = 2000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pool.r.ping()
    return round(1e6 * (time.perf_counter() - t0) / n, 1)


def dask_rtt(pool, n: int = 300) -> float:
    """A client-scheduler round trip (an identity call) on the client's event loop."""
    sched = pool.client.scheduler
    loop = pool.client.loop

    async def many():
        t0 = time.perf_counter()
        for _ in range(n):
            await sched.identity()
        return time.perf_counter() - t0

    from distributed.utils import sync
    return round(1e6 * sync(loop, many) / n, 1)


def dask_scatter_per_worker_us(pool, nbytes: int = 30_000, repeats: int = 7) -> float:
    """What the Dask sampler does at the start of every generation: broadcast the work (here
    ``nbytes`` of bytes, about a small analysis' pickled work) to every worker; per worker."""
    from dabc._compat.distributed import scatter_broadcast

    times = []
    for i in range(repeats):
        payload = secrets.token_bytes(nbytes) + bytes([i])
        t0 = time.perf_counter()
        fut = scatter_broadcast(pool.client, payload, 30.0)
        times.append(time.perf_counter() - t0)
        pool.client.cancel(fut)
    return round(1e6 * statistics.median(times) / pool.workers, 1)


def redis_tick_us(pool, workers: int) -> float:
    """The Redis master's periodic tick (re-queue dead workers' claims, drop unwanted queued
    tasks, refresh TTLs, progress) with ``workers`` registered workers, each holding a claim,
    and as many queued tasks: its CPU is what the master spends every 0.5 s. Fake workers go
    into the registry of this private server only, and are removed afterwards."""
    from dabc.samplers.redis import WORKERS
    from dabc.samplers.scheduling import DynamicScheduler

    s = pool.sampler()
    r = s._client()
    keys = {k: f"{s.prefix}:{k}:bench" for k in ("work", "queue", "claims", "results",
                                                  "refused")}
    fake = [f"fake-{i}" for i in range(workers)]
    now = time.time() + 3600  # stays "alive" for the whole measurement
    pipe = r.pipeline()
    pipe.zadd(WORKERS, {w: now for w in fake})
    pipe.hset(keys["claims"], mapping={f"ids:{i}:{i + 1}": w for i, w in enumerate(fake)})
    pipe.rpush(keys["queue"], *(f"ids:{i}:{i + 1}" for i in range(workers, 2 * workers)))
    pipe.execute()
    sched = DynamicScheduler(n=10 * workers)
    times = []
    for _ in range(5):
        c0 = self_cpu()
        s._tick(r, sched, keys, s.prefix)
        times.append(self_cpu() - c0)
    r.zrem(WORKERS, *fake)
    r.delete(*keys.values())
    s.close()
    return round(1e6 * statistics.median(times), 0)


def engine_cost(population: int, generations: int) -> dict:
    """The same no-op analysis on SingleCoreSampler: the master's engine CPU per evaluation
    (model call included: an upper bound) and the per-generation gaps."""
    c0 = self_cpu()
    run = one_run(noop, dabc.SingleCoreSampler(), population, generations)
    cpu = self_cpu() - c0
    evals = sum(run["evaluated"])
    return {"cpu_per_evaluation_us": round(1e6 * cpu / evals, 1), "wall_s": round(
        run["wall_s"], 4), "evaluations": evals}


def capacity(args) -> dict:
    out: dict = {"mode": "capacity", "workers": args.workers, "population": args.population,
                 "generations": args.generations, "uptime": os.getloadavg(),
                 "cpus": os.cpu_count(), "dabc": dabc.__version__}
    out["engine"] = engine_cost(args.population, args.generations)
    print(json.dumps({"engine": out["engine"]}), file=sys.stderr, flush=True)
    for name, pool_cls in (("redis", RedisPool), ("dask", DaskPool)):
        if name not in args.only.split(","):
            continue
        with pool_cls(args.workers) as pool:
            res: dict = {"idle": idle_load(pool)}
            res["round_trip_us"] = (redis_round_trip_us(pool) if name == "redis"
                                    else dask_rtt(pool))
            for batch in ("auto", 1):
                runs = [measured(pool, noop, args.population, args.generations, batch)
                        for _ in range(args.repeats)]
                res[f"batch_{batch}"] = median_of(runs)
                print(json.dumps({name: {f"batch_{batch}": res[f"batch_{batch}"]}}),
                      file=sys.stderr, flush=True)
            if name == "redis":
                res["tick_us"] = {str(w): redis_tick_us(pool, w) for w in (1000, 10000)}
            else:
                res["scatter_per_worker_us"] = dask_scatter_per_worker_us(pool)
            out[name] = res
    return out


def real(args) -> dict:
    out: dict = {"mode": "real", "workers": args.workers, "sleep_s": args.sleep,
                 "population": args.population, "generations": args.generations,
                 "uptime_before": os.getloadavg(), "cpus": os.cpu_count(),
                 "dabc": dabc.__version__}
    # the same analysis without sleeping: the simulations per generation (DYN gives the same
    # populations on every sampler) and the engine's own time, for the scale simulation
    ref = one_run(make_sleeper(0.0), dabc.SingleCoreSampler(), args.population,
                  args.generations)
    out["reference_single_core"] = ref
    for name, pool_cls in (("redis", RedisPool), ("dask", DaskPool)):
        if name not in args.only.split(","):
            continue
        t0 = time.monotonic()
        with pool_cls(args.workers) as pool:
            started = time.monotonic() - t0
            time.sleep(3)
            c_master = self_cpu()
            server_ps = getattr(pool, "server_ps", None) or pool.scheduler_ps
            c_server = cpu_seconds([server_ps])
            with MemoryWatch([os.getpid(), *pool.roots()]) as mem, LoadProbe() as probe:
                load0 = os.getloadavg()
                run = one_run(make_sleeper(args.sleep), pool.sampler(), args.population,
                              args.generations)
            c_master, c_server = self_cpu() - c_master, cpu_seconds([server_ps]) - c_server
            sims = sum(run["simulations"])
            res = {"workers_started_in_s": round(started, 1), **run,
                   "efficiency": round(sims * args.sleep / args.workers / run["wall_s"], 4),
                   "efficiency_all_evaluations": round(
                       sum(run["evaluated"]) * args.sleep / args.workers / run["wall_s"], 4),
                   "memory": mem.report(), "load_before": load0, **probe.report(),
                   "master_cpu_s": round(c_master, 2), "server_cpu_s": round(c_server, 2),
                   "load_after": os.getloadavg(),
                   "same_populations_as_single_core": run["simulations"] == ref["simulations"]}
        out[name] = res
        print(json.dumps({name: res}), file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("capacity", "real", "scatter"),
                    help="scatter: only add the Dask scatter cost to the capacity JSON")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--population", type=int, default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="redis,dask")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/)")
    args = ap.parse_args(argv)
    if args.mode == "scatter":
        path = Path(args.out) if args.out else RESULTS / "coordination_capacity.json"
        result = json.loads(path.read_text())
        with DaskPool(args.workers or 4) as pool, LoadProbe() as probe:
            result["dask"]["scatter_per_worker_us"] = dask_scatter_per_worker_us(pool)
        result["dask"]["scatter_stretch"] = probe.report()
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["dask"]))
        return 0
    if args.mode == "capacity":
        args.workers = args.workers or 4
        args.population = args.population or 1000
        args.generations = args.generations or 3
        result = capacity(args)
    else:
        args.workers = args.workers or 100
        args.population = args.population or 500
        args.generations = args.generations or 4
        result = real(args)
    text = json.dumps(result, indent=2)
    RESULTS.mkdir(exist_ok=True)
    path = Path(args.out) if args.out else RESULTS / f"coordination_{args.mode}.json"
    path.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
