"""Sampler behaviour: the determinism contract, work shipping, dead workers, model failures.

Every run here is real: real worker processes, thread and process pools, and SQLite files in
``tmp_path``. Models are module-level functions or classes, so cloudpickle ships them by
reference and forked workers (which inherit this module) find them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import dabc
from dabc.samplers import SingleCoreSampler
from determinism import assert_same, snapshot

SEED = 20240611
N = 40          # population size of the equivalence runs
GENS = 4        # generations of the equivalence runs
_MAIN_PID = os.getpid()  # forked workers inherit this value; used to never kill pytest


# --- models -----------------------------------------------------------------------------
def gauss(p, rng):
    """Plain model with an explicit random stream."""
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def gauss_global(p):
    """Model using the global numpy.random (seeded per evaluation by the engine)."""
    return {"y": p["x"] + 0.3 * np.random.standard_normal()}


def gauss_sleepy(p, rng):
    """Random sleep times (0 to ~2 ms), so that tasks finish out of order."""
    time.sleep(0.002 * rng.random() ** 3)
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def affine(p, rng):
    """Competitor of ``gauss`` with two parameters (exercises parameter padding)."""
    return {"y": p["a"] + 0.5 * p["b"] + 0.3 * rng.standard_normal()}


@dabc.vectorized(block_size=16)
def gauss_vec(p, rng):
    """Vectorized model: one row per particle of the block."""
    x = p["x"]
    return {"y": x + 0.3 * rng.standard_normal(len(x))}


def vector_model(p, rng):
    """Twenty statistics per simulation (so shipping old stats would show in the payload)."""
    return {"y": p["x"] + p["s"] * rng.standard_normal(20)}


PRIOR_X = dabc.Prior(x=dabc.RV("norm", 0, 1))
PRIOR_AB = dabc.Prior(a=dabc.RV("uniform", -2, 6), b=dabc.RV("norm", 0, 1))
OBS = {"y": 1.0}

CASES = {
    "rng": (gauss, PRIOR_X),
    "global-random": (gauss_global, PRIOR_X),
    "random-sleep": (gauss_sleepy, PRIOR_X),
    "two-models": ([gauss, affine], [PRIOR_X, PRIOR_AB]),
    "vectorized": (gauss_vec, PRIOR_X),
}


# --- samplers -----------------------------------------------------------------------------
@contextlib.contextmanager
def make_sampler(name: str):
    """A sampler by name; pools and executors are shut down afterwards."""
    if name == "single":
        yield dabc.SingleCoreSampler()
    elif name.startswith("eval"):
        yield dabc.MulticoreEvalParallelSampler(int(name[4:]))
    elif name == "threads3":
        with ThreadPoolExecutor(3) as ex:
            yield dabc.ConcurrentFutureSampler(ex)
    elif name == "procs2-batch7":
        with ProcessPoolExecutor(2) as ex:
            yield dabc.ConcurrentFutureSampler(ex, batch_size=7)
    elif name.startswith("particle"):
        yield dabc.MulticoreParticleParallelSampler(int(name[8:]))
    elif name == "map":
        yield dabc.MappingSampler(map)
    elif name == "pool2-map":
        with multiprocessing.Pool(2) as pool:
            yield dabc.MappingSampler(pool.map)
    else:
        raise ValueError(name)


DYN = ["single", "eval1", "eval2", "eval3", "threads3", "procs2-batch7"]
STAT = ["particle1", "particle2", "particle3", "map", "pool2-map"]
REFERENCE = {"dyn": "single", "stat": "map"}


def run(models, priors, sampler, db: Path, *, n=N, gens=GENS, seed=SEED, observed=None,
        **kwargs) -> dabc.History:
    abc = dabc.ABCSMC(models, priors, population_size=n, sampler=sampler, seed=seed,
                      progress=False, **kwargs)
    return abc.run(observed or OBS, db=f"sqlite:///{db}", max_generations=gens)






_REFERENCES: dict[tuple[str, str], dict] = {}


def reference(case: str, kind: str, tmp_path_factory) -> dict:
    """The reference run of a case (single-core for DYN, builtin map for STAT), cached."""
    key = (case, kind)
    if key not in _REFERENCES:
        models, priors = CASES[case]
        db = tmp_path_factory.mktemp("ref") / f"{case}-{kind}.db"
        with make_sampler(REFERENCE[kind]) as s:
            snap = snapshot(run(models, priors, s, db))
        # the reference itself must be a full, sensible run
        assert len(snap["arrays"]) == GENS
        for g in snap["arrays"]:
            assert sum(len(a["id"]) for a in g.values()) == N
        assert np.all(np.diff(snap["epsilon"]) < 0), snap["epsilon"]
        _REFERENCES[key] = snap
    return _REFERENCES[key]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampler_name", [pytest.param(s, id=f"dyn-{s}") for s in DYN]
                         + [pytest.param(s, id=f"stat-{s}") for s in STAT])
@pytest.mark.parametrize("case", list(CASES))
def test_same_seed_same_population(case, sampler_name, tmp_path, tmp_path_factory):
    kind = "dyn" if sampler_name in DYN else "stat"
    ref = reference(case, kind, tmp_path_factory)
    models, priors = CASES[case]
    with make_sampler(sampler_name) as s:
        got = snapshot(run(models, priors, s, tmp_path / "run.db"))
    assert_same(got, ref)


def test_dyn_population_is_first_accepted_ids(tmp_path, tmp_path_factory):
    """DYN keeps the first n accepted ids: ids unique and increasing; STAT keeps slots 0..n-1."""
    dyn = reference("rng", "dyn", tmp_path_factory)
    stat = reference("rng", "stat", tmp_path_factory)
    for g in dyn["arrays"]:
        ids = g[0]["id"]
        assert np.all(np.diff(ids) > 0)
    for g in stat["arrays"]:
        np.testing.assert_array_equal(np.sort(g[0]["id"]), np.arange(N))


# --- what is shipped to workers ---------------------------------------------------------
class RecordingSampler(SingleCoreSampler):
    """A real single-core sampler that keeps the requests it was given."""

    def __init__(self):
        self.requests = []

    def sample(self, request):
        self.requests.append(request)
        return super().sample(request)


def test_generation_work_pickle_is_small(tmp_path):
    """The shipped work holds code, priors and the fitted transition, nothing else.

    Generation 0 (no transition yet) measured 17.5 kB: under 2 kB for the references to the
    model function, the statistics layout and the distance, and ~8 kB per prior parameter,
    because a frozen scipy.stats distribution pickles its generator instance, including a
    5.6 kB Mersenne-Twister state and a 4.3 kB docstring. So 4 KiB + 12 KiB per parameter.
    Later generations add the fitted MultivariateNormalTransition: the previous population's
    parameters, normalised weights and cumulative weights, n * (d + 2) float64, plus d x d
    covariance matrices; 2 KiB of slack covers those and pickle framing. Shipping the
    previous population's statistics (n * 20 float64 = 80 kB here), its distances, the
    simulations or the History would break the bound.
    """
    n, d, gens = 500, 2, 3
    s = RecordingSampler()
    prior = dabc.Prior(x=dabc.RV("norm", 0, 1), s=dabc.RV("uniform", 0.1, 1))
    h = run(vector_model, prior, s, tmp_path / "w.db", n=n, gens=gens,
            observed={"y": np.full(20, 0.5)})
    assert h.n_populations == gens
    sizes = [len(r.payload) for r in s.requests]
    assert len(sizes) == gens
    assert [r.work.t for r in s.requests] == list(range(gens))
    assert sizes[0] < 4096 + 12 * 1024 * d, sizes
    for size in sizes[1:]:
        assert size <= sizes[0] + 8 * n * (d + 2) + 2048, sizes
    # it does not change with the number of simulations (shipping them would add 160 bytes
    # per simulation: more than 256 bytes for these two generations' difference)
    sims = h.get_all_populations().n_simulations.to_numpy()
    assert abs(int(sims[2]) - int(sims[1])) >= 2
    assert abs(sizes[2] - sizes[1]) < 256, sizes


def _log(log_dir: str, kind: str) -> None:
    with open(os.path.join(log_dir, f"{os.getpid()}.log"), "a") as f:
        f.write(kind + "\n")


class CountingModel:
    """``gauss`` that logs, per process, each time it is unpickled and each evaluation.

    The model is part of the generation's work, so one "unpickle" line is one delivery of
    the work to that process.
    """

    def __init__(self, log_dir):
        self.log_dir = str(log_dir)

    def __getstate__(self):
        return {"log_dir": self.log_dir}

    def __setstate__(self, state):
        self.__dict__.update(state)
        _log(self.log_dir, "unpickle")

    def __call__(self, p, rng):
        time.sleep(0.0003)
        _log(self.log_dir, "eval")
        return gauss(p, rng)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampler_name", ["eval2", "particle2", "procs2-batch7", "pool2-map"])
def test_work_reaches_each_worker_once_per_generation(sampler_name, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    gens = 4
    with make_sampler(sampler_name) as s:
        h = run(CountingModel(logs), PRIOR_X, s, tmp_path / "c.db", n=60, gens=gens)
    assert h.n_populations == gens
    per_pid = {}
    for f in logs.iterdir():
        lines = f.read_text().split()
        per_pid[int(f.stem)] = (lines.count("unpickle"), lines.count("eval"))
    assert _MAIN_PID not in per_pid, "evaluations must run in worker processes"
    unpickles = sum(u for u, _ in per_pid.values())
    evals = sum(e for _, e in per_pid.values())
    # every counted evaluation ran in a worker (stale in-flight tasks may add uncounted ones)
    assert evals >= h.get_all_populations().n_evaluated.sum()
    # the work reached workers in every generation, each worker at most once per generation
    assert unpickles >= gens
    for pid, (u, e) in per_pid.items():
        assert u <= gens, f"worker {pid} received the work {u} times in {gens} generations"
        assert e >= u
    assert evals >= 10 * unpickles, per_pid
    if sampler_name in ("eval2", "particle2"):
        assert len(per_pid) == 2  # the same two workers served all generations


# --- dead workers -----------------------------------------------------------------------
_CALLS = 0


class KillOnce:
    """``gauss`` that SIGKILLs its own worker process at its 60th evaluation, once per run.

    The marker file is created atomically (O_CREAT | O_EXCL) before the kill, so exactly one
    worker dies; it records the victim's PID. With the marker already present the model
    never kills, which gives the undisturbed reference run with identical code.
    """

    def __init__(self, marker):
        self.marker = str(marker)

    def __call__(self, p, rng):
        global _CALLS
        _CALLS += 1
        if _CALLS == 60 and os.getpid() != _MAIN_PID:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return gauss(p, rng)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampler_name", ["eval2", "particle2"])
def test_dead_worker_changes_nothing(sampler_name, tmp_path):
    global _CALLS
    marker = tmp_path / "killed"
    _CALLS = 0
    with make_sampler(sampler_name) as s:
        disturbed = snapshot(run(KillOnce(marker), PRIOR_X, s, tmp_path / "killed.db"))
    assert marker.exists(), "the model never killed its worker; the test is void"
    victim = int(marker.read_text())
    assert victim != _MAIN_PID
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    # the marker now exists: same model code, nobody dies
    _CALLS = 0
    with make_sampler(sampler_name) as s:
        calm = snapshot(run(KillOnce(marker), PRIOR_X, s, tmp_path / "calm.db"))
    assert_same(disturbed, calm)
    assert len(calm["arrays"]) == GENS


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has exited (a zombie or gone); its pipes are closed by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not die")


class _KillBetweenGenerations:
    """Real multicore sampler; after generation ``after`` it SIGKILLs one idle worker.

    Like the OOM killer hitting a worker between generations: the next generation must
    notice and replace it instead of failing.
    """

    def __init__(self, n_procs, after=1):
        super().__init__(n_procs)
        self.after, self.killed = after, []

    def sample(self, request):
        result = super().sample(request)
        if request.work.t == self.after:
            pid = self.worker_pids[0]
            os.kill(pid, signal.SIGKILL)
            _wait_dead(pid)
            self.killed.append(pid)
        return result


class EvalKillBetween(_KillBetweenGenerations, dabc.MulticoreEvalParallelSampler):
    pass


class ParticleKillBetween(_KillBetweenGenerations, dabc.MulticoreParticleParallelSampler):
    pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls, plain", [(EvalKillBetween, "eval2"),
                                        (ParticleKillBetween, "particle2")],
                         ids=["eval2", "particle2"])
def test_worker_killed_between_generations_changes_nothing(cls, plain, tmp_path):
    sampler = cls(2, after=1)
    disturbed = snapshot(run(gauss, PRIOR_X, sampler, tmp_path / "killed.db"))
    assert len(sampler.killed) == 1
    with make_sampler(plain) as s:
        calm = snapshot(run(gauss, PRIOR_X, s, tmp_path / "calm.db"))
    assert_same(disturbed, calm)


def dies(p, rng):
    os._exit(3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampler_name", ["eval2", "particle2", "procs2-batch7"])
def test_model_killing_every_worker_is_a_worker_error(sampler_name, tmp_path):
    with make_sampler(sampler_name) as s, pytest.raises(dabc.WorkerError, match="died"):
        run(dies, PRIOR_X, s, tmp_path / "d.db")


# --- model failures ---------------------------------------------------------------------
def always_fails(p, rng):
    raise ValueError(f"simulator exploded at x={p['x']:.3f} (sentinel 7d1f)")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sampler_name", ["single", "eval2"])
def test_model_raising_every_time_is_a_model_error(sampler_name, tmp_path):
    with make_sampler(sampler_name) as s, pytest.raises(dabc.ModelError) as info:
        run(always_fails, PRIOR_X, s, tmp_path / "f.db")
    msg = str(info.value)
    assert "'always_fails'" in msg
    assert "Traceback (most recent call last)" in msg
    assert "ValueError: simulator exploded at x=" in msg
    assert "sentinel 7d1f" in msg
    assert "max_failure_rate" in msg
    h = dabc.History(f"sqlite:///{tmp_path / 'f.db'}")
    assert h.n_populations == 0
    assert h.all_runs().status.tolist() == ["failed"]


@pytest.mark.timeout(5)  # a correct run raises within a second; keeps a hang cheap
@pytest.mark.parametrize("sampler_name", ["map", "particle2"])
def test_model_raising_every_time_is_a_model_error_stat(sampler_name, tmp_path):
    """STAT samplers must give up too, not retry a slot forever."""
    with make_sampler(sampler_name) as s, pytest.raises(dabc.ModelError, match="always_fails"):
        run(always_fails, PRIOR_X, s, tmp_path / "f.db")


FAIL_LO, FAIL_HI = 0.80, 0.82  # 2% of the uniform(0, 1) prior


def fails_sometimes(p, rng):
    if FAIL_LO < p["x"] < FAIL_HI:
        raise RuntimeError("numerical trouble")
    return {"y": p["x"] + 0.1 * rng.standard_normal()}


@pytest.mark.parametrize("sampler_name", ["single", "eval2", "particle2"])
def test_rare_failures_are_tolerated_and_never_accepted(sampler_name, tmp_path):
    n = 200
    prior = dabc.Prior(x=dabc.RV("uniform", 0, 1))
    with make_sampler(sampler_name) as s:
        h = run(fails_sometimes, prior, s, tmp_path / "r.db", n=n, gens=3,
                observed={"y": 0.3})
    pops = h.get_all_populations()
    assert len(pops) == 3
    for t in range(3):
        a = h.get_arrays(t)[0]
        assert len(a["theta"]) == n
        x = a["theta"][:, 0]
        bad = (x > FAIL_LO) & (x < FAIL_HI)
        assert not bad.any(), (f"generation {t} (epsilon {pops.epsilon[t]}) accepted failed "
                               f"evaluations {a['id'][bad]} with stats {a['stats'][bad]}")
        assert np.all(np.isfinite(a["stats"])) and np.all(np.isfinite(a["distance"]))
        assert np.all(a["distance"] <= pops.epsilon[t])
    # generation 0 has epsilon = inf: only the failures were not accepted, and there were some
    assert pops.epsilon[0] == np.inf
    assert pops.n_simulations[0] > n


def test_failure_rate_above_limit_is_a_model_error(tmp_path):
    prior = dabc.Prior(x=dabc.RV("uniform", 0, 1))
    with pytest.raises(dabc.ModelError, match=r"'fails_sometimes' failed in \d+ of \d+"):
        run(fails_sometimes, prior, SingleCoreSampler(), tmp_path / "r.db", n=200, gens=1,
            observed={"y": 0.3}, max_failure_rate=0.002)


# --- cancellable DYN tasks --------------------------------------------------------------------
class _WorkCapture(SingleCoreSampler):
    """A single-core sampler that keeps the last generation's work object."""

    def sample(self, request):
        self.work = request.work
        return super().sample(request)


