"""pyABC 0.13 side of the dabc benchmarks: run one workload, print one JSON object on stdout.

    python benchmarks/pyabc_runner.py WORKLOAD [--sampler single|multicore|redis|dask]
        [--procs N] [--redis-port P --redis-password PW] [--db PATH] [--seed S]

Run it with the interpreter printed by benchmarks/setup_pyabc.sh. The workloads are those of
benchmarks/workloads.py: theta ~ U(-10, 10), y = theta + N(0, 1) (optionally sleeping per
simulation), observed y = 2, pyABC's default distance and epsilon:

    fast      population 1000, 6 generations, no sleep
    sleep10   population 200,  4 generations, 10 ms per simulation
    sleep100  population 100,  3 generations, 100 ms per simulation
    storage   write + read back one generation of 100,000 particles (1 parameter,
              10 statistics) through pyabc.History

``wall_s`` covers abc.new + abc.run (SQLite history included). Starting the sampler's workers
(redis workers, dask cluster) is outside the timed region; pool start-up of the multicore
sampler, which happens in every generation, is inside. For ``redis`` the caller runs
redis-server; this script starts ``--procs`` abc-redis-worker processes and stops them again.
Everything except the final JSON line goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Python puts this script's directory first on sys.path, and benchmarks/ holds modules
# (distributed.py) that would shadow real packages pyabc imports: drop it.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]

import numpy as np  # noqa: E402
import pyabc  # noqa: E402

WORKLOADS = {  # population size, generations, sleep per simulation (s)
    "fast": (1000, 6, 0.0),
    "sleep10": (200, 4, 0.01),
    "sleep100": (100, 3, 0.1),
}
OBSERVED = {"y": 2.0}


def make_model(sleep_s: float):
    """y = theta + N(0, 1), sleeping ``sleep_s`` seconds first."""

    def model(p):
        if sleep_s:
            time.sleep(sleep_s)
        return {"y": p["theta"] + np.random.normal()}

    return model


class RedisWorkers:
    """``n`` abc-redis-worker processes, started and stopped (by PID) by this script."""

    def __init__(self, n: int, port: int, password: str | None):
        self.host, self.port, self.password = "127.0.0.1", port, password
        exe = str(Path(sys.executable).with_name("abc-redis-worker"))
        cmd = [exe, "--host", self.host, "--port", str(port), "--processes", "1"]
        if password:
            cmd += ["--password", password]
        self.procs = [subprocess.Popen(cmd, stdout=sys.stderr) for _ in range(n)]

    def wait_connected(self, sampler, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while sampler.n_worker() < len(self.procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"only {sampler.n_worker()} redis workers connected")
            time.sleep(0.05)

    def stop(self) -> None:
        from pyabc.sampler.redis_eps.cli import _manage

        try:
            _manage("stop", host=self.host, port=self.port, password=self.password)
        finally:
            for p in self.procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def make_sampler(args):
    """The pyABC sampler, and a cleanup callable."""
    s = pyabc.sampler
    if args.sampler == "single":
        return s.SingleCoreSampler(), lambda: None
    if args.sampler == "multicore":
        return s.MulticoreEvalParallelSampler(n_procs=args.procs), lambda: None
    if args.sampler == "redis":
        workers = RedisWorkers(args.procs, args.redis_port, args.redis_password)
        try:
            sampler = s.RedisEvalParallelSampler(
                host="127.0.0.1", port=args.redis_port, password=args.redis_password
            )
            workers.wait_connected(sampler)
        except BaseException:
            workers.stop()
            raise
        return sampler, workers.stop
    if args.sampler == "dask":
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=args.procs, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)

        def close():
            client.close()
            cluster.close()

        return s.DaskDistributedSampler(dask_client=client), close
    raise ValueError(f"unknown sampler {args.sampler!r}")


def run_workload(args, db: str) -> dict:
    pop, gens, sleep_s = WORKLOADS[args.workload]
    prior = pyabc.Distribution(theta=pyabc.RV("uniform", -10, 20))
    sampler, cleanup = make_sampler(args)
    try:
        abc = pyabc.ABCSMC(make_model(sleep_s), prior, population_size=pop, sampler=sampler)
        t0 = time.perf_counter()
        abc.new(db, OBSERVED)
        history = abc.run(max_nr_populations=gens)
        wall = time.perf_counter() - t0
    finally:
        cleanup()
    sims = int(history.total_nr_simulations)
    procs = 1 if args.sampler == "single" else args.procs
    return {
        "procs": procs,
        "simulations": sims,
        "wall_s": round(wall, 4),
        "evals_per_s": round(sims / wall, 1),
        "efficiency": round(sims * sleep_s / procs / wall, 4) if sleep_s else None,
        "generations": int(history.n_populations),
    }


def run_storage(db: str, n: int = 100_000, n_stats: int = 10) -> dict:
    """Time History.append_population of one generation, then reading it back."""
    from pyabc.population import Particle, Population

    rng = np.random.default_rng(0)
    theta, dist, stats = rng.normal(size=n), rng.random(n), rng.normal(size=(n, n_stats))
    names = [f"s{i}" for i in range(n_stats)]
    population = Population(
        [
            Particle(
                m=0,
                parameter=pyabc.Parameter(theta=float(theta[i])),
                weight=1 / n,
                sum_stat=dict(zip(names, stats[i].tolist(), strict=True)),
                distance=float(dist[i]),
            )
            for i in range(n)
        ]
    )
    history = pyabc.History(db)
    history.store_initial_data(None, {}, {"s0": 0.0}, {}, ["m"], "", "", "")
    t0 = time.perf_counter()
    history.append_population(0, 1.0, population, n, ["m"])
    t1 = time.perf_counter()
    reader = pyabc.History(db, _id=history.id, create=False)
    df, w = reader.get_distribution(m=0, t=0)
    _, sum_stats = reader.get_weighted_sum_stats_for_model(m=0, t=0)
    t2 = time.perf_counter()
    assert len(df) == len(w) == len(sum_stats) == n and len(sum_stats[0]) == n_stats
    return {
        "particles": n,
        "statistics": n_stats,
        "write_s": round(t1 - t0, 4),
        "read_s": round(t2 - t1, 4),
        "total_s": round(t2 - t0, 4),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=[*WORKLOADS, "storage"])
    ap.add_argument("--sampler", default="single", choices=["single", "multicore", "redis", "dask"])
    ap.add_argument(
        "--procs",
        type=int,
        default=None,
        help="worker processes (default: 8 for sleep workloads, else 1)",
    )
    ap.add_argument("--redis-port", type=int, default=6379)
    ap.add_argument("--redis-password", default=None)
    ap.add_argument("--db", default=None, help="SQLite file (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the main process")
    args = ap.parse_args(argv)
    if args.procs is None:
        args.procs = 8 if args.workload.startswith("sleep") else 1

    # stdout carries only the JSON line: everything else written to fd 1 (pyabc, workers,
    # warnings) is sent to stderr
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    np.random.seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = "sqlite:///" + os.path.abspath(args.db or os.path.join(tmp, "pyabc.db"))
        if args.workload == "storage":
            result = {"sampler": None, "procs": None, **run_storage(db)}
        else:
            result = {"sampler": args.sampler, **run_workload(args, db)}
    result = {"tool": "pyabc", "version": pyabc.__version__, "workload": args.workload, **result}
    print(json.dumps(result), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
