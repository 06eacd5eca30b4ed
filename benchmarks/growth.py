"""How the engine's cost per particle grows with the population and the dimension (issue 14.3).

    python3 benchmarks/growth.py [--sizes 1000,10000,100000] [--dims 1,10,30]
        [--cases mvn,local,select3] [--repeats 3] [--no-whole] [--no-pyabc]
        [--pyabc-budget 60]

For every case (transition x population n x parameters d) it times, on one core:

- the engine's parts, each called directly on a weighted population of ``n`` particles
  (a correlated Gaussian cloud with random weights): the transition's ``fit``, ``n``
  proposals (``propose_many``), their proposal density (``logpdf``), the prior density and
  support check, and the importance weights as the engine computes them
  (``ABCSMC._log_weights``: prior density, model-perturbation kernel, proposal density);
- a whole generation: a real ``dabc.ABCSMC`` run (SingleCoreSampler, SQLite) of a
  vectorized model that costs nearly nothing (``y = sum(theta) + noise``), two generations;
  generation 1's stored ``walltime_s`` is its cost (proposals, simulations, distances,
  weights, fitting the next kernel, storage), and ``run_cpu`` the CPU time of the whole
  two-generation run (the figure to compare on a loaded machine).

``select3`` is model selection between 3 models (each with its own d parameters and
MultivariateNormalTransition); its population is split over the models as the run splits it.

The parts are timed in the process's CPU time (``--clock cpu``, the default: BLAS runs
single-threaded, so it is the work done, whatever else loads the machine), the whole
generations in wall-clock time. Every figure is seconds per particle (seconds / n) as the
median of ``--repeats`` repeats,
and ``growth`` is per-particle cost at the largest n over that at the smallest. pyABC 0.13
(interpreter from benchmarks/setup_pyabc.sh, or $PYABC_PYTHON) times its own
MultivariateNormalTransition / LocalTransition fit + rvs + pdf the same way, interleaved with
dabc repeat by repeat, and a whole 2-generation run on the small cases. pyABC's density is
O(n^2) per generation: a case is skipped when its time, extrapolated from the size below
(quadratically), exceeds ``--pyabc-budget`` seconds; the JSON then gives the extrapolation.

Prints one JSON document and saves it under benchmarks/results/growth-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core on both sides (before numpy is imported)

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
N_MODELS = 3
# the parts are timed in this process's CPU time (BLAS single-threaded), which other load on
# the machine does not inflate; --clock wall times them in wall-clock time instead
CLOCK = time.process_time if os.environ.get("DABC_GROWTH_CLOCK", "cpu") == "cpu" \
    else time.perf_counter


def population(n: int, d: int, seed: int = 0):
    """A correlated Gaussian cloud of ``n`` particles in ``d`` dimensions, random weights."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    theta = rng.normal(size=(n, d)) @ a.T * 0.3 + 0.5
    w = rng.uniform(0.5, 1.5, size=n)
    return theta, w / w.sum()


# ---------------------------------------------------------------------------------- pyABC side
def pyabc_parts(case: str, n: int, d: int) -> dict:
    """pyABC's fit / rvs / pdf of the same population (run under pyABC's interpreter)."""
    import pandas as pd
    import pyabc

    theta, w = population(n, d)
    names = [f"p{j}" for j in range(d)]
    X = pd.DataFrame(theta, columns=names)
    make = pyabc.MultivariateNormalTransition if case != "local" else pyabc.LocalTransition
    np.random.seed(1)
    warm = make()  # first calls (imports, allocations) outside the timing
    warm.fit(X.iloc[:50], w[:50] / w[:50].sum())
    warm.pdf(warm.rvs(5))
    trans = make()
    out = {}
    t0 = CLOCK()
    trans.fit(X, w)
    out["fit_s"] = CLOCK() - t0
    t0 = CLOCK()
    x = trans.rvs(n)
    out["rvs_s"] = CLOCK() - t0
    t0 = CLOCK()
    dens = trans.pdf(x)
    out["pdf_s"] = CLOCK() - t0
    assert np.all(np.asarray(dens) > 0)
    return out


