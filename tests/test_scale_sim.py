"""benchmarks/scale_sim.py: the discrete-event simulation of a master and W workers gives
the exact answers of cases that can be worked out by hand.

- Trivial case: the master costs (next to) nothing, every task takes 1 s of simulation plus
  ``eps`` of worker overhead, N = m W evaluations at one per task: every worker runs m tasks
  back to back, the generation takes m (1 + eps) s and the efficiency is 1 / (1 + eps).
- Overloaded case: the master needs ``c`` per result with W c much larger than a task's
  time t, so it is a deterministic single-server queue that is never idle once the first
  results arrive at t: the N-th result is handled at t + N c, and the efficiency is
  N t / (W (t + N c)).
- The auto batch size reproduces DynamicScheduler's sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scale_sim  # noqa: E402
from scale_sim import Costs, Policy, Workload, simulate  # noqa: E402


@pytest.mark.parametrize("policy", [Policy.redis(batch_size=1), Policy.dask(batch_size=1)])
@pytest.mark.parametrize("eps", [0.0, 0.01, 0.05])
def test_trivial_case_efficiency_is_one_minus_overhead(policy, eps):
    workers, rounds = 10, 20
    n = workers * rounds
    costs = Costs(master_task=1e-9, worker_task=eps)
    res = simulate(workers, costs, policy, Workload([(n, n)], sim_seconds=1.0))
    assert res["efficiency"] == pytest.approx(1 / (1 + eps), abs=1e-6)
    assert res["wall_s"] == pytest.approx(rounds * (1 + eps), abs=1e-6)


@pytest.mark.parametrize("policy", [Policy.redis(batch_size=1), Policy.dask(batch_size=1)])
@pytest.mark.parametrize(("workers", "c", "t"), [(50, 0.01, 0.1), (200, 0.002, 0.05)])
def test_overloaded_master_saturates_at_its_capacity(policy, workers, c, t):
    assert workers * c > 4 * t  # the master is the bottleneck
    n = 1000
    res = simulate(workers, Costs(master_task=c), policy, Workload([(n, n)], sim_seconds=t))
    assert res["wall_s"] == pytest.approx(t + n * c, rel=1e-9)
    assert res["efficiency"] == pytest.approx(n * t / (workers * (t + n * c)), rel=1e-9)
    # the master was busy handling the N results (and, on Redis, nothing else)
    assert res["master_utilisation"] * res["wall_s"] >= n * c * (1 - 1e-9)


@pytest.mark.parametrize("policy", [Policy.redis(batch_size=1), Policy.dask(batch_size=1)])
@pytest.mark.parametrize("gap", [0.25, 2.0])
def test_stale_tasks_hold_workers_into_the_next_generation(policy, gap):
    """Two generations of 4 rounds on 10 workers, 1 s per task. With 2 W tasks in flight,
    the workers that finish the last round take the next 10 ids (beyond the cut-off) at
    once, and nothing can interrupt a 1 s simulation: the second generation starts when
    they finish (1 s after the first ended) or after the engine's gap, whichever is later.
    """
    costs = Costs(master_task=1e-9)
    wl = Workload([(40, 40), (40, 40)], sim_seconds=1.0, startup=0.5, gaps=[gap], tail=0.25)
    res = simulate(10, costs, policy, wl)
    assert res["wall_s"] == pytest.approx(0.5 + 4 + max(gap, 1.0) + 4 + 0.25, abs=1e-6)
    assert res["efficiency"] == pytest.approx(80 / 10 / res["wall_s"], rel=1e-9)
    # the evaluations run: both generations' 40, and the 10 stale ones after each
    assert res["evaluations_run"] == 2 * 40 + 10


@pytest.mark.parametrize("policy", [Policy.redis(), Policy.dask()])
def test_auto_batch_size_matches_the_samplers_scheduler(policy):
    from dabc.samplers.scheduling import DynamicScheduler

    for per_eval, accepted, evaluated, in_flight, workers, n in [
            (0.01, 10, 40, 30, 8, 200), (1.0, 0, 0, 0, 100, 500), (1e-5, 100, 500, 2000, 4, 5000),
            (0.002, 450, 900, 100, 16, 500)]:
        ours = scale_sim._Scheduler(n, 2 * n, policy, hint=per_eval)
        ours.n_accepted, ours.n_evaluated = accepted, evaluated
        ours.seconds = per_eval * evaluated
        ours.issued, ours.received = evaluated + in_flight, evaluated
        real = DynamicScheduler(n, target_seconds=policy.target_seconds,
                                min_task_fraction=policy.min_task_fraction,
                                timing_hint=per_eval)
        real.n_accepted, real.n_evaluated, real.seconds = accepted, evaluated, per_eval * evaluated
        assert ours.size(workers) == real._size(in_flight, workers)
