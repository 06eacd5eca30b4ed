"""dabc.viz: the weighted numbers against known answers, and every plot function on real runs.

- :mod:`dabc.viz.weighted`: Kish's ESS, the bandwidth rules against their formulas, the
  weighted 95 % interval and the weighted KDE of importance-weighted Gaussian draws against
  the known target, with tolerances from the effective sample size (several seeds), and the
  binned large-sample path against exact evaluation (the bounds the module docstring states).
- The plots: each function on a one-model and a two-model run (tests/viz_runs.py; real
  ABCSMC runs into SQLite, made once per module), checking the data it drew against
  History; the list-of-Histories form, ``ax=`` reuse and the errors for bad input.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, QuadMesh  # noqa: E402

import dabc  # noqa: E402
import dabc.viz as viz  # noqa: E402
from dabc.storage import weighted_quantile  # noqa: E402
from dabc.viz import weighted as W  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import viz_runs  # noqa: E402

SEEDS = [1, 2, 3]
TARGET_M, TARGET_S, PROPOSAL_S = 1.0, 0.7, 3.0


def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def importance_sample(seed: int, n: int = 20_000):
    """Draws from N(0, 3) weighted to the target N(1, 0.7): (x, unnormalised weights)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, PROPOSAL_S, n)
    logw = -0.5 * ((x - TARGET_M) / TARGET_S) ** 2 + 0.5 * (x / PROPOSAL_S) ** 2
    return x, np.exp(logw - logw.max())


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- the numbers -------------------------------------------------------------------------
def test_ess_of_uniform_and_known_weights():
    for n in (1, 7, 1000):
        assert W.effective_sample_size(np.full(n, 3.5)) == pytest.approx(n, rel=1e-12)
    # p = (1, 1, 2) / 4: 1 / sum p^2 = 16 / 6, whatever the scale
    assert W.effective_sample_size([1, 1, 2]) == pytest.approx(16 / 6, rel=1e-12)
    assert W.effective_sample_size([10, 10, 20]) == pytest.approx(16 / 6, rel=1e-12)
    assert W.effective_sample_size([0, 0, 5, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [[], [1, -1], [0, 0], [1, np.nan], [[1, 2]]])
def test_bad_weights_are_refused(bad):
    with pytest.raises(dabc.InputError, match="weights"):
        W.effective_sample_size(bad)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("n", [1.0, 37.5, 1e4])
def test_bandwidth_rules_are_their_formulas(n, d):
    assert W.bandwidth_factor(n, d, "scott") == pytest.approx(n ** (-1 / (d + 4)), rel=1e-14)
    assert W.bandwidth_factor(n, d, "silverman") == pytest.approx(
        (n * (d + 2) / 4) ** (-1 / (d + 4)), rel=1e-14)
    assert W.bandwidth_factor(n, d, 0.3) == 0.3


@pytest.mark.parametrize("rule", ["scot", 0, -1.0, float("nan"), float("inf")])
def test_bad_bandwidth_rule(rule):
    with pytest.raises(dabc.InputError, match="bandwidth must be one of scott, silverman"):
        W.bandwidth_factor(10, 1, rule)


@pytest.mark.parametrize("rule", ["scott", "silverman", 0.5])
def test_kde_1d_is_the_kernel_sum_with_the_ess_bandwidth(rule):
    """Small sample, exact path: the estimate is sum_i p_i N(g; x_i, h) with h = factor(ESS)
    times the reliability-weighted sd."""
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=40), rng.uniform(0.1, 1.0, 40)
    p = w / w.sum()
    mean = p @ x
    sd = math.sqrt((p @ (x - mean) ** 2) / (1 - p @ p))
    h = W.bandwidth_factor(1 / (p @ p), 1, rule) * sd
    grid, dens = W.weighted_kde_1d(x, w, -3, 3, 61, bandwidth=rule)
    expected = (_phi((grid[:, None] - x[None, :]) / h) @ p) / h
    np.testing.assert_allclose(dens, expected, rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_weighted_95_interval_of_a_known_gaussian(seed):
    """The weighted interval is m +- 1.96 s within 4 standard errors of a quantile estimated
    from ESS draws; dropping the weights gives the proposal's, far outside."""
    x, w = importance_sample(seed)
    ess = W.effective_sample_size(w)
    assert 2_000 < ess < 20_000
    lo, hi = W.weighted_credible_interval(x, w, 0.95)
    z = 1.959964
    # sd of the p-quantile from n_eff draws: sqrt(p (1 - p) / n_eff) / density there
    se = math.sqrt(0.025 * 0.975 / ess) / (_phi(z) / TARGET_S)
    assert abs(lo - (TARGET_M - z * TARGET_S)) < 4 * se, (lo, se)
    assert abs(hi - (TARGET_M + z * TARGET_S)) < 4 * se, (hi, se)
    ulo, uhi = W.weighted_credible_interval(x, np.ones_like(w), 0.95)
    assert abs(ulo - (TARGET_M - z * TARGET_S)) > 40 * se  # the test can fail
    assert W.weighted_credible_interval(x, w, 0.5)[1] < hi


def test_credible_interval_of_a_discrete_sample_and_bad_level():
    # the docstring's example: each value at the middle of its step of the weighted CDF
    assert W.weighted_credible_interval([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], 0.5) == (1.5, 3.5)
    lo, hi = W.weighted_credible_interval(np.arange(101.0), np.ones(101), 0.9)
    assert lo == pytest.approx(0.05 * 101 - 0.5) and hi == pytest.approx(0.95 * 101 - 0.5)
    # all weight on the values 10 and 20, equally: the median is between them
    lo, hi = W.weighted_credible_interval([0, 10, 20, 30], [0, 1, 1, 0], 0.5)
    assert 10 <= lo < hi <= 20
    for level in (0, 1, 1.5, -0.1):
        with pytest.raises(dabc.InputError, match="level must be between 0 and 1"):
            W.weighted_credible_interval([1.0, 2.0], [1, 1], level)


@pytest.mark.parametrize("seed", SEEDS)
def test_weighted_kde_integrates_to_one_and_matches_the_target(seed):
    """E[KDE(g)] of draws from N(m, s) is N(g; m, sqrt(s^2 + h^2)); the estimate must match
    it within 5 standard errors of a self-normalised importance estimate at every grid
    point, and integrate to 1."""
    x, w = importance_sample(seed, 5_000)
    p = w / w.sum()
    grid, dens = W.weighted_kde_1d(x, w, -6, 8, 141)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-6)
    mean = p @ x
    sd = math.sqrt((p @ (x - mean) ** 2) / (1 - p @ p))
    h = W.bandwidth_factor(1 / (p @ p), 1) * sd
    spread = math.hypot(TARGET_S, h)
    expected = _phi((grid - TARGET_M) / spread) / spread
    kernels = _phi((grid[:, None] - x[None, :]) / h) / h
    se = np.sqrt(((kernels - dens[:, None]) ** 2) @ (p * p))
    inner = expected > 1e-3 * expected.max()
    z = np.abs(dens - expected)[inner] / se[inner]
    assert z.max() < 5, z.max()
    assert grid[np.argmax(dens)] == pytest.approx(TARGET_M, abs=0.2)
    # without the weights the estimate is the proposal's: it must fail the same check
    _, flat = W.weighted_kde_1d(x, np.ones_like(w), -6, 8, 141)
    assert (np.abs(flat - expected)[inner] / se[inner]).max() > 20


