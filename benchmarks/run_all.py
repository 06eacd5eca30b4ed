"""Run the foundation benchmarks, dabc and pyABC 0.13 side by side, and print JSON.

    python benchmarks/run_all.py [--only fast,sleep10,sleep100,storage] [--no-pyabc]
                                 [--repeats 3]

pyABC runs in its own interpreter (see benchmarks/setup_pyabc.sh), one workload at a time,
in the same invocation, so that both are measured on the same machine at the same time.
Results are ratios (dabc / pyABC); absolute times on shared machines are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dabc  # noqa: E402
from workloads import run_dabc, scalar_distance, storage_dabc  # noqa: E402


def pyabc_python() -> str:
    """The interpreter that has pyABC 0.13: $DABC_PYABC_PYTHON, .venv-pyabc, or python3."""
    env = os.environ.get("DABC_PYABC_PYTHON")
    if env:
        return env
    venv = HERE.parent / ".venv-pyabc" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_pyabc(workload: str, sampler: str = "single", procs: int = 1) -> dict:
    """One pyABC run in a subprocess; its JSON line, or an error record."""
    cmd = [pyabc_python(), str(HERE / "pyabc_runner.py"), workload, "--sampler", sampler,
           "--procs", str(procs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"tool": "pyabc", "workload": workload, "sampler": sampler,
                "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a: dict, b: dict, key: str, invert: bool = False) -> float | None:
    x, y = a.get(key), b.get(key)
    if not x or not y:
        return None
    return round(y / x if invert else x / y, 2)


def _median_run(runs: list[dict]) -> dict:
    """The run with the median evals_per_s, with every repeat's figure beside it."""
    ok = [r for r in runs if r.get("evals_per_s")]
    if not ok:
        return runs[0]
    med = sorted(ok, key=lambda r: r["evals_per_s"])[len(ok) // 2]
    return {**med, "evals_per_s_repeats": [r.get("evals_per_s") for r in runs]}


def bench_fast(with_pyabc: bool, repeats: int = 3, runs_per_round: int = 5) -> dict:
    """The `fast` workload, dabc and pyABC interleaved in each of ``repeats`` rounds; each
    side's median run (by evaluations per second) gives the ratios.

    A dabc run lasts 0.04-0.25 s, where one scheduler hiccup or garbage collection of this
    shared machine moves a single run by 30 %; a pyABC run lasts 7-10 s. So each round runs
    every dabc case ``runs_per_round`` times in a row and pyABC's once; the median is taken
    over all of a case's runs (the first, cold run of the process included)."""
    cases = {
        "single": lambda: run_dabc("fast", dabc.SingleCoreSampler()),
        "multicore2": lambda: run_dabc("fast", dabc.MulticoreEvalParallelSampler(2)),
        "vectorized_single": lambda: run_dabc("fast", dabc.SingleCoreSampler(),
                                              vectorized=True),
        "vectorized_scalar_distance": lambda: run_dabc("fast", dabc.SingleCoreSampler(),
                                                       vectorized=True,
                                                       distance=scalar_distance),
    }
    py_cases = {"single": lambda: run_pyabc("fast", "single"),
                "multicore2": lambda: run_pyabc("fast", "multicore", 2)}
    ours_runs: dict[str, list] = {k: [] for k in cases}
    theirs_runs: dict[str, list] = {k: [] for k in py_cases}
    for _ in range(max(repeats, 1)):
        for k, f in cases.items():
            ours_runs[k].extend(f() for _ in range(max(runs_per_round, 1)))
        if with_pyabc:
            for k, f in py_cases.items():
                theirs_runs[k].append(f())
    ours = {k: _median_run(v) for k, v in ours_runs.items()}
    out = {"dabc": ours, "repeats": repeats, "dabc_runs_per_round": runs_per_round}
    if with_pyabc:
        theirs = {k: _median_run(v) for k, v in theirs_runs.items()}
        out["pyabc"] = theirs
        out["ratios"] = {
            "single_vs_pyabc_single": ratio(ours["single"], theirs["single"], "evals_per_s"),
            "multicore2_vs_pyabc_multicore2": ratio(ours["multicore2"], theirs["multicore2"],
                                                    "evals_per_s"),
            "vectorized_vs_pyabc_single": ratio(ours["vectorized_single"], theirs["single"],
                                                "evals_per_s"),
            "vectorized_scalar_distance_vs_pyabc_single": ratio(
                ours["vectorized_scalar_distance"], theirs["single"], "evals_per_s"),
        }
        out["targets"] = {"single_vs_pyabc_single": 30, "multicore2_vs_pyabc_multicore2": 25,
                          "vectorized_vs_pyabc_single": 200,
                          "vectorized_scalar_distance_vs_pyabc_single": 100}
    return out


def bench_sleep(workload: str, with_pyabc: bool) -> dict:
    ours = run_dabc(workload, dabc.MulticoreEvalParallelSampler(8))
    out = {"dabc": ours, "target_efficiency": {"sleep10": 0.80, "sleep100": 0.90}[workload]}
    if with_pyabc:
        theirs = run_pyabc(workload, "multicore", 8)
        out["pyabc"] = theirs
        out["ratios"] = {"efficiency_vs_pyabc": ratio(ours, theirs, "efficiency")}
    return out


def bench_storage(with_pyabc: bool) -> dict:
    ours = storage_dabc()
    out = {"dabc": ours}
    if with_pyabc:
        theirs = run_pyabc("storage")
        out["pyabc"] = theirs
        out["ratios"] = {"speedup_vs_pyabc": ratio(ours, theirs, "total_s", invert=True)}
        out["target_speedup"] = 10
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="fast,sleep10,sleep100,storage")
    ap.add_argument("--no-pyabc", action="store_true", help="run the dabc side only")
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved rounds of the fast workload (the median counts)")
    ap.add_argument("--runs-per-round", type=int, default=5,
                    help="dabc runs of each fast case per round (pyABC: one)")
    args = ap.parse_args(argv)
    with_pyabc = not args.no_pyabc
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                           "dabc": dabc.__version__}}
    for name in args.only.split(","):
        if name == "fast":
            results["fast"] = bench_fast(with_pyabc, args.repeats, args.runs_per_round)
        elif name in ("sleep10", "sleep100"):
            results[name] = bench_sleep(name, with_pyabc)
        elif name == "storage":
            results["storage"] = bench_storage(with_pyabc)
        else:
            ap.error(f"unknown benchmark {name!r}")
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
