"""The fast evaluation path (issue 14): stream schemes 2 and 3, block proposals, vectorized
distances.

Scheme 2 (``dabc.engine.work``) derives every random number of DYN evaluation ``i`` of
generation ``t`` from ``(seed, t, i)`` through counter-selected Philox streams, and draws the
proposals of each block of 256 ids in one vectorized call. These tests pin the documented
derivation, check that task boundaries never matter, that failures are reported as on the
scalar path, that stored runs resume under the scheme they started with, and that a
distance marked ``@dabc.vectorized`` gives the same distances as its scalar twin.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import scipy.stats

import dabc
from dabc.engine.model import Model, StatLayout
from dabc.engine.work import PROPOSAL_BLOCK, GenerationWork, stream_key
from dabc.samplers.base import Task
from determinism import assert_same, snapshot

SEED = 4242


def uniform_draw(p, rng):
    return {"y": rng.random()}


def gauss(p, rng):
    return {"y": p["x"] + rng.normal()}


def two_stats(p, rng):
    return {"y": p["x"] + rng.normal(), "z": p["x"] + 0.5 * rng.normal(size=3)}


def _work(fn, t=0, observed=None, transitions=None, scheme=2, distance=None):
    layout = StatLayout(observed or {"y": 0.5})
    dist = distance or dabc.PNormDistance()
    dist.initialize(layout)
    return GenerationWork(t, SEED, [Model(fn)], [dabc.Prior(x=dabc.RV("uniform", -1, 2))],
                          layout, dist, 0.3, [1.0], transitions, stream_scheme=scheme)


def test_scheme2_streams_are_the_documented_philox_streams():
    """Generation 0: block b's proposals from the kind-4 key with counter [0, 0, b, 0] (model
    choice first, then the prior), evaluation i's model stream from the kind-0 key with
    counter [0, 0, i, 0]."""
    work = _work(uniform_draw, t=3)
    batch = work.run(Task("ids", 250, 520))  # spans three proposal blocks
    assert list(batch.ids) == list(range(250, 520))
    for i in (250, 255, 256, 511, 512, 519):
        g = np.random.Generator(np.random.Philox(counter=[0, 0, i, 0],
                                                 key=stream_key(SEED, 3, 0)))
        assert batch.stats[i - 250, 0] == g.random()
    for b in (0, 1, 2):
        g = np.random.Generator(np.random.Philox(counter=[0, 0, b, 0],
                                                 key=stream_key(SEED, 3, 4)))
        g.random(PROPOSAL_BLOCK)  # the model choice
        theta = scipy.stats.uniform(-1, 2).rvs(PROPOSAL_BLOCK, random_state=g)
        lo, hi = max(250, b * PROPOSAL_BLOCK), min(520, (b + 1) * PROPOSAL_BLOCK)
        np.testing.assert_array_equal(batch.theta[lo - 250:hi - 250, 0],
                                      theta[lo - b * PROPOSAL_BLOCK:hi - b * PROPOSAL_BLOCK])
    # another generation, another seed: other streams
    assert not np.array_equal(_work(uniform_draw, t=4).run(Task("ids", 250, 520)).stats,
                              batch.stats)


def _fitted():
    tr = dabc.MultivariateNormalTransition()
    rng = np.random.default_rng(1)
    tr.fit(rng.uniform(-0.9, 0.9, size=(300, 1)), rng.random(300))
    return [tr]


@pytest.mark.parametrize("t", [0, 2])
def test_task_boundaries_and_order_never_change_an_evaluation(t):
    """One task, or many unaligned tasks in any order, on one work object or fresh ones."""
    transitions = None if t == 0 else _fitted()
    whole = _work(two_stats, t, {"y": 0.1, "z": np.zeros(3)}, transitions).run(
        Task("ids", 0, 700))
    cuts = [0, 1, 7, 255, 256, 257, 300, 511, 640, 700]
    pieces = {}
    shared = _work(two_stats, t, {"y": 0.1, "z": np.zeros(3)}, transitions)
    for k, (a, b) in enumerate(reversed(list(zip(cuts, cuts[1:], strict=False)))):
        work = shared if k % 2 else _work(two_stats, t, {"y": 0.1, "z": np.zeros(3)},
                                          transitions)
        pieces[a] = work.run(Task("ids", a, b))
    merged = [pieces[a] for a in sorted(pieces)]
    for f in ("ids", "model", "theta", "stats", "distance", "accepted", "failed"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, f) for p in merged]),
                                      getattr(whole, f), err_msg=f)
    if t:  # proposals stay in the prior's support
        assert np.all(np.abs(whole.theta) <= 1)


def flaky(p, rng):
    if p["x"] > 0.8:
        raise RuntimeError("x too large")
    if p["x"] < -0.9:
        return {"y": float("nan")}
    return {"y": np.float64(p["x"] + rng.normal())}


def test_failures_are_reported_per_evaluation_as_on_the_scalar_path():
    batch = _work(flaky).run(Task("ids", 0, 600))
    x = batch.theta[:, 0]
    np.testing.assert_array_equal(batch.failed, (x > 0.8) | (x < -0.9))
    assert not batch.accepted[batch.failed].any() and batch.fatal is None
    first = int(np.flatnonzero(batch.failed)[0])
    assert batch.first_failure.startswith(f"(evaluation {first}) model 'flaky' ")
    assert ("raised with parameters {'x': " in batch.first_failure
            and "RuntimeError: x too large" in batch.first_failure) or \
        "returned NaN or infinity for ['y'] with parameters" in batch.first_failure
    ok = ~batch.failed
    np.testing.assert_allclose(batch.distance[ok], np.abs(batch.stats[ok, 0] - 0.5))


def wrong_keys(p, rng):
    return {"w": 1.0}


def test_wrong_statistics_stop_the_run_with_the_layout_message(tmp_path):
    batch = _work(wrong_keys).run(Task("ids", 0, 10))
    assert "returned statistics ['w'] but observed has ['y']" in batch.fatal
    with pytest.raises(dabc.InputError, match="returned statistics"):
        dabc.ABCSMC(wrong_keys, dabc.Prior(x=dabc.RV("norm", 0, 1)), population_size=20,
                    sampler=dabc.SingleCoreSampler(), progress=False).run(
                        {"y": 0.0}, db=f"sqlite:///{tmp_path / 'k.db'}", max_generations=1)


def _run(db, scheme=None, gens=3, model=gauss, **kw):
    abc = dabc.ABCSMC(model, dabc.Prior(x=dabc.RV("norm", 0, 1)), population_size=150,
                      sampler=dabc.SingleCoreSampler(), seed=SEED, progress=False, **kw)
    if scheme is not None:
        abc._stream_scheme = scheme
    return abc.run({"y": 0.7}, db=f"sqlite:///{db}", max_generations=gens)


def test_new_runs_store_scheme_3_and_resume_under_it(tmp_path):
    h = _run(tmp_path / "a.db", gens=2)
    assert json.loads(h.config)["stream_scheme"] == 3
    resumed = dabc.ABCSMC.load(f"sqlite:///{tmp_path / 'a.db'}", sampler=dabc.SingleCoreSampler(),
                               progress=False).run(max_generations=4)
    assert_same(snapshot(resumed), snapshot(_run(tmp_path / "b.db", gens=4)))


def test_a_scheme_2_run_resumes_with_the_unfactored_density(tmp_path):
    """Scheme 3 changes only the weights' arithmetic: the same particles as scheme 2, weights
    within rounding, not the same bits; a scheme-2 run resumes bit-identically to an
    uninterrupted scheme-2 run."""
    _run(tmp_path / "old.db", scheme=2, gens=2)
    abc = dabc.ABCSMC.load(f"sqlite:///{tmp_path / 'old.db'}", sampler=dabc.SingleCoreSampler(),
                           progress=False)
    assert abc._stream_scheme == 2
    resumed = snapshot(abc.run(max_generations=3))
    ref2 = snapshot(_run(tmp_path / "ref2.db", scheme=2, gens=3))
    assert_same(resumed, ref2)
    ref3 = snapshot(_run(tmp_path / "ref3.db", gens=3))
    w2, w3 = ref2["arrays"][1][0]["weight"], ref3["arrays"][1][0]["weight"]
    np.testing.assert_array_equal(ref2["arrays"][1][0]["theta"], ref3["arrays"][1][0]["theta"])
    np.testing.assert_allclose(w3, w2, rtol=1e-9)
    assert not np.array_equal(w2, w3)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_the_factored_density_is_the_mixture_density(dim):
    """Against scipy's Gaussian density summed over the centres, and the unfactored form;
    far-off points (where every kernel underflows without the row shift) included."""
    from dabc.engine.transition import _mixture_logpdf
    rng = np.random.default_rng(dim)
    centres = rng.normal(size=(300, dim)) + 5.0
    w = rng.random(300)
    w /= w.sum()
    chol = np.linalg.cholesky(np.cov(centres.T).reshape(dim, dim) * 0.1)
    x = np.vstack([rng.normal(size=(200, dim)) + 5.0, np.full((2, dim), 60.0)])
    got = _mixture_logpdf(x, centres, np.log(w), chol, factored=True)
    old = _mixture_logpdf(x, centres, np.log(w), chol)
    cov = chol @ chol.T
    dens = np.array([scipy.stats.multivariate_normal(c, cov).logpdf(x) for c in centres])
    want = scipy.special.logsumexp(dens + np.log(w)[:, None], axis=0)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(got, old, rtol=1e-12, atol=1e-11)


_THREADS_SCRIPT = """
import hashlib, numpy as np, dabc
from dabc.engine.transition import _mixture_logpdf
rng = np.random.default_rng(3)
out = []
for n, d in [(1000, 1), (3000, 2), (2000, 5), (10000, 3)]:
    x, c = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    w = rng.random(n)
    chol = np.linalg.cholesky(np.cov(c.T).reshape(d, d)) * 0.3
    for f in (False, True):
        out.append(_mixture_logpdf(x, c, np.log(w / w.sum()), chol, factored=f).tobytes())