def _normal_2d(dx, dy, cov):
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy
    return np.exp(-0.5 * q) / (2 * math.pi * math.sqrt(np.linalg.det(cov)))


@pytest.mark.parametrize("seed", SEEDS)
def test_weighted_kde_2d_integrates_to_one_and_matches_the_target(seed):
    """As in 1-d: E[KDE] of draws from N(m, s^2 I) is N(m, s^2 I + H), H the kernel's
    covariance (factor(ESS)^2 times the weighted covariance); within 5 standard errors."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, PROPOSAL_S, (2, 4_000))
    logw = (-0.5 * ((x - TARGET_M) / TARGET_S) ** 2 + 0.5 * (x / PROPOSAL_S) ** 2).sum(0)
    w = np.exp(logw - logw.max())
    gx, gy, dens = W.weighted_kde_2d(x[0], x[1], w, -3, 5, -3, 5, 41, 41)
    assert dens.shape == (41, 41)
    mass = np.trapezoid(np.trapezoid(dens, gx, axis=1), gy)
    assert mass == pytest.approx(1.0, abs=1e-3)
    p = w / w.sum()
    c = x - (x @ p)[:, None]
    kcov = (c * p) @ c.T / (1 - p @ p) * W.bandwidth_factor(1 / (p @ p), 2) ** 2
    X, Y = np.meshgrid(gx, gy)
    expected = _normal_2d(X - TARGET_M, Y - TARGET_M, TARGET_S**2 * np.eye(2) + kcov)
    kernels = _normal_2d(X.ravel()[:, None] - x[0][None, :], Y.ravel()[:, None] - x[1][None, :],
                         kcov)
    se = np.sqrt(((kernels - dens.ravel()[:, None]) ** 2) @ (p * p)).reshape(dens.shape)
    inner = expected > 1e-3 * expected.max()
    z = np.abs(dens - expected)[inner] / se[inner]
    assert z.max() < 5, z.max()


def test_binned_large_samples_match_exact_evaluation(monkeypatch):
    """The bounds of the module docstring: 5e-4 (1-d) and 1e-2 (2-d) of the peak density."""
    x, w = importance_sample(5, 100_000)
    assert len(x) * 200 > W.EXACT_LIMIT  # the default path bins
    _, binned = W.weighted_kde_1d(x, w)
    rng = np.random.default_rng(6)
    xy = rng.normal(0, PROPOSAL_S, (2, 20_000))
    logw = (-0.5 * ((xy - TARGET_M) / TARGET_S) ** 2 + 0.5 * (xy / PROPOSAL_S) ** 2).sum(0)
    w2 = np.exp(logw - logw.max())
    *_, binned2 = W.weighted_kde_2d(xy[0], xy[1], w2, numx=30, numy=30)
    monkeypatch.setattr(W, "EXACT_LIMIT", 10**12)
    _, exact = W.weighted_kde_1d(x, w)
    *_, exact2 = W.weighted_kde_2d(xy[0], xy[1], w2, numx=30, numy=30)
    err1 = np.abs(binned - exact).max() / exact.max()
    err2 = np.abs(binned2 - exact2).max() / exact2.max()
    assert 0 < err1 < 5e-4, err1
    assert 0 < err2 < 1e-2, err2


def test_degenerate_samples_give_a_narrow_spike_not_an_error():
    grid, dens = W.weighted_kde_1d(np.full(10, 2.0), np.ones(10))
    assert grid[np.argmax(dens)] == pytest.approx(2.0, abs=0.01)
    gx, gy, d2 = W.weighted_kde_2d(np.arange(10.0), np.arange(10.0), np.ones(10))
    assert np.all(np.isfinite(d2)) and d2.max() > 0


# --- the runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"one": one-model run, "two": two-model run, "other": a second one-model run in the
    first database, "plain": a small two-model run with a fixed distance, "dying": a
    two-model run whose model 1 dies out}."""
    d = tmp_path_factory.mktemp("viz")
    made = {
        "one": viz_runs.one_model_run(str(d / "one.db")),
        "two": viz_runs.two_model_run(str(d / "two.db")),
        "other": viz_runs.one_model_run(str(d / "one.db"), seed=5, generations=3),
        "plain": viz_runs.two_model_run(str(d / "plain.db"), population=50, generations=2,
                                        adaptive=False),
        "dying": viz_runs.dying_model_run(str(d / "dying.db")),
    }
    yield made
    for h in made.values():
        h.engine.dispose()


