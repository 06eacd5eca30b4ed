"""The scaling study's acceptance run: a built-in workload at 1, 2, 4, 8 workers (JSON).

    python benchmarks/scaling_study.py [--workload sleep100] [--workers 1,2,4,8]
                                       [--repeats 3] [--out /tmp/scaling_acceptance]

Runs :func:`dabc.cluster.scaling_study` on its own local Dask cluster (one-thread worker
processes on loopback), writes ``OUT/scaling.csv`` and ``OUT/scaling.png`` and prints one
JSON document: the table, the knee, the summary sentence, and how busy the machine was
(load averages before and after, CPU count), since sleeping workloads on a shared machine
are still sensitive to the CPU the master and the scheduler get.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from dabc.cluster import scaling_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="sleep100")
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--population", type=int, default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--out", default="/tmp/scaling_acceptance")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("dabc.cluster").setLevel(logging.INFO)
    logging.getLogger("distributed").propagate = False  # its own handler shows warnings
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {} if args.generations is None else {"max_generations": args.generations}
    load_before = os.getloadavg()
    tic = time.perf_counter()
    result = scaling_study(workers=args.workers, workload=args.workload,
                           population_size=args.population, repeats=args.repeats,
                           threshold=args.threshold, **kwargs)
    total = time.perf_counter() - tic
    result.to_csv(out / "scaling.csv")
    result.plot(out / "scaling.png")
    print(result.to_string(), file=sys.stderr)
    print(result.summary, file=sys.stderr)
    doc = {"workload": args.workload, "workers": args.workers, "repeats": args.repeats,
           "threshold": args.threshold, "knee": result.knee, "summary": result.summary,
           "identical_populations": result.identical,
           "table": json.loads(result.table.to_json(orient="records")),
           "runs": json.loads(result.runs.to_json(orient="records")),
           "study_s": round(total, 1),
           "machine": {"cpus": os.cpu_count(), "load_before": load_before,
                       "load_after": os.getloadavg()},
           "files": [str(out / "scaling.csv"), str(out / "scaling.png")]}
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
