"""The fault suite of issue 16: every case that once hung, lost work or ran a stranger's
code."""


# --- cases 1, 7, 8: distance values, duplicated parameters, epsilon schedules ---
# A distance must return a finite number >= 0, or inf ("never accept"). NaN, None, a negative
# number or a non-number once hung the run (NaN epsilon, nothing accepted again) or ended it
# after one generation with a negative epsilon; now the first such value raises InputError,
# also when a worker process computed it. Each run below ends well under a second.
import re as _re  # noqa: E402
import time as _time  # noqa: E402

import numpy as _np  # noqa: E402
import pytest as _pytest  # noqa: E402

import dabc as _dabc  # noqa: E402

_PRIOR_1 = _dabc.Prior(x=_dabc.RV("norm", 0, 1))
_RULE_1 = (r"a distance must return a finite number >= 0 \(inf is allowed for 'never "
           r"accept'\)")


def _gauss_1(p, rng):
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def nan_for_half(x, x0):
    return float("nan") if x["y"] > 0 else abs(x["y"] - x0["y"])


def nan_for_all(x, x0):
    return float("nan")


def returns_none(x, x0):
    return None


def negative_distance(x, x0):
    return -abs(x["y"] - x0["y"])


def returns_a_string(x, x0):
    return "far"


class NanDistance(_dabc.Distance):
    """A Distance subclass whose batch gives NaN for every other simulation."""

    def batch(self, stats, observed):
        d = _np.abs(stats[:, 0] - observed[0])
        d[::2] = _np.nan
        return d


def _run_1(distance, tmp_path, sampler, *, epsilon=None, gens=4, n=50):
    abc = _dabc.ABCSMC(_gauss_1, _PRIOR_1, population_size=n, seed=1, progress=False,
                       sampler=sampler, distance=distance, epsilon=epsilon)
    return abc.run({"y": 0.5}, db=f"sqlite:///{tmp_path / 'faults.db'}", max_generations=gens)


_SAMPLERS_1 = {"single": lambda: _dabc.SingleCoreSampler(),
               "multicore": lambda: _dabc.MulticoreEvalParallelSampler(2)}
_BAD_DISTANCES = [
    (nan_for_half, r"distance 'nan_for_half' returned nan"),
    (nan_for_all, r"distance 'nan_for_all' returned nan"),
    (returns_none, r"distance 'returns_none' returned None"),
    (negative_distance, r"distance 'negative_distance' returned -\d"),
    (returns_a_string, r"distance 'returns_a_string' returned 'far'"),
]


@_pytest.mark.timeout(30)
@_pytest.mark.parametrize("sampler", sorted(_SAMPLERS_1))
@_pytest.mark.parametrize(("distance", "message"), _BAD_DISTANCES,
                          ids=[d.__name__ for d, _ in _BAD_DISTANCES])
def test_case1_bad_distance_value_is_an_input_error(tmp_path, sampler, distance, message):
    t0 = _time.monotonic()
    with _pytest.raises(_dabc.InputError) as info:
        _run_1(distance, tmp_path, _SAMPLERS_1[sampler]())
    text = str(info.value)
    assert _time.monotonic() - t0 < 20
    assert _re.search(message, text), text
    # one offending input: the simulated statistics, the observed ones, and the rule
    assert "for simulated statistics {'y': " in text
    assert "(observed {'y': 0.5})" in text
    assert _re.search(_RULE_1, text), text


@_pytest.mark.timeout(30)
@_pytest.mark.parametrize("sampler", sorted(_SAMPLERS_1))
def test_case1_distance_class_returning_nan_is_named(tmp_path, sampler):
    with _pytest.raises(_dabc.InputError, match=r"distance 'NanDistance' returned nan for "
                                                r"simulated statistics \{'y': .*\(observed "
                                                r"\{'y': 0\.5\}\); a distance must "
                                                r"return a finite number >= 0"):
        _run_1(NanDistance(), tmp_path, _SAMPLERS_1[sampler]())


def far_for_positive(x, x0):
    return float("inf") if x["y"] > 1.5 else abs(x["y"] - x0["y"])


@_pytest.mark.timeout(60)
def test_case1_infinite_distance_means_never_accept(tmp_path):
    h = _run_1(far_for_positive, tmp_path, _dabc.SingleCoreSampler(), gens=3)
    pops = h.get_all_populations()
    assert pops.t.tolist() == [0, 1, 2]
    eps = pops.epsilon.tolist()
    assert eps[0] == float("inf") and all(_np.isfinite(eps[1:]))  # from finite distances only
    for t in (1, 2):
        d = h.get_weighted_distances(t).distance.to_numpy()
        assert _np.all(_np.isfinite(d)) and _np.all(d <= eps[t])


