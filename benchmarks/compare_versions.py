"""Compare two dabc versions on one benchmark command, interleaved, and print JSON.

    python benchmarks/compare_versions.py [--before /tmp/dabc_release/src]
        [--after <this checkout>/src] [--repeats 3] [--name NAME]
        -- run_all.py --only fast --no-pyabc

The command (a script of benchmarks/ and its arguments) runs ``--repeats`` times per version,
each run in its own interpreter with ``PYTHONPATH`` set to that version's ``src``, in pairs
whose order alternates (before/after, after/before, ...), so that a drift of the machine's load
hits both versions alike. Each run's ``dabc.__file__`` is printed by the run itself (to stderr)
and checked against the version it should be. Every run record of the benchmark's JSON (a dict
with ``"tool": "dabc"``) gives one figure per configuration: ``evals_per_s`` (throughput) or,
for workloads that sleep, ``efficiency`` (both: higher is better), or ``total_s`` for storage
(lower is better). The summary has, per configuration, both versions' figures and medians, the
after/before ratio of the medians, of the best runs (the least disturbed) and of each
back-to-back pair, and the spread of each version ((max - min) / median). Raw outputs go to
``--out`` (benchmarks/results/).

``--before-benchmarks`` runs the before version's own copy of the scripts (when a script uses
something only one version has); by default both versions run this directory's scripts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs the script as __main__ after reporting which dabc this interpreter imports.
WRAPPER = ("import runpy, sys, dabc; print('DABC_FILE=' + dabc.__file__, file=sys.stderr, "
           "flush=True); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], "
           "run_name='__main__')")


def figures(tree, path: str = "") -> dict[str, tuple[str, float]]:
    """Every dabc run record's figure in a benchmark's JSON: {config path: (metric, value)}."""
    out: dict[str, tuple[str, float]] = {}
    if isinstance(tree, dict):
        if tree.get("tool") == "dabc":
            for metric in ("efficiency", "evals_per_s", "total_s"):
                if tree.get(metric) is not None:
                    out[path] = (metric, float(tree[metric]))
                    break
            return out
        for key, value in tree.items():
            out.update(figures(value, f"{path}.{key}" if path else key))
    return out


def run_once(version: str, src: Path, bench_dir: Path, command: list[str], timeout: float,
             cwd: str) -> dict:
    """One run of ``command`` with ``src`` first on the path; its JSON and bookkeeping."""
    script = bench_dir / command[0]
    env = dict(os.environ, PYTHONPATH=str(src))
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(script), *command[1:]], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    rec = {"version": version, "src": str(src), "script": str(script),
           "loadavg_at_start": [round(x, 2) for x in load], "run_wall_s": round(wall, 1),
           "returncode": proc.returncode, "stderr_tail": proc.stderr.strip().splitlines()[-5:]}
    dabc_file = [ln.split("=", 1)[1] for ln in proc.stderr.splitlines()
                 if ln.startswith("DABC_FILE=")]
    rec["dabc_file"] = dabc_file[0] if dabc_file else None
    if rec["dabc_file"] is None or not Path(rec["dabc_file"]).resolve().is_relative_to(
            src.resolve()):
        raise RuntimeError(f"{version} run imported dabc from {rec['dabc_file']}, not from "
                           f"{src}: check PYTHONPATH and the editable install")
    if proc.returncode == 0:
        rec["result"] = json.loads(proc.stdout)
    return rec


def summarize(runs: list[dict]) -> dict:
    """Per configuration: figures, medians, ratio of medians, pair ratios, spreads."""
    by_version: dict[str, list[dict]] = {"before": [], "after": []}
    for r in runs:
        by_version[r["version"]].append(figures(r.get("result")) if "result" in r else {})
    configs = sorted(set().union(*by_version["before"], *by_version["after"]))
    out = {}
    for config in configs:
        metric = next(f[config][0] for v in by_version.values() for f in v if config in f)
        vals = {v: [f[config][1] if config in f else None for f in runs_]
                for v, runs_ in by_version.items()}
        row: dict = {"metric": metric, "higher_is_better": metric != "total_s"}
        for v in ("before", "after"):
            xs = [x for x in vals[v] if x is not None]
            med = statistics.median(xs) if xs else None
            row[v] = vals[v]
            row[f"{v}_median"] = med
            row[f"{v}_spread"] = round((max(xs) - min(xs)) / med, 3) if med else None
            # the least disturbed run on a shared machine
            row[f"{v}_best"] = (max(xs) if row["higher_is_better"] else min(xs)) if xs else None
        b, a = row["before_median"], row["after_median"]
        row["ratio_of_medians"] = round(a / b, 3) if a and b else None
        bb, ab = row["before_best"], row["after_best"]
        row["ratio_of_best"] = round(ab / bb, 3) if ab and bb else None
        row["pair_ratios"] = [round(y / x, 3) if x and y else None
                              for x, y in zip(vals["before"], vals["after"], strict=True)]
        out[config] = row
    return out


def tree_hash(src: Path) -> str:
    """A hash of every .py file under ``src``: shows whether a version changed mid-comparison."""
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(src.rglob("*.py")):
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, default=Path("/tmp/dabc_release/src"),
                    help="the before version's src directory")
    ap.add_argument("--after", type=Path, default=HERE.parent / "src",
                    help="the after version's src directory (default: this checkout's)")
    ap.add_argument("--before-benchmarks", type=Path, default=HERE,
                    help="where the before version's scripts are (default: these)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per version")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--name", default=None, help="name of the raw output files")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("command", nargs="+", help="a script of benchmarks/ and its arguments")
    args = ap.parse_args(argv)
    name = args.name or Path(args.command[0]).stem
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {"before": (args.before, args.before_benchmarks), "after": (args.after, HERE)}
    summary: dict = {"command": args.command, "repeats": args.repeats,
                     "before_src": str(args.before), "after_src": str(args.after),
                     "uptime_start": uptime(),
                     "src_hash_start": {v: tree_hash(src) for v, (src, _) in versions.items()}}
    runs = []
    with tempfile.TemporaryDirectory() as cwd:  # not a checkout: `-m dabc` children see no src
        for i in range(args.repeats):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for version in order:
                src, bench_dir = versions[version]
                rec = run_once(version, src, bench_dir, args.command, args.timeout, cwd)
                rec["pair"] = i
                runs.append(rec)
                raw = args.out / f"{name}_{stamp}_{i}_{version}.json"
                raw.write_text(json.dumps(rec, indent=2))
                print(f"pair {i} {version}: rc={rec['returncode']} {rec['run_wall_s']} s, "
                      f"load {rec['loadavg_at_start']}", file=sys.stderr, flush=True)
    summary["uptime_end"] = uptime()
    summary["src_hash_end"] = {v: tree_hash(src) for v, (src, _) in versions.items()}
    summary["src_changed_during_run"] = summary["src_hash_start"] != summary["src_hash_end"]
    summary["order"] = [r["version"] for r in runs]
    summary["dabc_files"] = sorted({r["dabc_file"] for r in runs})
    summary["failed_runs"] = [{"pair": r["pair"], "version": r["version"],
                               "stderr_tail": r["stderr_tail"]}
                              for r in runs if r["returncode"] != 0]
    summary["configs"] = summarize(runs)
    (args.out / f"{name}_{stamp}_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