h = dabc.ABCSMC(lambda p, rng: {"y": p["x"] + rng.normal(size=2)},
                dabc.Prior(x=dabc.RV("norm", 0, 1)), population_size=2000, seed=5,
                sampler=dabc.SingleCoreSampler(), progress=False).run(
    {"y": [0.3, 0.4]}, db="sqlite:///" + __import__("sys").argv[1], max_generations=2)
df, w = h.get_distribution(t=1)
out.append(df.to_numpy().tobytes() + np.asarray(w).tobytes())
print(hashlib.sha256(b"".join(out)).hexdigest())
"""


def test_results_do_not_depend_on_the_number_of_blas_threads(tmp_path):
    """The mixture densities (both forms) and a whole run give the same bits with 1 and 2
    OpenBLAS threads (each in its own interpreter: the count is read at import)."""
    import os
    import subprocess
    import sys
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT,
                              str(tmp_path / f"t{threads}.db")], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_a_stored_run_without_the_field_resumes_under_scheme_1(tmp_path):
    """A configuration written before the field existed is scheme 1 (dabc 0.1.0's pickled
    runs too: tests/test_stored_runs.py); it resumes bit-identically to an uninterrupted
    scheme-1 run, whose populations differ from scheme 2's."""
    db = tmp_path / "old.db"
    _run(db, scheme=1, gens=2)
    con = sqlite3.connect(db)
    (config,) = con.execute("SELECT config FROM dabc_runs").fetchone()
    doc = json.loads(config)
    assert doc.pop("stream_scheme") == 1
    con.execute("UPDATE dabc_runs SET config = ?", (json.dumps(doc).encode(),))
    con.commit()
    con.close()
    abc = dabc.ABCSMC.load(f"sqlite:///{db}", sampler=dabc.SingleCoreSampler(), progress=False)
    assert abc._stream_scheme == 1
    resumed = snapshot(abc.run(max_generations=4))
    assert_same(resumed, snapshot(_run(tmp_path / "ref1.db", scheme=1, gens=4)))
    scheme3 = snapshot(_run(tmp_path / "ref3.db", gens=4))
    assert not np.array_equal(resumed["arrays"][0][0]["theta"], scheme3["arrays"][0][0]["theta"])