def always_far(x, x0):
    return float("inf")


@_pytest.mark.timeout(30)
def test_case1_no_finite_distance_is_a_clear_error(tmp_path):
    with _pytest.raises(_dabc.InputError, match=r"MedianEpsilon: every one of the 50 accepted "
                                                r"particles of generation 0 has an infinite"):
        _run_1(always_far, tmp_path, _dabc.SingleCoreSampler())


class _NanSchedule(_dabc.Epsilon):
    def next(self, t, distances, weights):
        return float("nan")


@_pytest.mark.timeout(30)
def test_case1_schedule_giving_nan_is_an_input_error(tmp_path):
    with _pytest.raises(_dabc.InputError, match=r"epsilon schedule _NanSchedule: the threshold "
                                                r"it gave for generation 1 must be a number >= 0"):
        _run_1(None, tmp_path, _dabc.SingleCoreSampler(), epsilon=_NanSchedule())


@_pytest.mark.timeout(10)
def test_case7_duplicated_parameter_is_an_input_error():
    with _pytest.raises(_dabc.InputError, match=r"Prior: parameter 'mu' is given twice"):
        _dabc.Prior({"mu": _dabc.RV("norm", 0, 1)}, mu=_dabc.RV("norm", 5, 1))
    with _pytest.raises(_dabc.InputError, match=r"Prior: parameter '1' is given twice"):
        _dabc.Prior({1: _dabc.RV("norm", 0, 1), "1": _dabc.RV("norm", 5, 1)})
    prior = _dabc.Prior({"a": _dabc.RV("norm", 0, 1)}, b=_dabc.RV("norm", 0, 2))
    assert prior.names == ["a", "b"]


@_pytest.mark.timeout(10)
@_pytest.mark.parametrize(("make", "message"), [
    (lambda: _dabc.ListEpsilon([-1]), r"ListEpsilon: values\[0\] must be a number >= 0"),
    (lambda: _dabc.ListEpsilon([5, -1]), r"ListEpsilon: values\[1\] must be a number >= 0"),
    (lambda: _dabc.ListEpsilon([float("nan")]), r"ListEpsilon: values\[0\] must be a number"),
    (lambda: _dabc.ListEpsilon(["a"]), r"ListEpsilon: values\[0\] must be a number"),
    (lambda: _dabc.ListEpsilon([]), r"ListEpsilon needs at least one value"),
    (lambda: _dabc.ListEpsilon([1, 2]), r"ListEpsilon: the thresholds must not increase, but "
                                        r"values\[1\] = 2 is above values\[0\] = 1"),
    (lambda: _dabc.ListEpsilon([5, 3, 4]), r"must not increase, but values\[2\] = 4"),
    (lambda: _dabc.ConstantEpsilon(-0.5), r"ConstantEpsilon: epsilon must be a number >= 0"),
    (lambda: _dabc.ConstantEpsilon(float("nan")), r"ConstantEpsilon: epsilon must be"),
    (lambda: _dabc.QuantileEpsilon(alpha=0), r"QuantileEpsilon: alpha must be in \(0, 1\]"),
    (lambda: _dabc.QuantileEpsilon(alpha=float("nan")), r"alpha must be in \(0, 1\]"),
    (lambda: _dabc.QuantileEpsilon(multiplier=0), r"multiplier must be a finite number > 0"),
    (lambda: _dabc.MedianEpsilon(multiplier=-1), r"MedianEpsilon: multiplier must be"),
    (lambda: _dabc.MedianEpsilon(initial_epsilon=-1), r"MedianEpsilon: initial_epsilon must"),
], ids=["list-negative", "list-negative-later", "list-nan", "list-string", "list-empty",
        "list-increasing", "list-increasing-later", "constant-negative", "constant-nan",
        "quantile-alpha-0", "quantile-alpha-nan", "quantile-multiplier-0",
        "median-multiplier-negative", "median-initial-negative"])
def test_case8_bad_epsilon_arguments_are_input_errors(make, message):
    with _pytest.raises(_dabc.InputError, match=message):
        make()


@_pytest.mark.timeout(10)
def test_case8_valid_epsilon_lists():
    assert _dabc.ListEpsilon([float("inf"), 3, 3, 0]).values == [float("inf"), 3.0, 3.0, 0.0]
    assert _dabc.ConstantEpsilon(0).epsilon == 0.0


@_pytest.mark.timeout(30)
def test_case8_negative_distance_does_not_end_the_run_at_a_negative_epsilon(tmp_path):
    """The old run stopped after generation 1 with 'minimum_epsilon reached (epsilon -1.1)'."""
    with _pytest.raises(_dabc.InputError, match=r"distance 'negative_distance' returned -"):
        _run_1(negative_distance, tmp_path, _dabc.SingleCoreSampler())
