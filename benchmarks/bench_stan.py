"""Stan fleet benchmark: compilations, artifact shipments, known answers and 2-vs-1 worker time.

Prints one JSON document. What it measures, all with real components:

1. One compilation of a Bernoulli program into a fresh temporary cache (``compilations``).
2. A fleet of 32 Bernoulli data sets with different true theta on a LocalCluster of two worker
   processes (one thread each), each worker with its own temporary cache directory: artifacts
   shipped and materialised per worker, and every posterior mean against its Beta conjugate
   mean in units of ArviZ's Monte Carlo standard error (``z``; acceptance: |z| < 3).
3. Wall time of a sampling-bound fleet (32 data sets of ``--n`` observations, so every fit
   takes about a second of Stan time) on 1 worker and on 2 workers, interleaved and repeated
   (``--reps``, order alternating) because the machine is shared; the headline is the median
   over repeats of the back-to-back ratio; the load average before and after is reported.
   ``busy`` is the Stan time inside tasks over (wall time x workers): near 1 means the fleet
   is sampling-bound and the ratio reflects parallelism. ``other_cores`` is the CPU used by
   other programs during that fleet (machine CPU time minus ours, over wall time): with 2 cores,
   another program's load takes from the 2-worker fleet what the 1-worker fleet never needed.

Run: ``python benchmarks/bench_stan.py [--reps 5] [--n 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

PROGRAM = """
data {
  int<lower=0> N;
  array[N] int<lower=0, upper=1> y;
}
parameters {
  real<lower=0, upper=1> theta;
}
model {
  theta ~ beta(1, 1);
  y ~ bernoulli(theta);
}
"""


def datasets(n_sets: int, n_obs: int, seed: int) -> dict[str, dict]:
    """``n_sets`` Bernoulli data sets with true theta spread over (0.03, 0.97)."""
    rng = np.random.default_rng(seed)
    thetas = np.linspace(0.03, 0.97, n_sets)
    return {f"set{i:02d}-theta={t:.3f}": {"N": n_obs, "y": (rng.random(n_obs) < t).astype(int)}
            for i, t in enumerate(thetas)}


def cluster(n_workers: int):
    """A LocalCluster of worker processes with one thread and a private cache each."""
    from distributed import Client, LocalCluster

    from dabc.stan import PrivateCacheDir

    lc = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0")
    client = Client(lc)
    client.register_plugin(PrivateCacheDir())
    return lc, client


def _busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all processes) since boot."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + \
        getattr(t, "steal", 0)


def _our_seconds(clients) -> float:
    """CPU seconds of this process and of every worker process of ``clients``."""
    import psutil

    total = sum(os.times()[:2])
    for c in clients:
        for pid in c.run(os.getpid).values():
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=32, help="data sets per fleet")
    ap.add_argument("--n", type=int, default=10000, help="observations per timing data set")
    ap.add_argument("--draws", type=int, default=1000, help="draws (and warm-up) per chain")
    ap.add_argument("--reps", type=int, default=5, help="interleaved 1- and 2-worker repeats")
    args = ap.parse_args(argv)

    from dabc.stan import StanModel, reset_stats, sample_many, stats, worker_stats

    report: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory(prefix="dabc-bench-stan-") as cache:
        reset_stats()
        t = time.perf_counter()
        model = StanModel(PROGRAM, name="bernoulli", cache_dir=cache)
        report["compile"] = {
            "compilations": stats()["compilations"], "seconds": round(time.perf_counter() - t, 1),
            "artifact_mb": round(model.artifact.size / 1e6, 1),
            "compressed_mb": round(model.artifact.compressed_size / 1e6, 1),
        }

        lc2, c2 = cluster(2)
        lc1, c1 = cluster(1)
        try:
            # -- 32 data sets on 2 workers: shipments and known answers ---------------------
            sets = datasets(args.sets, 100, seed=1)
            t = time.perf_counter()
            fleet = sample_many(model, sets, client=c2, chains=4, draws=args.draws, seed=11)
            fits = fleet.fits
            wall = time.perf_counter() - t
            per_worker = worker_stats(c2)
            zs = []
            for fit in fits:
                k, n = int(sets[fit.dataset]["y"].sum()), sets[fit.dataset]["N"]
                row = fit.summary.set_index("parameter").loc["theta"]
                zs.append((row["mean"] - (1 + k) / (2 + n)) / row["mcse_mean"])
            report["fleet_2_workers"] = {
                "datasets": len(fits), "failed": len(fleet.failures),
                "wall_seconds": round(wall, 2),
                "compilations_total": stats()["compilations"] + sum(
                    s["compilations"] for s in per_worker.values()),
                "artifacts_shipped_per_worker": [
                    s["artifacts_received"].get(model.hash, 0) for s in per_worker.values()],
                "materialisations_per_worker": [
                    s["materialisations"].get(model.hash, 0) for s in per_worker.values()],
                "module_loads_per_worker": [
                    s["loads"].get(model.hash, 0) for s in per_worker.values()],
                "worker_cache_dirs_distinct": len({s["cache_dir"] for s in per_worker.values()})
                == len(per_worker),
                "posterior_z_vs_beta": [round(float(z), 2) for z in zs],
                "max_abs_z": round(float(np.max(np.abs(zs))), 2),
                "all_within_3_mcse": bool(np.all(np.abs(zs) < 3)),
            }

            # -- sampling-bound fleet: 1 worker vs 2 workers, interleaved -------------------
            heavy = datasets(args.sets, args.n, seed=2)
            warm = dict(list(heavy.items())[:2])
            for c in (c1, c2):  # ship the artifact, import ArviZ, load the module everywhere
                sample_many(model, warm, client=c, chains=1, draws=20, seed=0).wait()
            load_before = os.getloadavg()
            reps = []
            for r in range(args.reps):
                row = {}
                order = [("one_worker", c1, 1), ("two_workers", c2, 2)]
                for label, c, workers in order if r % 2 == 0 else order[::-1]:
                    busy0, ours0 = _busy_seconds(), _our_seconds((c1, c2))
                    t = time.perf_counter()
                    fl = sample_many(model, heavy, client=c, chains=4, draws=args.draws,
                                     seed=100 + r)
                    done = fl.fits
                    wall = time.perf_counter() - t
                    foreign = (_busy_seconds() - busy0) - (_our_seconds((c1, c2)) - ours0)
                    stan = sum(f.seconds for f in done)
                    row[f"{label}_s"] = round(wall, 2)
                    row[f"{label}_busy"] = round(stan / (wall * workers), 2)
                    # cores used by other programs on the machine during this fleet
                    row[f"{label}_other_cores"] = round(max(foreign, 0.0) / wall, 2)
                    assert not fl.failures, fl.failures[0].error
                row["ratio"] = round(row["two_workers_s"] / row["one_worker_s"], 3)
                row["loadavg_1min"] = round(os.getloadavg()[0], 2)
                reps.append(row)
            one = statistics.median(r["one_worker_s"] for r in reps)
            two = statistics.median(r["two_workers_s"] for r in reps)
            report["scaling"] = {
                "datasets": args.sets, "observations_per_set": args.n, "chains": 4,
                "draws": args.draws, "repeats": reps,
                # each repeat runs the two fleets back to back (order alternating), so its
                # ratio compares like with like on a machine whose load changes over minutes
                "median_ratio_two_over_one": round(statistics.median(r["ratio"] for r in reps),
                                                   3),
                "median_one_worker_s": one, "median_two_workers_s": two,
                "ratio_of_medians": round(two / one, 3),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            }
            report["shipments_after_all_fleets"] = {
                "two_worker_cluster": [s["artifacts_received"].get(model.hash, 0)
                                       for s in worker_stats(c2).values()],
                "one_worker_cluster": [s["artifacts_received"].get(model.hash, 0)
                                       for s in worker_stats(c1).values()],
            }
        finally:
            for c, lc in ((c1, lc1), (c2, lc2)):
                c.close()
                lc.close()
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