KINDS = ["one", "two"]


@pytest.mark.parametrize("kind", KINDS)
def test_plot_epsilons_draws_the_finite_epsilons(runs, kind):
    h = runs[kind]
    ax = viz.plot_epsilons(h)
    (line,) = ax.get_lines()
    g = h.get_all_populations()
    finite = np.isfinite(g["epsilon"].to_numpy())
    assert not finite[0] and finite[1:].all()  # generation 0 accepts everything
    np.testing.assert_array_equal(line.get_xdata(), g["t"].to_numpy()[finite])
    np.testing.assert_array_equal(line.get_ydata(), g["epsilon"].to_numpy()[finite])
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "generation t"
    assert all("10^" not in t.get_text() and "\\times" not in t.get_text()
               for t in ax.get_yticklabels())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("function", "column"), [
    ("plot_sample_numbers", "n_simulations"), ("plot_acceptance_rates", "acceptance_rate"),
    ("plot_effective_sample_sizes", "ess"), ("plot_walltime", "walltime_s")])
def test_trajectories_draw_the_stored_columns(runs, kind, function, column):
    h = runs[kind]
    ax = getattr(viz, function)(h)
    (line,) = ax.get_lines()
    g = h.get_all_populations()
    np.testing.assert_array_equal(line.get_xdata(), g["t"].to_numpy())
    np.testing.assert_allclose(line.get_ydata(), g[column].to_numpy(dtype=float))
    assert ax.get_legend() is None  # one run: nothing to tell apart