def pyabc_whole(case: str, n: int, d: int) -> dict:
    """A whole 2-generation pyABC run of the near-free model; generation 1's wall time."""
    import pyabc

    names = [f"p{j}" for j in range(d)]

    def make(offset):
        def model(p):
            return {"y": sum(p[k] for k in names) + offset + np.random.normal()}
        return model

    prior = pyabc.Distribution(**{k: pyabc.RV("norm", 0, 1) for k in names})
    if case == "select3":
        models, priors = [make(o) for o in (0.0, 0.5, 1.0)], [prior] * N_MODELS
        trans = [pyabc.MultivariateNormalTransition() for _ in range(N_MODELS)]
    else:
        models, priors = make(0.0), prior
        trans = pyabc.MultivariateNormalTransition() if case == "mvn" else pyabc.LocalTransition()
    with tempfile.TemporaryDirectory() as tmp:
        abc = pyabc.ABCSMC(models, priors, population_size=n, transitions=trans,
                           sampler=pyabc.sampler.SingleCoreSampler())
        abc.new(f"sqlite:///{os.path.join(tmp, 'p.db')}", {"y": 1.0})
        t0 = time.perf_counter()
        h = abc.run(max_nr_populations=2)
        total = time.perf_counter() - t0
        pops = h.get_all_populations()
    ends = pops.sort_values("t")["population_end_time"].tolist()
    gen1 = (ends[-1] - ends[-2]).total_seconds()
    return {"whole_s": gen1, "run_s": total,
            "simulations": int(pops[pops.t == 1].samples.iloc[0])}


# ----------------------------------------------------------------------------------- dabc side
def dabc_parts(case: str, n: int, d: int) -> dict:
    """dabc's engine parts on the same population, each timed on its own."""
    import dabc
    from dabc.engine.work import stream

    names = [f"p{j}" for j in range(d)]
    prior = dabc.Prior(**{k: dabc.RV("norm", 0, 1) for k in names})
    theta, w = population(n, d)
    n_models = N_MODELS if case == "select3" else 1
    make = dabc.LocalTransition if case == "local" else dabc.MultivariateNormalTransition
    transitions = [make() for _ in range(n_models)]
    # the population split over the models, as a run's previous generation would be
    split = np.arange(n) % n_models
    previous = {m: {"theta": theta[split == m], "weight": w[split == m]}
                for m in range(n_models)}
    model_probs = np.array([previous[m]["weight"].sum() for m in range(n_models)])
    model_probs /= model_probs.sum()
    out = {"fit_s": 0.0, "rvs_s": 0.0, "pdf_s": 0.0, "prior_s": 0.0}
    xs = {}
    rng = stream(1, 1, 2, 0)
    for m in range(n_models):
        t0 = CLOCK()
        transitions[m].fit(previous[m]["theta"], previous[m]["weight"])
        t1 = CLOCK()
        x = transitions[m].propose_many(len(previous[m]["theta"]), rng)
        t2 = CLOCK()
        transitions[m].logpdf(x)
        t3 = CLOCK()
        prior.logpdf(x)
        prior.in_support(x)
        t4 = CLOCK()
        out["fit_s"] += t1 - t0
        out["rvs_s"] += t2 - t1
        out["pdf_s"] += t3 - t2
        out["prior_s"] += t4 - t3
        xs[m] = x

    # the importance weights exactly as the engine computes them, on a real ABCSMC
    @dabc.vectorized
    def model(p, rng):
        return {"y": rng.normal(size=len(p[names[0]]))}

    abc = dabc.ABCSMC([model] * n_models, [prior] * n_models, population_size=n,
                      progress=False)

    class Pop:  # the two fields _log_weights reads
        model = np.concatenate([np.full(len(xs[m]), m, dtype=np.int16) for m in range(n_models)])
        theta = np.concatenate([xs[m] for m in range(n_models)])

    t0 = CLOCK()
    logw = abc._log_weights(Pop, previous, model_probs, transitions)
    out["weights_s"] = CLOCK() - t0
    assert np.isfinite(logw).all()
    out["engine_s"] = out["fit_s"] + out["rvs_s"] + out["weights_s"] + out["prior_s"]
    return out


