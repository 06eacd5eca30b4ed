"""Distributed benchmarks: Redis and Dask samplers, dabc and pyABC 0.13 side by side (JSON).

    python benchmarks/bench_distributed.py [--only fast,sleep10,sleep100] [--no-pyabc]
                                           [--repeats 3]

``fast`` runs with 2 workers (evaluations/s, also against our MulticoreEval with 2
processes); the sleep workloads with 8 workers (efficiency). The script starts its own
password-protected redis-server on a free loopback port and its own Dask LocalClusters: the
one ``DaskDistributedSampler()`` starts by itself (``local_cluster``: Dask's diagnostics off,
reported as ``dabc_dask``) and, for comparison, one with Dask's default settings
(``dabc_dask_default``). Each dabc configuration runs ``--repeats`` times in a row on the same
workers and reports its median run (by evaluations/s or efficiency) with every repeat's
figure in ``repeats``: single runs on a shared 2-core machine vary by 10-20%. pyABC runs once
per sampler (its Dask ``fast`` alone takes about 8 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dabc  # noqa: E402
from run_all import pyabc_python, ratio  # noqa: E402
from workloads import run_dabc  # noqa: E402

WORKERS = {"fast": 2, "sleep10": 8, "sleep100": 8}


class RedisServer:
    """A throw-away redis-server on a free loopback port with a random password."""

    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.password = secrets.token_hex(8)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass",
             self.password, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                dabc.samplers.redis.connect(port=self.port, password=self.password).close()
                return self
            except dabc.InputError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def start_workers(server: RedisServer, n: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "dabc", "redis-worker", "--port",
                             str(server.port), "--password", server.password, "--processes",
                             str(n)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    r = dabc.samplers.redis.connect(port=server.port, password=server.password)
    while len(dabc.samplers.redis.live_workers(r)) < n:  # wait until all have joined
        if time.monotonic() > deadline:
            raise RuntimeError("redis workers did not start")
        time.sleep(0.1)
    r.close()
    return proc


def run_pyabc(workload: str, sampler: str, procs: int, server: RedisServer | None) -> dict:
    cmd = [pyabc_python(), str(HERE / "pyabc_runner.py"), workload, "--sampler", sampler,
           "--procs", str(procs)]
    if server is not None:
        cmd += ["--redis-port", str(server.port), "--redis-password", server.password]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"tool": "pyabc", "workload": workload, "sampler": sampler,
                "error": proc.stderr.strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(workload: str, make_sampler, repeats: int, procs: int) -> dict:
    """``repeats`` runs of ``workload``; the median one (by efficiency, or evaluations/s for
    ``fast``), with efficiencies computed for ``procs`` workers and every repeat's figure."""
    metric = "evals_per_s" if workload == "fast" else "efficiency"
    runs = [run_dabc(workload, make_sampler(), procs=procs) for _ in range(repeats)]
    runs.sort(key=lambda r: r[metric])
    best = dict(runs[(len(runs) - 1) // 2])
    best["repeats"] = [r[metric] for r in runs]
    return best


def bench(workload: str, with_pyabc: bool, repeats: int = 3,
          dask_configs=("lean", "default")) -> dict:
    """One workload on Redis and Dask (each Dask config in ``dask_configs``: "lean" is
    ``dabc.samplers.dask.local_cluster``, Dask's diagnostics off; "default" is a plain
    LocalCluster), and pyABC's samplers if asked."""
    from distributed import Client, LocalCluster

    from dabc.samplers.dask import local_cluster

    n = WORKERS[workload]
    out: dict = {"workers": n}
    with RedisServer() as server:
        workers = start_workers(server, n)
        try:
            out["dabc_redis"] = median_run(workload, lambda: dabc.RedisEvalParallelSampler(
                port=server.port, password=server.password), repeats, n)
        finally:
            workers.terminate()
            workers.wait(30)
        if with_pyabc:
            out["pyabc_redis"] = run_pyabc(workload, "redis", n, server)
    for config, key in ((dask_configs[0], "dabc_dask"), *((c, f"dabc_dask_{c}")
                                                         for c in dask_configs[1:])):
        if config == "lean":  # what DaskDistributedSampler() starts by itself
            cluster = local_cluster(n)
        else:                 # Dask's default settings
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
        with cluster, Client(cluster) as client:
            out[key] = median_run(workload, lambda: dabc.DaskDistributedSampler(client),
                                  repeats, n)
            out[key]["dask_config"] = config
    if with_pyabc:
        out["pyabc_dask"] = run_pyabc(workload, "dask", n, None)
    if workload == "fast":
        out["dabc_multicore2"] = median_run("fast", lambda: dabc.MulticoreEvalParallelSampler(2),
                                            repeats, 2)
        out["ratios"] = {
            "redis_vs_multicore2": ratio(out["dabc_redis"], out["dabc_multicore2"],
                                         "evals_per_s"),
            "dask_vs_multicore2": ratio(out["dabc_dask"], out["dabc_multicore2"],
                                        "evals_per_s"),
        }
        if with_pyabc:
            out["ratios"]["redis_vs_pyabc_redis"] = ratio(out["dabc_redis"],
                                                          out["pyabc_redis"], "evals_per_s")
            out["ratios"]["dask_vs_pyabc_dask"] = ratio(out["dabc_dask"], out["pyabc_dask"],
                                                        "evals_per_s")
        out["targets"] = {"redis_vs_pyabc_redis": 10, "dask_vs_pyabc_dask": 100,
                          "redis_vs_multicore2": 0.5, "dask_vs_multicore2": 0.5}
    else:
        out["target_efficiency"] = {"sleep10": 0.85, "sleep100": 0.90}[workload]
        # The same machine's ceiling without any network or scheduler in between.
        out["dabc_multicore8_reference"] = median_run(
            workload, lambda: dabc.MulticoreEvalParallelSampler(8), repeats, 8)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="fast,sleep10,sleep100")
    ap.add_argument("--no-pyabc", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="runs per dabc configuration")
    args = ap.parse_args(argv)
    results = {"machine": {"cpus": os.cpu_count(), "dabc": dabc.__version__}}
    for name in args.only.split(","):
        if name not in WORKERS:
            ap.error(f"unknown benchmark {name!r}")
        results[name] = bench(name, not args.no_pyabc, args.repeats)
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