def test_stored_ess_is_kish_of_the_stored_weights(runs):
    h = runs["one"]
    ax = viz.plot_effective_sample_sizes(h)
    ess = [W.effective_sample_size(h.get_distribution(t=t)[1]) for t in range(h.n_populations)]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ess, rtol=1e-9)
    rel = viz.plot_effective_sample_sizes(h, relative=True).get_lines()[0].get_ydata()
    n = h.get_all_populations()["n_accepted"].to_numpy()
    np.testing.assert_allclose(rel, np.asarray(ess) / n, rtol=1e-9)
    assert np.all(rel <= 1 + 1e-12)


def test_walltime_units_and_cumulative(runs):
    h = runs["one"]
    wall = h.get_all_populations()["walltime_s"].to_numpy(dtype=float)
    y = viz.plot_walltime(h, unit="m", cumulative=True).get_lines()[0].get_ydata()
    np.testing.assert_allclose(y, np.cumsum(wall) / 60)
    with pytest.raises(dabc.InputError, match="unit must be one of s, m, h, d"):
        viz.plot_walltime(h, unit="weeks")


@pytest.mark.parametrize("kind", KINDS)
def test_model_probabilities_equal_history_and_sum_to_one(runs, kind):
    h = runs[kind]
    ax = viz.plot_model_probabilities(h)
    lines = ax.get_lines()
    probs = h.get_model_probabilities()
    assert len(lines) == len(h.model_names)
    assert [ln.get_label() for ln in lines] == h.model_names
    ys = np.array([ln.get_ydata() for ln in lines])
    for m, ln in enumerate(lines):
        np.testing.assert_array_equal(ln.get_xdata(), probs.index.to_numpy())
        np.testing.assert_array_equal(ln.get_ydata(), probs.iloc[:, m].to_numpy())
    np.testing.assert_allclose(ys.sum(axis=0), 1.0, atol=1e-12)
    if kind == "two":
        assert ys[0, -1] > ys[1, -1]  # sd 1.1 observed: the sd-1 model gains