@pytest.mark.parametrize("model", [gauss, gauss_vec], ids=["plain", "vectorized"])
def test_cancelled_task_returns_its_first_ids_and_is_never_counted(model, tmp_path):
    """A DYN task asked ``cancelled`` stops at the next evaluation (block, if vectorized);
    its partial batch is marked, holds exactly the first ids with the same values as a full
    run, and the DYN scheduler ignores it (the range stays unevaluated)."""
    from dabc.samplers import DynamicScheduler, Task

    sampler = _WorkCapture()
    dabc.ABCSMC(model, dabc.Prior(x=dabc.RV("norm", 0, 1)), population_size=20, seed=SEED,
                sampler=sampler, progress=False).run({"y": 0.5}, db=str(tmp_path / "c.db"),
                                                     max_generations=2)
    work = sampler.work
    full = work.run(Task("ids", 0, 64))
    asked = []
    partial = work.run(Task("ids", 0, 64), cancelled=lambda: len(asked) > 2 or asked.append(1))
    step = 16 if model is gauss_vec else 1
    assert partial.stopped_early and not full.stopped_early
    assert list(partial.ids) == list(range(3 * step))
    np.testing.assert_array_equal(partial.stats, full.stats[:3 * step])
    sched = DynamicScheduler(20, granularity=step)
    task = sched.next_task()
    sched.add(task, work.run(task, cancelled=lambda: True))
    assert sched.n_evaluated == 0 and sched.prefix == 0 and not sched.done