def test_an_unknown_scheme_is_refused_at_load(tmp_path):
    db = tmp_path / "future.db"
    _run(db, gens=1)
    con = sqlite3.connect(db)
    (config,) = con.execute("SELECT config FROM dabc_runs").fetchone()
    doc = json.loads(config)
    doc["stream_scheme"] = 99
    con.execute("UPDATE dabc_runs SET config = ?", (json.dumps(doc).encode(),))
    con.commit()
    con.close()
    with pytest.raises(dabc.InputError, match="random stream scheme 99.*upgrade dabc"):
        dabc.ABCSMC.load(f"sqlite:///{db}")


# --- distances on blocks ------------------------------------------------------------------
def gap(x, x0):
    return abs(x["y"] - x0["y"])


@dabc.vectorized
def vgap(x, x0):
    return np.abs(x["y"] - x0["y"])


def gap2(x, x0):
    return abs(x["y"] - x0["y"]) + float(np.abs(x["z"] - x0["z"]).sum())


@dabc.vectorized
def vgap2(x, x0):
    assert x["y"].ndim == 1 and x["z"].shape == (len(x["y"]), 3)
    return np.abs(x["y"] - x0["y"]) + np.abs(x["z"] - x0["z"]).sum(axis=1)


@dabc.vectorized
def vmodel(p, rng):
    n = len(p["x"])
    return {"y": p["x"] + rng.normal(size=n), "z": p["x"][:, None] + 0.5 * rng.normal(size=(n, 3))}