@pytest.mark.parametrize("kind", KINDS)
def test_credible_intervals_are_the_weighted_quantiles(runs, kind):
    h = runs[kind]
    m = len(h.model_names) - 1  # the two-model run's model 1 has two parameters
    names = h.param_names[m]
    axs = viz.plot_credible_intervals(h, m=m, levels=(0.5, 0.95))
    assert len(axs) == len(names)
    for a, name in zip(axs, names, strict=True):
        assert a.get_ylabel() == name
        for level in (0.5, 0.95):
            (coll,) = [c for c in a.collections if isinstance(c, LineCollection)
                       and c.get_gid() == f"ci 0 {level:g}"]
            segs = coll.get_segments()
            ts = [t for t in range(h.n_populations) if len(h.get_distribution(m, t)[1])]
            assert len(segs) == len(ts)
            for seg, t in zip(segs, ts, strict=True):
                params, w = h.get_distribution(m, t)
                v = params[name].to_numpy()
                assert seg[0][0] == t
                assert seg[0][1] == pytest.approx(weighted_quantile(v, w, (1 - level) / 2))
                assert seg[1][1] == pytest.approx(weighted_quantile(v, w, (1 + level) / 2))
        means = [ln for ln in a.get_lines() if ln.get_marker() == "o"]
        params, w = h.get_distribution(m, ts[-1])
        assert means[0].get_ydata()[-1] == pytest.approx(w @ params[name].to_numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_kde_1d_draws_the_weighted_kde_peaking_near_the_mean(runs, kind):
    h = runs[kind]
    for m in range(len(h.model_names)):
        ax = viz.plot_kde_1d(h, "mu", m=m)
        (line,) = ax.get_lines()
        params, w = h.get_distribution(m)
        v = params["mu"].to_numpy()
        grid, dens = line.get_xdata(), line.get_ydata()
        _, expected = W.weighted_kde_1d(v, w, grid[0], grid[-1], len(grid))
        np.testing.assert_allclose(dens, expected)
        mean = w @ v
        sd = math.sqrt(w @ (v - mean) ** 2)
        assert abs(grid[np.argmax(dens)] - mean) < 0.5 * sd
        assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=0.01)
        assert ax.get_title() == f"{h.model_names[m]}, generation {h.max_t}"
        assert ax.get_xlabel() == "mu"


@pytest.mark.parametrize("kind", KINDS)
def test_kde_2d_draws_the_weighted_density(runs, kind):
    h = runs[kind]
    m = len(h.model_names) - 1
    ax = viz.plot_kde_2d(h, "mu", "sigma", m=m, refval=viz_runs.TRUTH, numx=40, numy=30)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    params, w = h.get_distribution(m)
    edges = mesh.get_coordinates()  # cell edges around the grid points ("nearest" shading)
    cx = (edges[0, 1:, 0] + edges[0, :-1, 0]) / 2
    cy = (edges[1:, 0, 1] + edges[:-1, 0, 1]) / 2
    gx, gy, dens = W.weighted_kde_2d(params["mu"], params["sigma"], w, cx[0], cx[-1], cy[0],
                                     cy[-1], 40, 30)
    np.testing.assert_allclose(gx, cx)
    np.testing.assert_allclose(gy, cy)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(30, 40), dens)
    j, i = np.unravel_index(np.argmax(dens), dens.shape)
    for g, name in ((gx[i], "mu"), (gy[j], "sigma")):
        v = params[name].to_numpy()
        mean = w @ v
        assert abs(g - mean) < 0.75 * math.sqrt(w @ (v - mean) ** 2), name
    (ref,) = [ln for ln in ax.get_lines() if ln.get_label() == "reference"]
    assert (ref.get_xdata()[0], ref.get_ydata()[0]) == (1.0, 1.5)
    assert len(ax.figure.axes) == 2  # the colour bar


