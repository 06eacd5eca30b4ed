"""The benchmark workloads, dabc side: the same definitions as benchmarks/pyabc_runner.py."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

import dabc

WORKLOADS = {  # population size, generations, sleep per simulation (s)
    "fast": (1000, 6, 0.0),
    "sleep10": (200, 4, 0.01),
    "sleep100": (100, 3, 0.1),
}


def make_model(sleep: float, vectorized: bool = False):
    """y = theta + N(0, 1), optionally sleeping ``sleep`` seconds per simulation."""
    if vectorized:
        @dabc.vectorized
        def vmodel(p, rng):
            return {"y": p["theta"] + rng.normal(size=len(p["theta"]))}
        return vmodel

    def model(p, rng):
        if sleep:
            time.sleep(sleep)
        return {"y": p["theta"] + rng.normal()}
    return model


def scalar_distance(x, x0):
    """A plain Python distance function (called once per particle): |y - y0|."""
    return abs(x["y"] - x0["y"])


def run_dabc(workload: str, sampler, vectorized: bool = False, seed: int = 1,
             procs: int | None = None, distance=None) -> dict:
    """Run one workload end to end (ABCSMC construction, run, SQLite history) and time it.

    ``procs``: the workers efficiency is computed for (default: the sampler's ``n_procs``,
    else 1; pass it for samplers whose workers live elsewhere, such as Redis or Dask).
    ``distance``: the run's distance (default: dabc's, the Euclidean PNormDistance)."""
    pop, gens, sleep = WORKLOADS[workload]
    prior = dabc.Prior(theta=dabc.RV("uniform", -10, 20))
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
        t0 = time.perf_counter()
        abc = dabc.ABCSMC(make_model(sleep, vectorized), prior, distance=distance,
                          population_size=pop, sampler=sampler, seed=seed, progress=False)
        h = abc.run({"y": 2.0}, db=db, max_generations=gens)
        wall = time.perf_counter() - t0
        gen = h.get_all_populations()
    sims = int(gen.n_simulations.sum())
    out = {"tool": "dabc", "workload": workload, "sampler": type(sampler).__name__,
           "procs": procs or getattr(sampler, "n_procs", 1), "vectorized": vectorized,
           "distance": "default" if distance is None else getattr(distance, "__name__",
                                                                  type(distance).__name__),
           "simulations": sims, "evaluated": int(gen.n_evaluated.sum()),
           "generations": len(gen), "wall_s": round(wall, 4),
           "evals_per_s": round(sims / wall, 1), "efficiency": None}
    if sleep:
        workers = out["procs"]
        out["efficiency"] = round(sims * sleep / workers / wall, 4)
        out["efficiency_all_evaluations"] = round(out["evaluated"] * sleep / workers / wall, 4)
    return out


def storage_dabc(n: int = 100_000, n_stats: int = 10, seed: int = 0) -> dict:
    """Write and read back one generation of ``n`` particles with ``n_stats`` statistics."""
    from dabc.storage import History

    rng = np.random.default_rng(seed)
    arrays = {0: {"theta": rng.normal(size=(n, 1)), "weight": np.full(n, 1 / n),
                  "distance": rng.random(n), "stats": rng.normal(size=(n, n_stats)),
                  "id": np.arange(n)}}
    info = {"epsilon": 1.0, "n_simulations": n, "n_evaluated": n, "n_accepted": n,
            "acceptance_rate": 1.0, "ess": float(n), "walltime_s": 0.0, "started": None,
            "finished": None, "model_probabilities": [1.0]}
    with tempfile.TemporaryDirectory() as tmp:
        h = History(f"sqlite:///{os.path.join(tmp, 'storage.db')}", create=True)
        h.create_run(seed=0, population_size=n, model_names=["m"], param_names=[["theta"]],
                     stat_columns=[f"s{i}" for i in range(n_stats)], observed=b"",
                     config=b"", version=dabc.__version__)
        t0 = time.perf_counter()
        h.append_generation(0, info, arrays, b"")
        t1 = time.perf_counter()
        reader = History(h.url, h.id)
        df, w = reader.get_distribution(0, 0)
        stats, _ = reader.get_statistics(0, 0)
        t2 = time.perf_counter()
    assert len(df) == n and stats.shape == (n, n_stats)
    assert np.array_equal(stats.to_numpy(), arrays[0]["stats"])
    return {"tool": "dabc", "workload": "storage", "particles": n, "statistics": n_stats,
            "write_s": round(t1 - t0, 4), "read_s": round(t2 - t1, 4),
            "total_s": round(t2 - t0, 4)}