@pytest.mark.parametrize("model", [gauss, vmodel], ids=["plain", "vectorized"])
def test_a_vectorized_distance_gives_the_scalar_distances(model, tmp_path):
    obs = {"y": 0.7} if model is gauss else {"y": 0.7, "z": np.full(3, 0.7)}
    scalar, vec = (gap, vgap) if model is gauss else (gap2, vgap2)
    runs = []
    for name, d in (("s", scalar), ("v", vec)):
        abc = dabc.ABCSMC(model, dabc.Prior(x=dabc.RV("norm", 0, 1)), distance=d,
                          population_size=120, sampler=dabc.SingleCoreSampler(), seed=SEED,
                          progress=False)
        runs.append(snapshot(abc.run(obs, db=f"sqlite:///{tmp_path / name}.db",
                                     max_generations=3)))
    assert_same(runs[1], runs[0], rtol=1e-12)  # sum order may differ in the last bit


def test_scalar_distance_rows_match_the_dict_of_the_layout():
    """The scalar path hands each row as a fresh dict of floats, like layout.unflatten."""
    seen = []

    def spy(x, x0):
        seen.append(x)
        return abs(x["y"] - x0["y"])

    layout = StatLayout({"y": 0.5})
    d = dabc.FunctionDistance(spy)
    d.initialize(layout)
    stats = np.array([[0.0], [2.0], [0.25]])
    np.testing.assert_array_equal(d.batch(stats, layout.observed), [0.5, 1.5, 0.25])
    assert seen == [layout.unflatten(r) for r in stats] and len({id(x) for x in seen}) == 3
    assert all(type(x["y"]) is float for x in seen)


@pytest.mark.parametrize("value, match", [(float("nan"), "returned nan"), (-1.0, "returned -1.0"),
                                          (None, "returned None"), ("far", "returned 'far'")])
def test_scalar_distance_values_are_still_checked(value, match):
    layout = StatLayout({"y": 0.5})
    d = dabc.FunctionDistance(lambda x, x0: value)
    d.initialize(layout)
    with pytest.raises(dabc.InputError, match=match):
        d.batch(np.array([[0.0], [1.0]]), layout.observed)


def test_a_vectorized_distance_of_the_wrong_shape_is_an_input_error(tmp_path):
    @dabc.vectorized
    def total(x, x0):
        return float(np.abs(x["y"] - x0["y"]).sum())  # one number for the whole block

    with pytest.raises(dabc.InputError, match="distance total returned shape"):
        dabc.ABCSMC(gauss, dabc.Prior(x=dabc.RV("norm", 0, 1)), distance=total,
                    population_size=20, sampler=dabc.SingleCoreSampler(), seed=SEED,
                    progress=False).run({"y": 0.0}, db=f"sqlite:///{tmp_path / 'w.db'}",
                                        max_generations=1)


# --- time limits under scheme 2 -------------------------------------------------------------
def hangs_above_097(p, rng):
    """Never returns for x > 0.97 (about 1.5 % of uniform(-1, 1) proposals)."""
    import time

    while p["x"] > 0.97:
        time.sleep(0.02)
    return {"y": p["x"] + rng.normal()}


def test_hung_calls_time_out_and_fail_alone():
    from dabc.samplers.worker import execute

    batch = execute(_work(hangs_above_097), Task("ids", 0, 200), timeout=0.3)
    hung = batch.theta[:, 0] > 0.97
    assert 1 <= hung.sum() <= 10
    np.testing.assert_array_equal(batch.failed, hung)
    assert f"(evaluation {int(np.flatnonzero(hung)[0])}) model 'hangs_above_097': simulation " \
        "exceeded simulation_timeout=0.3 s with parameters {'x': 0.9" in batch.first_failure
    assert np.isfinite(batch.stats[~hung]).all()