@pytest.mark.parametrize("kind", KINDS)
def test_kde_matrix_panels(runs, kind):
    h = runs[kind]
    m = len(h.model_names) - 1
    names = h.param_names[m]
    axs = viz.plot_kde_matrix(h, m=m, refval=viz_runs.TRUTH)
    k = len(names)
    assert axs.shape == (k, k)
    params, w = h.get_distribution(m)
    for i, name in enumerate(names):
        line = axs[i, i].get_lines()[0]
        grid = line.get_xdata()
        _, dens = W.weighted_kde_1d(params[name].to_numpy(), w, grid[0], grid[-1], len(grid))
        np.testing.assert_allclose(line.get_ydata(), dens)
    assert any(isinstance(c, QuadMesh) for c in axs[1, 0].collections)
    (scatter,) = axs[0, 1].collections
    np.testing.assert_allclose(scatter.get_offsets(), params[[names[1], names[0]]].to_numpy())
    assert axs[-1, 0].get_xlabel() == names[0] and axs[-1, 0].get_ylabel() == names[-1]
    assert axs[0, 0].figure.get_suptitle() == f"{h.model_names[m]}, generation {h.max_t}"


@pytest.mark.parametrize("kind", KINDS)
def test_distance_weights(runs, kind):
    h = runs[kind]
    weights = viz.distance_weights(h)
    assert weights.shape == (h.n_populations, len(h.stat_columns))
    np.testing.assert_array_equal(weights[0], 1.0)  # the weights the run started with
    assert np.all(np.isfinite(weights)) and np.all(weights > 0)
    assert not np.allclose(weights[1], 1.0)  # learned from generation 0
    ax = viz.plot_distance_weights(h)
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [f"t = {t}" for t in range(h.n_populations)]
    for t, ln in enumerate(lines):
        np.testing.assert_array_equal(ln.get_ydata(), weights[t])
    assert [lab.get_text() for lab in ax.get_xticklabels()] == h.stat_columns
    last = viz.plot_distance_weights(h, t=-1).get_lines()
    assert len(last) == 1 and last[0].get_label() == f"t = {h.max_t}"


def test_distance_weights_of_a_fixed_distance_is_a_clear_error(runs):
    with pytest.raises(dabc.InputError, match="weights do not adapt.*AdaptivePNormDistance"):
        viz.plot_distance_weights(runs["plain"])
    with pytest.raises(dabc.InputError, match="has no generation 9"):
        viz.plot_distance_weights(runs["one"], t=9)


# --- several runs, ax= reuse, bad input ---------------------------------------------------
def test_list_of_histories_compares_runs(runs):
    one, other = runs["one"], runs["other"]
    ax = viz.plot_epsilons([one, other])
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [f"run {one.id}", f"run {other.id}"]
    assert len(lines[1].get_xdata()) == other.n_populations - 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [ln.get_label()
                                                                    for ln in lines]
    ax = viz.plot_kde_1d([one, other], "mu", labels=["a", "b"])
    assert [ln.get_label() for ln in ax.get_lines()] == ["a", "b"]
    x0, x1 = (ln.get_xdata() for ln in ax.get_lines())
    np.testing.assert_array_equal(x0, x1)  # one common grid
    axs = viz.plot_kde_matrix([one, other], labels=["a", "b"])
    assert len(axs[1, 0].collections) >= 2  # contour sets of both runs
    probs = viz.plot_model_probabilities([runs["two"], runs["plain"]], labels=["x", "y"])
    assert [ln.get_label() for ln in probs.get_lines()] == [
        "x: narrow", "x: wide", "y: narrow", "y: wide"]
    axs = viz.plot_credible_intervals([one, other])
    assert {c.get_gid() for c in axs[0].collections} >= {"ci 0 0.95", "ci 1 0.95"}
    with pytest.raises(dabc.InputError, match="2 labels for 1 histories|1 labels for 2"):
        viz.plot_epsilons([one, other], labels=["only one"])


