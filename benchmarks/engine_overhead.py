"""The engine's own cost per evaluation on the `fast` workload, and where it goes; prints JSON.

    python benchmarks/engine_overhead.py [--n 20000] [--repeats 5] [--profile]

One generation's work (generation 1: a fitted MultivariateNormalTransition, the `fast`
model and the default distance) evaluates ``n`` ids in tasks of 2000, under stream scheme 1
(dabc 0.1: one SeedSequence + PCG64 per evaluation) and scheme 2 (Philox re-keyed per
evaluation, proposals per block of 256 ids; scheme 3, the default, evaluates as scheme 2),
interleaved, beside a bare Python loop that calls the same model and distance. The
engine's cost is the difference. Times are CPU
seconds of this process (``time.process_time``), the minimum over the repeats, so that
other processes on a shared machine disturb them less; they still scale with the CPU.
``--profile`` adds the top functions of a cProfile of one end-to-end `fast` run
(single-core sampler, SQLite history) under each scheme (3: the weights' factored density).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dabc  # noqa: E402
from dabc.engine.model import Model, StatLayout  # noqa: E402
from dabc.engine.work import _DYN, _DYN_PROPOSAL, PROPOSAL_BLOCK, GenerationWork, Streams  # noqa: E402
from dabc.samplers.base import Task  # noqa: E402
from dabc.samplers.worker import call_model  # noqa: E402
from workloads import WORKLOADS, make_model  # noqa: E402


def work(scheme: int, t: int = 1) -> GenerationWork:
    """Generation t of the fast workload's run, as the engine builds it."""
    layout = StatLayout({"y": 2.0})
    dist = dabc.PNormDistance()
    dist.initialize(layout)
    prior = dabc.Prior(theta=dabc.RV("uniform", -10, 20))
    transitions = None
    if t:
        tr = dabc.MultivariateNormalTransition()
        rng = np.random.default_rng(0)
        tr.fit(rng.normal(2, 1, size=(1000, 1)), np.full(1000, 1e-3))
        transitions = [tr]
    return GenerationWork(t, 1, [Model(make_model(0.0))], [prior], layout, dist, 1.0, [1.0],
                          transitions, stream_scheme=scheme)


def bare(n: int) -> float:
    """Microseconds per iteration of a bare loop calling the model and the distance."""
    f, rng, obs = make_model(0.0), np.random.default_rng(0), 2.0
    t0 = time.process_time()
    for _ in range(n):
        out = f({"theta": 0.5}, rng)
        abs(out["y"] - obs)
    return (time.process_time() - t0) / n * 1e6


def per_eval(scheme: int, n: int) -> float:
    w = work(scheme)
    t0 = time.process_time()
    for s in range(0, n, 2000):
        w.run(Task("ids", s, s + 2000))
    return (time.process_time() - t0) / n * 1e6


def parts(number: int = 20000) -> dict:
    """Scheme 2's pieces, each timed alone (microseconds per evaluation)."""
    def t(f, k=number):
        return round(min(timeit.repeat(f, number=k, repeat=5, timer=time.process_time))
                     / k * 1e6, 3)

    w = work(2)
    ev, props = Streams(w._key(_DYN)), Streams(w._key(_DYN_PROPOSAL))
    fn = w.models[0].fn
    out = fn({"theta": 0.5}, ev.at(1))
    keyset, outs = {"y"}, [out] * 2000
    batch = w.run(Task("ids", 0, 2000))
    model = t(lambda: fn({"theta": 0.5}, ev.rng))

    def block():
        w.__dict__.pop("_proposal_cache", None)
        w._block_proposals(3, props)

    return {
        "scheme1_stream_seedsequence_pcg64": t(lambda: dabc.engine.work.stream(1, 1, 0, 7)),
        "rekey_philox_stream": t(lambda: ev.at(7)),
        "proposal_block_per_eval": round(t(block, 500) / PROPOSAL_BLOCK, 3),
        "params_dict": t(lambda: {"theta": 0.5}),
        "model_call": model,
        "call_model_wrapper": round(t(lambda: call_model(fn, {"theta": 0.5}, ev.rng)) - model,
                                    3),
        "output_keys_check": t(lambda: type(out) is not dict or out.keys() != keyset),
        "stats_matrix_per_eval": round(t(lambda: np.array([[o["y"]] for o in outs],
                                                          dtype=float), 50) / 2000, 3),
        "distance_and_acceptance_per_eval": round(t(lambda: w._judge(batch), 200) / 2000, 3),
    }


def profile(scheme: int, top: int = 12) -> dict:
    """cProfile of one end-to-end fast run: wall time per evaluation and the top functions."""
    pop, gens, _ = WORKLOADS["fast"]
    prior = dabc.Prior(theta=dabc.RV("uniform", -10, 20))
    with tempfile.TemporaryDirectory() as tmp:
        abc = dabc.ABCSMC(make_model(0.0), prior, population_size=pop,
                          sampler=dabc.SingleCoreSampler(), seed=1, progress=False)
        abc._stream_scheme = scheme
        prof = cProfile.Profile(time.process_time)
        t0 = time.process_time()
        prof.enable()
        h = abc.run({"y": 2.0}, db=f"sqlite:///{os.path.join(tmp, 'p.db')}",
                    max_generations=gens)
        prof.disable()
        cpu = time.process_time() - t0
        evaluated = int(h.get_all_populations().n_evaluated.sum())
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    rows = []
    for (file, line, name), (_, nc, tt, ct, _) in sorted(st.stats.items(),
                                                         key=lambda kv: -kv[1][2])[:top]:
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls": nc,
                     "tottime_us_per_eval": round(tt / evaluated * 1e6, 2),
                     "cumtime_us_per_eval": round(ct / evaluated * 1e6, 2)})
    return {"scheme": scheme, "evaluated": evaluated,
            "cpu_us_per_eval_under_profiler": round(cpu / evaluated * 1e6, 1), "top": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    res: dict[str, list[float]] = {"bare": [], "scheme1": [], "scheme2": []}
    for _ in range(args.repeats):
        res["bare"].append(bare(args.n))
        for scheme in (1, 2):
            res[f"scheme{scheme}"].append(per_eval(scheme, args.n))
    m = {k: min(v) for k, v in res.items()}
    out = {"n": args.n, "repeats": args.repeats, "load": os.getloadavg(),
           "bare_model_and_distance_us": round(m["bare"], 2),
           "scheme1_total_us": round(m["scheme1"], 2),
           "scheme2_total_us": round(m["scheme2"], 2),
           "engine_scheme1_us": round(m["scheme1"] - m["bare"], 2),
           "engine_scheme2_us": round(m["scheme2"] - m["bare"], 2),
           "scheme2_parts_us": parts()}
    if args.profile:
        out["profile"] = [profile(1), profile(2), profile(3)]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
