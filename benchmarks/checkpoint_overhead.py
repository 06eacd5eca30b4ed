"""What checkpoints within a generation cost on the ``fast`` workload, interleaved in one run.

    python benchmarks/checkpoint_overhead.py [--repeats 15]
        [--configs single,multicore2,vectorized_single]

Each repeat runs every configuration of ``run_all.py``'s ``fast`` benchmark (population 1000,
6 generations, a microsecond model, SQLite history in a temporary folder) twice in this
process, once with ``checkpoint=True`` (the default) and once with ``checkpoint=False``, in
an order that alternates between repeats, so that a drift of the machine's load hits both
alike. Printed as JSON: per configuration, each mode's wall times, median and spread
((max - min) / median), the on/off ratio of the medians, of the best runs and the median of
the back-to-back pair ratios; the same ratio for this process's CPU time (the master's,
where checkpoints cost; less disturbed by a busy machine); the checkpoint writes per run
(counted from the engine's DEBUG records), and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dabc  # noqa: E402
from workloads import WORKLOADS, make_model  # noqa: E402

CONFIGS = {
    "single": (lambda: dabc.SingleCoreSampler(), False),
    "multicore2": (lambda: dabc.MulticoreEvalParallelSampler(2), False),
    "vectorized_single": (lambda: dabc.SingleCoreSampler(), True),
}


class _Writes(logging.Handler):
    """Counts the checkpoint writes the engine reports per generation (DEBUG)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.writes = 0
        self.seconds = 0.0

    def emit(self, record):
        if "checkpoint writes took" in record.getMessage():
            self.writes += record.args[2]
            self.seconds += record.args[3]


def run_once(config: str, checkpoint: bool, seed: int = 1) -> dict:
    """One ``fast`` run; its wall time and the checkpoint writes it made."""
    make_sampler, vectorized = CONFIGS[config]
    pop, gens, sleep = WORKLOADS["fast"]
    prior = dabc.Prior(theta=dabc.RV("uniform", -10, 20))
    counter = _Writes()
    log = logging.getLogger("dabc.engine")
    log.addHandler(counter)
    log.setLevel(logging.DEBUG)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
            t0, c0 = time.perf_counter(), time.process_time()
            abc = dabc.ABCSMC(make_model(sleep, vectorized), prior, population_size=pop,
                              sampler=make_sampler(), seed=seed, progress=False)
            h = abc.run({"y": 2.0}, db=db, max_generations=gens, checkpoint=checkpoint)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            sims = int(h.get_all_populations().n_simulations.sum())
    finally:
        log.removeHandler(counter)
        log.setLevel(logging.NOTSET)
    return {"wall_s": wall, "cpu_s": cpu, "simulations": sims, "writes": counter.writes,
            "write_s": counter.seconds}


def _spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / statistics.median(xs)


def summarise(on: list[dict], off: list[dict]) -> dict:
    a, b = [r["wall_s"] for r in on], [r["wall_s"] for r in off]
    pairs = [x / y for x, y in zip(a, b, strict=True)]
    return {
        "on_wall_s": [round(x, 4) for x in a], "off_wall_s": [round(x, 4) for x in b],
        "on_median_s": round(statistics.median(a), 4),
        "off_median_s": round(statistics.median(b), 4),
        "on_spread": round((max(a) - min(a)) / statistics.median(a), 3),
        "off_spread": round((max(b) - min(b)) / statistics.median(b), 3),
        "ratio_of_medians": round(statistics.median(a) / statistics.median(b), 4),
        "ratio_of_best": round(min(a) / min(b), 4),
        "median_pair_ratio": round(statistics.median(pairs), 4),
        # this process's CPU time (the master's: where checkpoints cost), less disturbed by
        # other processes on a busy machine than the wall time
        "cpu_ratio_of_medians": round(statistics.median(r["cpu_s"] for r in on)
                                      / statistics.median(r["cpu_s"] for r in off), 4),
        "cpu_on_spread": round(_spread([r["cpu_s"] for r in on]), 3),
        "cpu_off_spread": round(_spread([r["cpu_s"] for r in off]), 3),
        "writes_per_run": sorted({r["writes"] for r in on}),
        "write_s_per_run_median": round(statistics.median(r["write_s"] for r in on), 5),
        "same_simulations": len({r["simulations"] for r in on + off}) == 1,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args(argv)
    configs = args.configs.split(",")
    load_before = os.getloadavg()
    for config in configs:  # warm-up: imports, first fork, SQLite
        run_once(config, True)
        run_once(config, False)
    results: dict = {c: {"on": [], "off": []} for c in configs}
    for r in range(args.repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        for config in configs:
            for mode in order:
                results[config]["on" if mode else "off"].append(run_once(config, mode))
    out = {"workload": "fast", "repeats": args.repeats, "cpus": os.cpu_count(),
           "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()],
           "configs": {c: summarise(v["on"], v["off"]) for c, v in results.items()}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
