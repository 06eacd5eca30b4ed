"""Bad input gets a clear error (or warning) that says what is wrong, before wasting time.

Real runs on real SQLite files in ``tmp_path``; single-core unless the error has to travel
from a worker process.
"""

from __future__ import annotations

import numpy as np
import pytest

import dabc

PRIOR = dabc.Prior(x=dabc.RV("norm", 0, 1))
OBS = {"y": 1.0}


def gauss(p, rng):
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def run(model, tmp_path, *, prior=PRIOR, observed=OBS, sampler=None, db=None, gens=2, n=20,
        **kwargs) -> dabc.History:
    abc = dabc.ABCSMC(model, prior, population_size=n, seed=1, progress=False,
                      sampler=sampler or dabc.SingleCoreSampler(), **kwargs)
    return abc.run(observed, db=db or f"sqlite:///{tmp_path / 'bad.db'}", max_generations=gens)


# --- priors -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [5, "norm", None, [0, 1]])
def test_prior_value_that_is_not_a_distribution(value):
    with pytest.raises(dabc.InputError, match=r"Prior parameter 'x' is .*not a distribution"
                                               r".*dabc\.RV\('norm', 0, 1\)"):
        dabc.Prior(x=value)


def test_prior_dict_with_non_distribution_given_to_abcsmc():
    with pytest.raises(dabc.InputError, match=r"Prior parameter 'x' is 5 \(int\), not a "
                                               "distribution"):
        dabc.ABCSMC(gauss, {"x": 5})


def test_prior_that_is_not_a_prior():
    with pytest.raises(dabc.InputError, match=r"Prior 0 is 'norm' \(str\), not a dabc\.Prior"):
        dabc.ABCSMC(gauss, "norm")


def test_unknown_scipy_distribution():
    with pytest.raises(dabc.InputError,
                       match=r"RV\('nonexistent'\): no such scipy\.stats distribution"):
        dabc.RV("nonexistent")


def test_scipy_attribute_that_is_not_a_distribution():
    with pytest.raises(dabc.InputError, match=r"RV\('stats'\): no such scipy\.stats"):
        dabc.RV("stats")  # scipy.stats.stats exists but is a module


def test_bad_distribution_arguments():
    with pytest.raises(dabc.InputError, match=r"RV\('gamma'"):
        dabc.RV("gamma")  # the shape parameter a is missing


def test_fewer_priors_than_models():
    with pytest.raises(dabc.InputError, match="2 models but 1 priors"):
        dabc.ABCSMC([gauss, gauss], [PRIOR])


# --- model output -------------------------------------------------------------------------
def nan_model(p, rng):
    return {"y": float("nan")}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sampler_name", ["single", "eval2"])
def test_model_returning_nan_every_time(sampler_name, tmp_path):
    sampler = (dabc.SingleCoreSampler() if sampler_name == "single"
               else dabc.MulticoreEvalParallelSampler(2))
    with pytest.raises(dabc.ModelError, match=r"(?s)'nan_model'.*NaN or infinity for \['y'\]"):
        run(nan_model, tmp_path, sampler=sampler)


def nan_sometimes(p, rng):
    """NaN for x > 1.8: 3.6% of the prior, below the default max_failure_rate."""
    return {"y": float("nan") if p["x"] > 1.8 else p["x"] + 0.3 * rng.standard_normal()}


@pytest.mark.parametrize("sampler_name", ["single", "particle2"])
def test_occasional_nan_is_never_accepted(sampler_name, tmp_path):
    sampler = (dabc.SingleCoreSampler() if sampler_name == "single"
               else dabc.MulticoreParticleParallelSampler(2))
    h = run(nan_sometimes, tmp_path, sampler=sampler, n=300, gens=2)
    for t in range(2):
        a = h.get_arrays(t)[0]
        nan = ~np.isfinite(a["stats"][:, 0])
        assert not nan.any(), f"generation {t} accepted NaN statistics at ids {a['id'][nan]}"
        assert not np.any(a["theta"][:, 0] > 1.8)


def missing_stat(p, rng):
    return {"y": p["x"]}


def extra_stat(p, rng):
    return {"y": p["x"], "z": 1.0, "w": 2.0}


def test_model_missing_a_statistic(tmp_path):
    with pytest.raises(dabc.InputError,
                       match=r"'missing_stat' returned statistics \['y'\] but observed has "
                             r"\['y', 'z'\] \(missing: \['z'\], unexpected: \[\]\)"):
        run(missing_stat, tmp_path, observed={"y": 1.0, "z": 0.0})


@pytest.mark.timeout(30)
def test_model_returning_extra_keys_from_a_worker_process(tmp_path):
    with pytest.raises(dabc.InputError,
                       match=r"'extra_stat' returned statistics \['w', 'y', 'z'\] .*"
                             r"\(missing: \[\], unexpected: \['w', 'z'\]\)"):
        run(extra_stat, tmp_path, sampler=dabc.MulticoreEvalParallelSampler(2))


def test_observed_keys_not_matching_the_model(tmp_path):
    with pytest.raises(dabc.InputError,
                       match=r"'gauss' returned statistics \['y'\] but observed has \['z'\] "
                             r"\(missing: \['z'\], unexpected: \['y'\]\)"):
        run(gauss, tmp_path, observed={"z": 1.0})


@pytest.mark.parametrize("out", [[1.0], 1.0, None, (("y", 1.0),)])
def test_model_returning_a_non_dict(out, tmp_path):
    def not_a_dict(p, rng):
        return out

    with pytest.raises(dabc.InputError,
                       match=rf"'not_a_dict' returned {type(out).__name__}; it must return a "
                             r"dict of summary statistics with keys \['y'\]"):
        run(not_a_dict, tmp_path)


