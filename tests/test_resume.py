"""Resuming a stored run gives exactly the run that was never interrupted.

The hard case kills a real process with SIGKILL in the middle of a run
(tests/scripts/resume_run.py) and resumes it from its SQLite file in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dabc
from determinism import assert_same, snapshot

SCRIPT = Path(__file__).parent / "scripts" / "resume_run.py"
SEED = 424242






def _start(db: Path, marker: Path, max_generations: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(db), str(SEED), str(max_generations), str(marker)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a script we started: its process group (it and its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _status(h: dabc.History) -> tuple[str, str | None]:
    row = h.all_runs().set_index("id").loc[h.id]
    return row.status, row.stop_reason


@pytest.mark.timeout(60)
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    ref_db, cut_db = tmp_path / "uninterrupted.db", tmp_path / "killed.db"
    cut_started = tmp_path / "killed.started"
    # both start at once: the reference runs while we wait for the other to reach gen 2
    ref = _start(ref_db, tmp_path / "ref.started", 5)
    cut = _start(cut_db, cut_started, 5)
    try:
        deadline = time.monotonic() + 40
        # the first evaluation runs after the run and its tables were created
        while not cut_started.exists():
            assert cut.poll() is None, cut.communicate()
            assert time.monotonic() < deadline, "the script never started evaluating"
            time.sleep(0.01)
        url = f"sqlite:///{cut_db}"
        while dabc.History(url).max_t < 2:
            assert cut.poll() is None, f"script ended before generation 2: {cut.communicate()}"
            assert time.monotonic() < deadline, "generation 2 was never stored"
            time.sleep(0.01)
        os.kill(cut.pid, signal.SIGKILL)
        assert cut.wait() == -signal.SIGKILL
        out, err = ref.communicate(timeout=40)
        assert ref.returncode == 0, err
        assert "done: 5 generations" in out
    finally:
        _kill_group(cut)
        _kill_group(ref)

    stored = dabc.History(url).max_t
    assert 2 <= stored < 4, f"the kill came too late (generation {stored} stored); void test"
    assert _status(dabc.History(url))[0] == "running"  # nobody recorded an ending

    abc = dabc.ABCSMC.load(url)
    h = abc.run(max_generations=5)
    assert h.n_populations == 5
    assert _status(h) == ("done", "max_generations=5 reached")
    assert_same(snapshot(h), snapshot(dabc.History(f"sqlite:///{ref_db}")))
    assert len(h.all_runs()) == 1  # resumed into the same run, not a new one


# --- resuming runs that ended normally ----------------------------------------------------
def gauss(p, rng):
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def affine(p, rng):
    return {"y": p["a"] + 0.5 * p["b"] + 0.3 * rng.standard_normal()}


MODELS = [gauss, affine]
PRIORS = [dabc.Prior(x=dabc.RV("norm", 0, 1)),
          dabc.Prior(a=dabc.RV("uniform", -2, 6), b=dabc.RV("norm", 0, 1))]
OBS = {"y": 1.0}


def _abc(sampler) -> dabc.ABCSMC:
    return dabc.ABCSMC(MODELS, PRIORS, population_size=60, sampler=sampler, seed=SEED,
                       progress=False)


SAMPLERS = {
    "dyn": (dabc.SingleCoreSampler, lambda: dabc.MulticoreEvalParallelSampler(2)),
    "stat": (lambda: dabc.MappingSampler(map), lambda: dabc.MulticoreParticleParallelSampler(2)),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["dyn", "stat"])
def test_resume_completed_run_with_more_generations(kind, tmp_path):
    first, other = SAMPLERS[kind]
    ref = _abc(first()).run(OBS, db=f"sqlite:///{tmp_path / 'ref.db'}", max_generations=5)

    url = f"sqlite:///{tmp_path / 'short.db'}"
    short = _abc(first()).run(OBS, db=url, max_generations=3)
    assert short.n_populations == 3
    assert _status(short) == ("done", "max_generations=3 reached")

    # asking again for 3 generations adds nothing
    again = dabc.ABCSMC.load(url, sampler=first()).run(max_generations=3)
    assert again.n_populations == 3

    # continuing to 5, with another sampler of the same kind, gives the 5-generation run
    h = dabc.ABCSMC.load(url, sampler=other()).run(max_generations=5)
    assert h.n_populations == 5
    assert _status(h) == ("done", "max_generations=5 reached")
    assert_same(snapshot(h), snapshot(ref))


def two_stats(p, rng):
    return {"y": p["x"] + 0.3 * rng.standard_normal(),
            "z": 100 * p["x"] + 30 * rng.standard_normal(3)}


@pytest.mark.parametrize("stored", [0, 2])
def test_resume_restores_adaptive_distance_and_local_transition(stored, tmp_path):
    """Distance weights and the epsilon come from the stored state; 0: killed before gen 0."""
    obs = {"y": 1.0, "z": np.array([100.0, 90.0, 110.0])}

    def abc():
        return dabc.ABCSMC(two_stats, dabc.Prior(x=dabc.RV("norm", 0, 1)),
                           distance=dabc.AdaptivePNormDistance(),
                           transition=dabc.LocalTransition(), population_size=50,
                           sampler=dabc.SingleCoreSampler(), seed=SEED, progress=False)

    ref = abc().run(obs, db=f"sqlite:///{tmp_path / 'ref.db'}", max_generations=4)
    url = f"sqlite:///{tmp_path / 'part.db'}"
    assert abc().run(obs, db=url, max_generations=stored).n_populations == stored
    h = dabc.ABCSMC.load(url, sampler=dabc.SingleCoreSampler()).run(max_generations=4)
    assert_same(snapshot(h), snapshot(ref))


def test_resume_with_other_observed_data_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _abc(dabc.SingleCoreSampler()).run(OBS, db=url, max_generations=1)
    abc = dabc.ABCSMC.load(url, sampler=dabc.SingleCoreSampler())
    with pytest.raises(dabc.InputError, match="started with other observed data"):
        abc.run({"y": 2.0}, max_generations=2)
    # the same observed data is fine
    assert abc.run(dict(OBS), max_generations=2).n_populations == 2


def test_load_from_an_empty_database(tmp_path):
    dabc.History(tmp_path / "empty.db", create=True).engine.dispose()  # tables, no run
    with pytest.raises(dabc.InputError, match="No run stored in .*nothing to resume"):
        dabc.ABCSMC.load(f"sqlite:///{tmp_path / 'empty.db'}")