def test_ax_is_reused(runs):
    fig, (a, b) = plt.subplots(1, 2)
    assert viz.plot_epsilons(runs["one"], ax=a) is a
    assert viz.plot_epsilons(runs["two"], ax=a) is a
    assert len(a.get_lines()) == 2 and not b.get_lines()
    assert viz.plot_kde_1d(runs["one"], "sigma", ax=b) is b
    assert len(fig.axes) == 2
    grid = plt.subplots(2, 2)[1]
    assert viz.plot_kde_matrix(runs["one"], ax=grid) is not None
    with pytest.raises(dabc.InputError, match="ax holds 3 Axes; a matrix of 2 parameters"):
        viz.plot_kde_matrix(runs["one"], ax=grid.ravel()[:3])
    with pytest.raises(dabc.InputError, match="ax holds 1 Axes for 2 parameters"):
        viz.plot_credible_intervals(runs["one"], ax=[a])


@pytest.mark.parametrize(("call", "message"), [
    (lambda h: viz.plot_kde_1d(h, "nope"), "has no parameter 'nope'; it has mu, sigma"),
    (lambda h: viz.plot_kde_2d(h, "mu", "nope"), "has no parameter 'nope'"),
    (lambda h: viz.plot_kde_matrix(h, names=["mu", "nope"]), "has no parameter 'nope'"),
    (lambda h: viz.plot_credible_intervals(h, par_names=["nope"]), "has no parameter"),
    (lambda h: viz.plot_kde_1d(h, "mu", t=99), "has no generation 99: it stored "
     "generations 0 to 3"),
    (lambda h: viz.plot_kde_1d(h, "mu", t=-5), "has no generation -5"),
    (lambda h: viz.plot_kde_2d(h, "mu", "sigma", t=4), "has no generation 4"),
    (lambda h: viz.plot_kde_matrix(h, t=1.5), "t must be a whole number"),
    (lambda h: viz.plot_kde_1d(h, "mu", m=1), "has 1 model\\(s\\); m=1 is not one"),
    (lambda h: viz.plot_kde_matrix(h, m=-1), "m=-1 is not one"),
    (lambda h: viz.plot_credible_intervals(h, m=3), "m=3 is not one"),
    (lambda h: viz.plot_credible_intervals(h, levels=[0.5, 1.2]), "levels must be"),
    (lambda h: viz.plot_epsilons("runs.db"), "Expected a dabc History"),
    (lambda h: viz.plot_epsilons([]), "non-empty list"),
])
def test_bad_input_is_a_clear_error(runs, call, message):
    with pytest.raises(dabc.InputError, match=message):
        call(runs["one"])


def test_negative_generation_counts_from_the_end(runs):
    h = runs["one"]
    a = viz.plot_kde_1d(h, "mu", t=-2)
    b = viz.plot_kde_1d(h, "mu", t=h.max_t - 1)
    np.testing.assert_array_equal(a.get_lines()[0].get_ydata(), b.get_lines()[0].get_ydata())
    assert a.get_title().endswith(f"generation {h.max_t - 1}")


def test_a_model_that_died_out(runs):
    h = runs["dying"]
    probs = h.get_model_probabilities().iloc[:, 1].to_numpy()
    alive = [t for t in range(h.n_populations) if probs[t] > 0]
    assert probs[-1] == 0 and alive and alive == list(range(len(alive)))
    with pytest.raises(dabc.InputError, match="has no particles in generation 2: it died out"):
        viz.plot_kde_1d(h, "mu", m=1)
    assert viz.plot_kde_1d(h, "mu", m=1, t=0).get_lines()
    (ax,) = viz.plot_credible_intervals(h, m=1)
    (coll,) = [c for c in ax.collections if c.get_gid() == "ci 0 0.95"]
    assert [seg[0][0] for seg in coll.get_segments()] == alive  # the generations it lived
    ys = viz.plot_model_probabilities(h).get_lines()[1].get_ydata()
    np.testing.assert_array_equal(ys, probs)
