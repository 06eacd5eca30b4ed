"""Dask at 10 ms simulations: the Dask sampler's modes beside the multicore sampler (JSON).

    python benchmarks/bench_dask_pull.py [--workload sleep10] [--workers 8] [--repeats 3]
                                         [--modes push,pull,pull@0.05]

One run interleaves, ``--repeats`` times over: ``MulticoreEvalParallelSampler(workers)``,
then ``DaskDistributedSampler(client, mode=m)`` for each mode (``m@s``: with
``target_seconds=s``), on one lean LocalCluster
(:func:`dabc.samplers.dask.local_cluster`) of ``workers`` single-threaded worker processes
started once. Reported per configuration: the median efficiency with every repeat's figure,
and the CPU spent per evaluation (median over repeats) by

- ``master_cpu_ms``: the whole master process (engine, client, and the LocalCluster's
  scheduler, which runs in the master process);
- ``loop_cpu_ms``: the master's event-loop thread alone (where the scheduler and the
  client's communication run; ``Client.run_on_scheduler(time.thread_time)``), and
  ``loop_cpu_ms_above_idle``: the same less what the idle cluster costs it per second
  (measured for 5 s before the runs) over the run's wall time;
- ``workers_cpu_ms``: the worker processes and their nannies (psutil).

Ratios: each Dask mode's efficiency over the multicore sampler's (acceptance line of issue
14: >= 0.95 at sleep10 with 8 workers). Results go to stdout and benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psutil  # noqa: E402

import dabc  # noqa: E402
from workloads import run_dabc  # noqa: E402


def _worker_processes(client) -> list[psutil.Process]:
    procs = []
    for pid in client.run(os.getpid).values():
        p = psutil.Process(pid)
        procs.append(p)
        parent = p.parent()
        if parent is not None and parent.pid != os.getpid():
            procs.append(parent)  # its nanny
    return procs


def _cpu(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


IDLE: dict = {}


def idle_loop(client, seconds: float = 5.0) -> float:
    """CPU seconds per second the idle cluster's loop thread spends on itself (heartbeats,
    ticks): subtracted from ``loop_cpu_ms`` to give ``loop_cpu_ms_above_idle``."""
    t0 = client.run_on_scheduler(time.thread_time)
    time.sleep(seconds)
    return (client.run_on_scheduler(time.thread_time) - t0) / seconds


def measured(workload: str, sampler, workers: int, client=None) -> dict:
    """One run with the CPU it cost the master, its loop thread, and the Dask workers."""
    procs = _worker_processes(client) if client is not None else []
    loop0 = client.run_on_scheduler(time.thread_time) if client is not None else 0.0
    w0, m0 = _cpu(procs), time.process_time()
    out = run_dabc(workload, sampler, procs=workers)
    m1, w1 = time.process_time(), _cpu(procs)
    loop1 = client.run_on_scheduler(time.thread_time) if client is not None else 0.0
    n = out["evaluated"]
    out["master_cpu_ms"] = round(1e3 * (m1 - m0) / n, 3)
    if client is not None:
        out["loop_cpu_ms"] = round(1e3 * (loop1 - loop0) / n, 3)
        idle = IDLE.get("loop_cpu_per_s", 0.0) * out["wall_s"]
        out["loop_cpu_ms_above_idle"] = round(1e3 * (loop1 - loop0 - idle) / n, 3)
        out["workers_cpu_ms"] = round(1e3 * (w1 - w0) / n, 3)
    return out


def summary(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["efficiency"])
    best = dict(runs[(len(runs) - 1) // 2])
    best["repeats"] = [r["efficiency"] for r in runs]
    for k in ("master_cpu_ms", "loop_cpu_ms", "loop_cpu_ms_above_idle", "workers_cpu_ms"):
        if k in runs[0]:
            best[k] = round(statistics.median(r[k] for r in runs), 3)
    return best


def sampler_options(spec: str) -> dict:
    """``"push"``, ``"pull"``, or either with ``@<target_seconds>`` (``"pull@0.05"``)."""
    mode, _, target = spec.partition("@")
    return {"mode": mode, **({"target_seconds": float(target)} if target else {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="sleep10")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="push,pull")
    args = ap.parse_args(argv)
    from distributed import Client

    from dabc.samplers.dask import local_cluster

    modes = args.modes.split(",")
    runs: dict[str, list] = {"multicore": [], **{m: [] for m in modes}}
    load = [os.getloadavg()]
    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        client.wait_for_workers(args.workers)
        IDLE["loop_cpu_per_s"] = idle_loop(client)
        for _ in range(args.repeats):
            runs["multicore"].append(measured(
                args.workload, dabc.MulticoreEvalParallelSampler(args.workers), args.workers))
            for m in modes:
                sampler = dabc.DaskDistributedSampler(client, **sampler_options(m))
                runs[m].append(measured(args.workload, sampler, args.workers, client))
            load.append(os.getloadavg())
    out = {"machine": {"cpus": os.cpu_count(), "dabc": dabc.__version__,
                       "loadavg_1min": [round(x[0], 2) for x in load]},
           "workload": args.workload, "workers": args.workers,
           "idle_loop_cpu_per_s": round(IDLE["loop_cpu_per_s"], 4)}
    for k, v in runs.items():
        out[f"dabc_{k}"] = summary(v)
    mc = out["dabc_multicore"]["efficiency"]
    out["ratios"] = {f"dask_{m}_vs_multicore": round(out[f"dabc_{m}"]["efficiency"] / mc, 3)
                     for m in modes}
    out["target"] = {"dask_vs_multicore": 0.95}
    text = json.dumps(out, indent=2)
    print(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"bench_dask_pull-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