def dabc_whole(case: str, n: int, d: int) -> dict:
    """A real 2-generation dabc run of the near-free vectorized model; generation 1's time."""
    import dabc

    names = [f"p{j}" for j in range(d)]
    prior = dabc.Prior(**{k: dabc.RV("norm", 0, 1) for k in names})

    def make(offset):
        @dabc.vectorized
        def model(p, rng):
            s = sum(p[k] for k in names)
            return {"y": s + offset + rng.normal(size=len(s))}
        return model

    if case == "select3":
        models, priors = [make(o) for o in (0.0, 0.5, 1.0)], [prior] * N_MODELS
        trans = dabc.MultivariateNormalTransition()
    else:
        models, priors = make(0.0), prior
        trans = dabc.MultivariateNormalTransition() if case == "mvn" else dabc.LocalTransition()
    with tempfile.TemporaryDirectory() as tmp:
        abc = dabc.ABCSMC(models, priors, population_size=n, transition=trans,
                          sampler=dabc.SingleCoreSampler(), seed=1, progress=False)
        t0, c0 = time.perf_counter(), time.process_time()
        h = abc.run({"y": 1.0}, db=f"sqlite:///{os.path.join(tmp, 'g.db')}",
                    max_generations=2)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        pops = h.get_all_populations()
    row = pops[pops.t == 1].iloc[0]
    return {"whole_s": float(row.walltime_s), "run_s": total, "run_cpu_s": cpu,
            "simulations": int(row.n_simulations)}


# -------------------------------------------------------------------------------------- driver
def _pyabc_python() -> str | None:
    exe = os.environ.get("PYABC_PYTHON")
    if exe:
        return exe
    try:
        out = subprocess.run(["bash", str(HERE / "setup_pyabc.sh")], capture_output=True,
                             text=True, check=True, timeout=1800)
        return out.stdout.strip().splitlines()[-1]
    except (subprocess.SubprocessError, OSError, IndexError) as exc:
        print(f"pyABC unavailable: {exc}", file=sys.stderr)
        return None