@pytest.mark.timeout(120)
def test_timeouts_give_the_same_population_on_one_core_and_on_workers(tmp_path):
    prior = dabc.Prior(x=dabc.RV("uniform", -1, 2))
    snaps = []
    for name, sampler in (("one", dabc.SingleCoreSampler(simulation_timeout=0.3)),
                          ("two", dabc.MulticoreEvalParallelSampler(2, simulation_timeout=0.3))):
        with sampler:
            abc = dabc.ABCSMC(hangs_above_097, prior, population_size=60, sampler=sampler,
                              seed=SEED, progress=False, max_failure_rate=0.2)
            h = abc.run({"y": 0.5}, db=f"sqlite:///{tmp_path / name}.db", max_generations=1)
        snaps.append(snapshot(h))
    assert_same(snaps[1], snaps[0])


# -- shortcuts that must give the same bits as the code they shortcut -----------------------

@pytest.mark.parametrize("kind", ["even", "spiky", "zeros", "one"])
def test_picking_by_the_guide_table_is_searchsorted(kind):
    """Transition._pick_many equals searchsorted(cum, u, "right") for every u, the cumulative
    weights themselves and their neighbours included."""
    rng = np.random.default_rng(len(kind))
    for n in (1, 7, 256, 1000, 5000):
        w = {"even": np.ones(n), "spiky": rng.random(n) ** 30,
             "zeros": np.where(rng.random(n) < 0.6, 0.0, rng.random(n)),
             "one": np.eye(1, n, n // 2)[0]}[kind]
        if not w.sum():
            w[0] = 1.0
        kernel = dabc.MultivariateNormalTransition()
        kernel.fit(rng.normal(size=(n, 1)), w)
        cum = kernel.cum
        u = np.concatenate([rng.random(4000), cum[:-1], np.nextafter(cum[:-1], 0.0),
                            [0.0, np.nextafter(1.0, 0.0)]])
        u = u[(u >= 0) & (u < 1)]
        np.testing.assert_array_equal(kernel._pick_many(u),
                                      np.searchsorted(cum, u, side="right"))


def test_the_guide_table_is_rebuilt_after_a_fit_and_never_pickled():
    import pickle
    rng = np.random.default_rng(0)
    kernel = dabc.MultivariateNormalTransition()
    kernel.fit(rng.normal(size=(50, 1)), np.ones(50))
    kernel._pick_many(rng.random(10))
    assert "_guide" not in pickle.loads(pickle.dumps(kernel)).__dict__
    w = np.zeros(50)
    w[-1] = 1.0
    kernel.fit(rng.normal(size=(50, 1)), w)  # all weight on the last particle
    assert (kernel._pick_many(rng.random(100)) == 49).all()


@pytest.mark.parametrize("args", [(-10, 20), (0, 1), (0.3, 1e-3), (-1e5, 3.7)])
def test_the_uniform_prior_density_is_scipys_to_the_bit(args):
    rv = dabc.RV("uniform", *args)
    rng = np.random.default_rng(1)
    lo, hi = rv.lower, rv.upper
    x = np.concatenate([rng.uniform(lo - 1, hi + 1, 5000),
                        [lo, hi, np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf),
                         np.nan, np.inf, -np.inf]])
    np.testing.assert_array_equal(rv.logpdf(x), rv.frozen.logpdf(x))
    assert rv._uniform is not None  # the shortcut was taken
    assert np.asarray(rv.logpdf(np.float64(lo))) == rv.frozen.logpdf(lo)  # 0-d: scipy's


@pytest.mark.parametrize("transitions", [False, True])
def test_one_model_block_proposals_are_the_general_ones(transitions):
    """_propose_block_one_model draws as _propose_block_any does (rejected proposals,
    retried, included: the prior is narrow against the kernel)."""
    work = _work(gauss, t=1 if transitions else 0)
    if transitions:
        rng = np.random.default_rng(3)
        kernel = dabc.MultivariateNormalTransition(scaling=3.0)
        kernel.fit(rng.uniform(-1, 1, size=(200, 1)), rng.random(200))
        work.transitions = [kernel]
    for b in range(20):
        fast = work._propose_block_one_model(256, np.random.default_rng(b))
        general = work._propose_block_any(256, np.random.default_rng(b))
        for a, g in zip(fast, general, strict=True):
            np.testing.assert_array_equal(a, g)
            assert a.dtype == g.dtype


def test_a_frozen_uniform_prior_takes_the_same_shortcut():
    import scipy.stats as st
    prior = dabc.Prior(x=st.uniform(loc=-2, scale=5))
    rv = prior.dists["x"]
    x = np.linspace(-3, 4, 101)
    np.testing.assert_array_equal(rv.logpdf(x), st.uniform(loc=-2, scale=5).logpdf(x))
    assert rv._uniform is not None
