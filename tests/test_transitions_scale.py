"""Transitions at scale: KD-tree neighbours, exact mixture densities, bounded mixture centres.

The proposal density is the mixture sum_j w_j N(x; c_j, S_j) over the centres the transition
keeps (every particle up to ``max_centres``, a systematic resample of ``max_centres`` beyond):
it must equal that sum computed directly, term by term, to 1e-12. Neighbours of
LocalTransition come from a KD-tree and must be the brute-force nearest neighbours. Posteriors
from runs whose kernels use fewer centres than particles must still match the exact answers
(the tolerances of tests/test_known_answers.py). Speed is measured by benchmarks/growth.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import dabc
from dabc.engine.transition import _centres, _nearest, _systematic_counts
from test_known_answers import PRIOR_A, SEEDS, check_single, gauss_1_vec, run

KINDS = {"mvn": dabc.MultivariateNormalTransition, "local": dabc.LocalTransition}


def cloud(n, d, seed=0, loc=0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    theta = rng.normal(size=(n, d)) @ a.T + loc
    w = rng.uniform(0.2, 1.8, size=n)
    return theta, w / w.sum()


def factors(t) -> np.ndarray:
    return t.chols if hasattr(t, "chols") else np.repeat(t.chol[None], len(t.w), axis=0)


def direct_logpdf(t, x) -> np.ndarray:
    """log sum_j w_j N(x; c_j, L_j L_j^T), one scipy density per centre."""
    chols = factors(t)
    dens = np.zeros(len(x))
    for j in range(len(t.w)):
        dens += t.w[j] * multivariate_normal.pdf(x, t.theta[j], chols[j] @ chols[j].T)
    return np.log(dens)


# -- KD-tree neighbours -----------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 5])
def test_kdtree_neighbours_are_the_brute_force_neighbours(d):
    theta, _ = cloud(300, d, seed=d)
    k = 17
    got = _nearest(theta, k)
    d2 = ((theta[:, None, :] - theta[None, :, :]) ** 2).sum(axis=2)  # all pairs, test only
    want = np.argsort(d2, axis=1, kind="stable")[:, :k]
    assert got.shape == (300, k)
    assert [set(r) for r in got] == [set(r) for r in want]
    assert (got[:, 0] == np.arange(300)).all()  # each particle is its own nearest


def test_local_covariances_are_those_of_the_brute_force_neighbours():
    theta, w = cloud(200, 3, seed=5)
    t = dabc.LocalTransition(k=12, scaling=1.3)
    t.fit(theta, w)
    d2 = ((theta[:, None, :] - theta[None, :, :]) ** 2).sum(axis=2)
    fallback = np.diag(np.diag(np.cov(theta.T)) + 1e-12)
    for i in (0, 57, 199):
        neigh = theta[np.argsort(d2[i])[:12]]
        cov = np.cov(neigh.T) * 1.3**2 + 1e-10 * fallback
        np.testing.assert_allclose(t.chols[i] @ t.chols[i].T, cov, rtol=1e-9, atol=1e-12)


# -- exact densities ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("n,max_centres", [(400, 1000), (3000, 250)])
def test_logpdf_is_the_direct_mixture_sum(kind, d, n, max_centres):
    """Exact to 1e-12, also far from the origin (the sums are centred first)."""
    theta, w = cloud(n, d, seed=n + d, loc=1e4)
    t = KINDS[kind](max_centres=max_centres)
    t.fit(theta, w)
    assert len(t.w) == n if n <= max_centres else 100 < len(t.w) <= max_centres
    rng = np.random.default_rng(1)
    x = np.concatenate([t.propose_many(60, rng), theta[:5] + 3 * theta.std(axis=0)])
    np.testing.assert_allclose(t.logpdf(x), direct_logpdf(t, x), rtol=0, atol=1e-12)


def test_logpdf_per_centre_path_in_blocks():
    """Many centres x dimensions: the per-centre density is computed in several row blocks."""
    theta, w = cloud(900, 6, seed=2)
    t = dabc.LocalTransition(k=30)
    t.fit(theta, w)
    x = t.propose_many(2000, np.random.default_rng(3))  # 2**21 // (900 * 6) = 388 rows a block
    got = t.logpdf(x)
    sel = np.r_[0:3, 386:392, 1995:2000]
    np.testing.assert_allclose(got[sel], direct_logpdf(t, x[sel]), rtol=0, atol=1e-12)


# -- centres ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_up_to_max_centres_nothing_changes(kind):
    """Populations up to max_centres: every particle a centre, bit for bit as with None."""
    theta, w = cloud(500, 2, seed=8)
    a, b = KINDS[kind](max_centres=500), KINDS[kind](max_centres=None)
    a.fit(theta, w)
    b.fit(theta, w)
    assert np.array_equal(a.theta, theta) and np.array_equal(a.w, b.w)
    xa = a.propose_many(100, np.random.default_rng(4))
    xb = b.propose_many(100, np.random.default_rng(4))
    assert np.array_equal(xa, xb)
    assert np.array_equal(a.logpdf(xa), b.logpdf(xb))


def test_centres_are_a_systematic_resample():
    theta, w = cloud(20_000, 2, seed=9)
    m = 700
    counts = _systematic_counts(w, m)
    assert counts.sum() == m
    assert (np.abs(counts - w * m) < 1).all()  # floor or ceil of the expected count
    c, cw = _centres(theta, w, m)
    keep = counts > 0
    assert np.array_equal(c, theta[keep]) and np.array_equal(cw, counts[keep] / m)
    # so the centres' mean is the population's within a few resampling standard errors
    mean = w @ theta
    sd = np.sqrt(w @ (theta - mean) ** 2)
    assert (np.abs(cw @ c - mean) < 4 * sd / np.sqrt(m)).all()


def test_mvn_bandwidth_uses_the_centres_and_the_whole_population_covariance():
    theta, w = cloud(5000, 2, seed=10)
    t = dabc.MultivariateNormalTransition(max_centres=400)
    t.fit(theta, w)
    n_eff = 1 / (t.w**2).sum()
    assert n_eff <= 400
    factor = (4 / 4) ** (1 / 6) * n_eff ** (-1 / 6)
    mean = w @ theta
    cov = (theta - mean).T @ ((theta - mean) * w[:, None]) / (1 - (w**2).sum())
    np.testing.assert_allclose(t.cov, cov * factor**2, rtol=1e-10)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "1000"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_max_centres_must_be_a_positive_int(kind, bad):
    with pytest.raises(dabc.InputError, match="max_centres must be a positive int or None"):
        KINDS[kind](max_centres=bad)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_max_centres_is_part_of_the_config(kind):
    t = KINDS[kind](max_centres=123)
    assert t.get_config()["max_centres"] == 123
    assert type(t)(**t.get_config()).max_centres == 123


def test_an_object_pickled_without_max_centres_uses_every_particle():
    """Transitions stored as code by an older dabc have no max_centres attribute."""
    t = dabc.MultivariateNormalTransition()
    del t.max_centres
    theta, w = cloud(1500, 1, seed=11)
    t.fit(theta, w)
    assert len(t.theta) == 1500


# -- known answers with fewer centres than particles ---------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_posterior_with_fewer_centres_than_particles(kind, seed, tmp_path):
    """N = 1000 particles, kernels on 150 resampled centres: still the exact ABC posterior."""
    h = run(gauss_1_vec, PRIOR_A, seed, tmp_path, {"y": 1.0},
            transition=KINDS[kind](max_centres=150), minimum_epsilon=0.0, max_generations=6)
    assert check_single(h, 0, 1, 1, 1.0, f"(a) {kind}, 150 centres") < 0.2
