"""Write the stored-run fixture ``stored_run_v0.1.0.db`` with dabc 0.1.0 (run once, by hand).

The fixture is a small run stored by the release before the explicit config format
(``dabc.engine.config``): its ``config`` and ``state`` columns hold cloudpickled engine
attributes. ``tests/test_stored_runs.py`` checks that every later dabc still loads it and
resumes it bit-identically to the run that was never interrupted, whose generations this
script stores beside it (``stored_run_v0.1.0_expected.npz``).

It was made from a pristine checkout of the v0.1.0 release (a git worktree at
/tmp/dabc_release) with::

    PYTHONPATH=/tmp/dabc_release/src python3 tests/data/make_stored_run.py

Do not re-run it with a newer dabc: the point of the fixture is that an old release wrote it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stored_run_model import OBSERVED, scaled, shift  # noqa: E402

import dabc  # noqa: E402

DB = HERE / "stored_run_v0.1.0.db"
EXPECTED = HERE / "stored_run_v0.1.0_expected.npz"
SEED = 20240501
STORED, TOTAL = 3, 6  # generations in the fixture; generations of the uninterrupted run
FIELDS = ("theta", "weight", "distance", "stats", "id")


def make_abc() -> dabc.ABCSMC:
    """The run of the fixture: two models and non-default components everywhere."""
    return dabc.ABCSMC(
        [shift, scaled],
        [dabc.Prior(x=dabc.RV("norm", 0, 2)),
         dabc.Prior(a=dabc.RV("uniform", -3, 6), s=dabc.RV("gamma", 2, scale=0.5))],
        distance=dabc.AdaptivePNormDistance(p=1, scale="std"),
        population_size=120, sampler=dabc.SingleCoreSampler(), seed=SEED,
        epsilon=dabc.QuantileEpsilon(alpha=0.4, multiplier=1.05),
        transition=dabc.MultivariateNormalTransition(scaling=0.9, bandwidth="scott"),
        model_prior=[0.6, 0.4], model_names=["shift", "scaled"], stay_probability=0.8,
        max_failure_rate=0.2, progress=False)


def expected(h: dabc.History) -> dict[str, np.ndarray]:
    """Every generation of a run as flat arrays (the keys ``tests/test_stored_runs.py`` reads)."""
    pops = h.get_all_populations()
    out = {"t": pops.t.to_numpy(), "epsilon": pops.epsilon.to_numpy(),
           "n_simulations": pops.n_simulations.to_numpy(),
           "model_probabilities": h.get_model_probabilities().to_numpy()}
    for t in pops.t:
        for m, a in h.get_arrays(int(t)).items():
            for f in FIELDS:
                out[f"g{int(t)}_m{m}_{f}"] = a[f]
    return out


def main() -> None:
    print("dabc", dabc.__version__, "from", dabc.__file__)
    if dabc.__version__ != "0.1.0":
        raise SystemExit("run this with dabc 0.1.0 (see the module docstring)")
    DB.unlink(missing_ok=True)
    h = make_abc().run(OBSERVED, db=f"sqlite:///{DB}", max_generations=STORED)
    assert h.n_populations == STORED
    with tempfile.TemporaryDirectory() as tmp:
        ref = make_abc().run(OBSERVED, db=f"sqlite:///{Path(tmp) / 'ref.db'}",
                             max_generations=TOTAL)
        assert ref.n_populations == TOTAL
        np.savez_compressed(EXPECTED, **expected(ref))
    print(f"wrote {DB} ({DB.stat().st_size} bytes) and {EXPECTED} "
          f"({EXPECTED.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