def wrong_shape(p, rng):
    return {"y": np.zeros(3)}


def test_model_returning_a_statistic_of_the_wrong_shape(tmp_path):
    with pytest.raises(dabc.InputError, match=r"Statistic 'y' has shape \(3,\), observed has "
                                               r"\(\)"):
        run(wrong_shape, tmp_path)


@dabc.vectorized(block_size=8)
def one_value_per_block(p, rng):
    return {"y": float(np.mean(p["x"]))}


def test_vectorized_model_returning_the_wrong_number_of_rows(tmp_path):
    """One value for a block of 8 particles is a wrong output shape, like the test above."""
    with pytest.raises(dabc.InputError, match=r"(?s)'y'.*\b8\b"):
        run(one_value_per_block, tmp_path)


def raises_key_error(p, rng):
    return {"y": p["no_such_parameter"]}


def test_model_raising(tmp_path):
    with pytest.raises(dabc.ModelError,
                       match=r"(?s)'raises_key_error' raised with parameters \{'x': .*"
                             r"Traceback.*KeyError: 'no_such_parameter'"):
        run(raises_key_error, tmp_path)


def test_model_that_is_not_callable():
    with pytest.raises(dabc.InputError, match="A model must be callable"):
        dabc.ABCSMC(42, PRIOR)


# --- distances ----------------------------------------------------------------------------
def two_numbers(x, x0):
    return np.array([1.0, 2.0])


def test_distance_function_returning_two_numbers(tmp_path):
    with pytest.raises(dabc.InputError, match=r"Distance function 'two_numbers' returned shape "
                                               r"\(2,\); it must return one number"):
        run(gauss, tmp_path, distance=two_numbers)


class HalfDistance(dabc.Distance):
    """A Distance subclass whose batch returns half as many values as simulations."""

    def batch(self, stats, observed):
        return np.abs(stats[::2, 0] - observed[0])


def test_distance_class_returning_the_wrong_number_of_values(tmp_path):
    with pytest.raises(dabc.InputError, match=r"distance HalfDistance returned shape \(\d+,\) "
                                               r"for \d+ simulations"):
        run(gauss, tmp_path, distance=HalfDistance())


def test_distance_that_is_not_a_distance():
    with pytest.raises(dabc.InputError, match="distance must be a Distance or a function"):
        dabc.ABCSMC(gauss, PRIOR, distance="euclidean")


# --- database -----------------------------------------------------------------------------
def test_database_in_a_missing_folder(tmp_path):
    db = tmp_path / "no" / "such" / "folder" / "x.db"
    with pytest.raises(dabc.InputError, match=r"Cannot create the database .*x\.db.*folder .*"
                                               r"folder' does not exist"):
        run(gauss, tmp_path, db=f"sqlite:///{db}")
    assert not db.parent.exists()


def test_database_under_a_regular_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(dabc.InputError, match=r"Cannot create the database .*a_file/x\.db"):
        run(gauss, tmp_path, db=f"sqlite:///{blocker / 'x.db'}")
    assert blocker.read_text() == "not a folder"


def test_database_in_an_unwritable_folder():
    # /proc refuses new files even to root (chmod would not stop root)
    with pytest.raises(dabc.InputError, match=r"Cannot open or create tables in database "
                                               r"'sqlite:////proc/dabc-test\.db'"):
        run(gauss, None, db="sqlite:////proc/dabc-test.db")


def test_database_path_that_is_a_folder(tmp_path):
    with pytest.raises(dabc.InputError, match="Cannot create the database .*: it is a folder"):
        run(gauss, tmp_path, db=f"sqlite:///{tmp_path}")


def test_bad_database_error_comes_before_any_simulation(tmp_path):
    calls = []

    def counting(p, rng):
        calls.append(1)
        return gauss(p, rng)

    with pytest.raises(dabc.InputError):
        run(counting, tmp_path, db="sqlite:////proc/dabc-test.db")
    assert calls == []


# --- observed -----------------------------------------------------------------------------
@pytest.mark.parametrize("observed, match", [
    ({}, "observed must be a non-empty dict"),
    ([1.0], "observed must be a non-empty dict"),
    ({"y": float("nan")}, "observed statistics contain NaN"),
])
def test_unusable_observed(observed, match, tmp_path):
    with pytest.raises(dabc.InputError, match=match):
        run(gauss, tmp_path, observed=observed)


def test_missing_observed(tmp_path):
    with pytest.raises(dabc.InputError, match=r"run\(\) needs the observed summary statistics"):
        run(gauss, tmp_path, observed=None)


# --- epsilon stall ------------------------------------------------------------------------
def coin(p, rng):
    """y is 1 with probability 0.8 whatever the parameter: a discrete distance {0, 1}."""
    return {"y": float(rng.random() < 0.8)}


def abs_diff(x, x0):
    return abs(x["y"] - x0["y"])


def test_epsilon_stall_on_a_discrete_distance(tmp_path):
    prior = dabc.Prior(p=dabc.RV("uniform", 0, 1))
    with pytest.warns(dabc.EpsilonStallWarning, match=r"epsilon stalled at 1: the 0\.5-quantile"):
        h = run(coin, tmp_path, prior=prior, observed={"y": 0.0}, distance=abs_diff, n=50,
                gens=10)
    pops = h.get_all_populations()
    assert pops.t.tolist() == [0, 1]  # generation 1 ran at epsilon 1 and nothing improved
    assert pops.epsilon.tolist() == [float("inf"), 1.0]
    runs = h.all_runs()
    assert runs.status.tolist() == ["done"]
    reason = runs.stop_reason.iloc[0]
    assert reason.startswith("epsilon stalled at 1")
    assert "discrete distances" in reason