def _pyabc(python: str, what: str, case: str, n: int, d: int, timeout: float) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--pyabc-side", what, case, str(n), str(d)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "OMP_NUM_THREADS": "1",
                                  "OPENBLAS_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--dims", default="1,10,30")
    ap.add_argument("--cases", default="mvn,local,select3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-generation runs")
    ap.add_argument("--no-pyabc", action="store_true")
    ap.add_argument("--pyabc-budget", type=float, default=60.0,
                    help="skip a pyABC case whose extrapolated time is above this (s)")
    ap.add_argument("--pyabc-whole-max", type=int, default=10000,
                    help="largest population of a whole pyABC run")
    ap.add_argument("--clock", choices=("cpu", "wall"),
                    default=os.environ.get("DABC_GROWTH_CLOCK", "cpu"),
                    help="time the parts in CPU time (default) or wall-clock time")
    ap.add_argument("--pyabc-side", nargs=4, metavar=("WHAT", "CASE", "N", "D"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global CLOCK
    os.environ["DABC_GROWTH_CLOCK"] = args.clock  # the pyABC side reads it too
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.pyabc_side:
        what, case, n, d = args.pyabc_side
        fn = pyabc_parts if what == "parts" else pyabc_whole
        print(json.dumps(fn(case, int(n), int(d))))
        return {}

    sizes = [int(s) for s in args.sizes.split(",")]
    dims = [int(s) for s in args.dims.split(",")]
    cases = args.cases.split(",")
    python = None if args.no_pyabc else _pyabc_python()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    results = []
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    out_file = out_dir / f"growth-{time.strftime('%Y%m%d-%H%M%S')}.json"

    def save(done: bool) -> dict:
        doc = {"benchmark": "growth", "started": started, "complete": done,
               "parts_clock": args.clock,
               "repeats": args.repeats, "load_average_before": load_before,
               "load_average_now": os.getloadavg(), "cpu_count": os.cpu_count(),
               "pyabc": python, "results": results}
        out_file.write_text(json.dumps(doc, indent=1))
        return doc
    for case in cases:
        for d in dims:
            dabc_parts(case, 200, d)  # first calls (imports, allocations) outside the timing
            if not args.no_whole:
                dabc_whole(case, 200, d)
            last_pyabc = {}  # what -> (n, seconds) at the largest size pyABC ran
            failed = {}  # what -> why pyABC failed at a smaller size (never tried again)
            rows_by_n = {}
            for n in sizes:
                reps = {"parts": [], "whole": [], "pyabc_parts": [], "pyabc_whole": []}
                skip = {}
                for what in ("parts", "whole"):
                    prev = last_pyabc.get(what)
                    if what in failed:
                        skip[what] = failed[what]
                        continue
                    if python is None or (what == "whole" and (args.no_whole or
                                                               n > args.pyabc_whole_max)):
                        skip[what] = "not run"
                    elif prev is not None:
                        guess = prev[1] * (n / prev[0]) ** 2
                        if guess > args.pyabc_budget:
                            skip[what] = (f"impractical: about {guess:.0f} s extrapolated "
                                          f"(n^2) from {prev[1]:.1f} s at n={prev[0]}")
                for _ in range(args.repeats):
                    reps["parts"].append(dabc_parts(case, n, d))
                    if what_ok(skip, "parts"):
                        r = _pyabc(python, "parts", case, n, d, 4 * args.pyabc_budget)
                        if "error" in r:
                            skip["parts"] = failed["parts"] = f"{r['error']} at n={n}"
                        else:
                            reps["pyabc_parts"].append(r)
                    if not args.no_whole:
                        reps["whole"].append(dabc_whole(case, n, d))
                        if what_ok(skip, "whole"):
                            r = _pyabc(python, "whole", case, n, d, 4 * args.pyabc_budget)
                            if "error" in r:
                                skip["whole"] = failed["whole"] = f"{r['error']} at n={n}"
                            else:
                                reps["pyabc_whole"].append(r)
                row = {"case": case, "n": n, "d": d}
                for k in ("fit_s", "rvs_s", "pdf_s", "prior_s", "weights_s", "engine_s"):
                    row[f"dabc_{k[:-2]}_per_particle_s"] = _median(reps["parts"], k) / n
                if reps["whole"]:
                    row["dabc_generation_per_particle_s"] = _median(reps["whole"], "whole_s") / n
                    row["dabc_generation_simulations"] = reps["whole"][0]["simulations"]
                    # both generations in this process's CPU time (wall time above): the
                    # figure to compare when the machine is loaded
                    row["dabc_run_cpu_per_particle_s"] = _median(reps["whole"], "run_cpu_s") / n
                if reps["pyabc_parts"]:
                    tot = [r["fit_s"] + r["rvs_s"] + r["pdf_s"] for r in reps["pyabc_parts"]]
                    row["pyabc_fit_rvs_pdf_per_particle_s"] = statistics.median(tot) / n
                    for k in ("fit_s", "rvs_s", "pdf_s"):
                        row[f"pyabc_{k[:-2]}_per_particle_s"] = _median(reps["pyabc_parts"],
                                                                         k) / n
                    last_pyabc["parts"] = (n, statistics.median(tot))
                    dabc_same = (row["dabc_fit_per_particle_s"] + row["dabc_rvs_per_particle_s"]
                                 + row["dabc_pdf_per_particle_s"])
                    row["pyabc_over_dabc_fit_rvs_pdf"] = (row["pyabc_fit_rvs_pdf_per_particle_s"]
                                                          / dabc_same)
                elif "parts" in skip:
                    row["pyabc_parts"] = skip["parts"]
                if reps["pyabc_whole"]:
                    sec = _median(reps["pyabc_whole"], "whole_s")
                    row["pyabc_generation_per_particle_s"] = sec / n
                    last_pyabc["whole"] = (n, sec)
                    if "dabc_generation_per_particle_s" in row:
                        per = row["dabc_generation_per_particle_s"]
                        row["pyabc_over_dabc_generation"] = sec / n / per
                elif "whole" in skip:
                    row["pyabc_whole"] = skip["whole"]
                rows_by_n[n] = row
                results.append(row)
                save(False)
                print(json.dumps(row), file=sys.stderr, flush=True)
            lo, hi = rows_by_n[min(sizes)], rows_by_n[max(sizes)]
            growth = {"case": case, "d": d, "growth_from": min(sizes), "growth_to": max(sizes)}
            for key in ("dabc_engine_per_particle_s", "dabc_pdf_per_particle_s",
                        "dabc_generation_per_particle_s", "dabc_run_cpu_per_particle_s",
                        "pyabc_fit_rvs_pdf_per_particle_s"):
                if key in lo and key in hi:
                    growth[key.replace("_per_particle_s", "_growth")] = hi[key] / lo[key]
            results.append(growth)
            print(json.dumps(growth), file=sys.stderr, flush=True)
    doc = save(True)
    print(json.dumps(doc, indent=1))
    return doc


def what_ok(skip: dict, what: str) -> bool:
    return what not in skip


if __name__ == "__main__":
    if "--pyabc-side" not in sys.argv:  # the dabc side: this repository's src first
        sys.path.insert(0, str(HERE.parent / "src"))
    else:  # benchmarks/ holds modules that would shadow packages pyABC imports
        sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]
    main()
