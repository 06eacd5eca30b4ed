"""Run a small ABC-SMC into an SQLite file; tests/test_resume.py kills it mid-run.

Usage: python resume_run.py DB_PATH SEED MAX_GENERATIONS STARTED_MARKER

The model is defined in ``__main__``, so cloudpickle stores it by value in the run's config
and ``dabc.ABCSMC.load`` can rebuild it in another process. Each evaluation sleeps a few
milliseconds, so a generation takes a few tenths of a second: long enough to kill the run
between generations. STARTED_MARKER is created by the first evaluation, i.e. once the run
and its tables exist in the database.
"""

import os
import sys
import time

import dabc

SLEEP_S = 0.004
POPULATION_SIZE = 40
OBSERVED = {"y": 1.0}


def make_model(started_marker: str):
    def model(p, rng):
        if not os.path.exists(started_marker):
            open(started_marker, "a").close()
        time.sleep(SLEEP_S)
        return {"y": p["x"] + 0.5 * rng.standard_normal()}

    return model


def main() -> None:
    db, seed, max_generations, started = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        sys.argv[4]
    abc = dabc.ABCSMC(make_model(started), dabc.Prior(x=dabc.RV("norm", 0, 2)),
                      population_size=POPULATION_SIZE,
                      sampler=dabc.MulticoreEvalParallelSampler(2), seed=seed, progress=False)
    h = abc.run(OBSERVED, db=f"sqlite:///{db}", max_generations=max_generations)
    print(f"done: {h.n_populations} generations")


if __name__ == "__main__":
    main()
