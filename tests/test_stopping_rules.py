"""The default ``min_eps_diff`` rule: a run ends once epsilon no longer decreases meaningfully.

A fast model whose distances cannot fall below 1 (its statistic stays in [0, 1], the observed
value is 2) runs with the default rules: its epsilon creeps towards the floor, so the run must
stop by the new rule well before ``max_generations``, with a stop reason saying so. The rule is
checked against the stored numbers: at the generation that stopped, the next threshold (stored
in the generation's state) is less than 5 % below the largest accepted distance; at every
earlier generation, the next generation's epsilon was at least 5 % below it (else the run
should have stopped there). With the rule off, or a constant epsilon, the same model runs on.
"""

from __future__ import annotations

import numpy as np
import pytest

import dabc
from dabc.engine.config import load_state
from dabc.engine.model import StatLayout
from dabc.engine.smc import DEFAULT_MIN_EPS_DIFF

OBSERVED = {"y": 2.0}
PRIOR = dabc.Prior(mu=dabc.RV("uniform", 0, 1))
REASON = "epsilon no longer decreases meaningfully"


def floored(params, rng):
    """The mean of 3 uniforms on [0, mu]: at most 1, so its distance to 2.0 is at least 1."""
    return {"y": rng.uniform(0, params["mu"], size=3).mean()}


def _run(tmp_path, seed=1, epsilon=None, **rules):
    abc = dabc.ABCSMC(floored, PRIOR, population_size=200, seed=seed, epsilon=epsilon,
                      sampler=dabc.SingleCoreSampler(), progress=False)
    return abc.run(OBSERVED, db=f"sqlite:///{tmp_path / f'r{seed}.db'}", **rules)


def _reason(history) -> str:
    runs = history.all_runs()
    return runs.loc[runs["id"] == history.id, "stop_reason"].iloc[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_floored_model_stops_by_min_eps_diff_with_the_default_rules(tmp_path, seed):
    h = _run(tmp_path, seed)
    pops = h.get_all_populations()
    last = len(pops) - 1
    assert 2 <= last < 9, pops  # bounded, well before the default max_generations=10
    reason = _reason(h)
    assert reason.startswith(REASON) and "min_eps_diff=0.05" in reason, reason
    eps = pops["epsilon"].to_numpy()
    assert np.all(eps[1:] >= 1.0)  # the floor

    def largest_distance(t):
        return float(h.get_weighted_distances(t=t)["distance"].max())

    for t in range(1, last):  # the run went on: the decrease was large enough
        assert 1 - eps[t + 1] / largest_distance(t) >= DEFAULT_MIN_EPS_DIFF, (t, eps)
    _, _, eps_next = load_state(h.state(last), StatLayout(OBSERVED), trust=True)
    assert 1 - eps_next / largest_distance(last) < DEFAULT_MIN_EPS_DIFF, (eps_next, eps)
    assert f"{eps_next:.4g}" in reason


def test_min_eps_diff_zero_and_a_constant_epsilon_run_on(tmp_path):
    h = _run(tmp_path, max_generations=9, min_eps_diff=0)
    assert h.n_populations == 9 and _reason(h) == "max_generations=9 reached"
    h = _run(tmp_path, seed=2, epsilon=dabc.ConstantEpsilon(1.8), max_generations=4)
    assert h.n_populations == 4 and _reason(h) == "max_generations=4 reached"


@pytest.mark.parametrize("bad", [-0.1, 1.0, "much", float("nan")])
def test_min_eps_diff_is_checked(tmp_path, bad):
    with pytest.raises(dabc.InputError, match=r"min_eps_diff must be a relative decrease"):
        _run(tmp_path, min_eps_diff=bad)
    assert not (tmp_path / "r1.db").exists()  # refused before anything was written


def test_dabc_resume_min_eps_diff_zero_continues_a_run_the_rule_stopped(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    h = _run(tmp_path)
    assert _reason(h).startswith(REASON)
    stopped = h.n_populations
    db = tmp_path / "r1.db"
    proc = subprocess.run(
        [sys.executable, "-m", "dabc", "resume", str(db), "--sampler", "single",
         "--path", str(Path(__file__).parent), "--max-generations", str(stopped + 2),
         "--min-eps-diff", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    h = dabc.History(f"sqlite:///{db}")
    assert h.n_populations == stopped + 2
    assert _reason(h) == f"max_generations={stopped + 2} reached"
