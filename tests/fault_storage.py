"""Helpers of the storage cases of tests/test_faults.py (issue 16, cases 9-11) that run in
child processes, so they live in a module a child can import."""

from __future__ import annotations

import sys


def start_run(db: str, barrier, results) -> None:
    """Wait at ``barrier`` with the other processes, then open ``db`` and create a run.

    Puts ``("ok", run_id)`` or ``("error", "<type>: <message>")`` on ``results``.
    """
    import dabc

    barrier.wait(timeout=120)
    try:
        history = dabc.History(db, create=True)
        run_id = history.create_run(seed=1, population_size=10, model_names=["m"],
                                    param_names=[["a"]], stat_columns=["y"], observed=b"",
                                    config=b"", version="fault-suite")
        history.engine.dispose()
        results.put(("ok", int(run_id)))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def gauss(params, rng):
    """y ~ N(mu, 1)."""
    return {"y": rng.normal(params["mu"], 1.0)}


def write_run(db: str, generations: int, population: int) -> None:
    """Run a small ABC-SMC of ``generations`` generations into ``db`` (a child process)."""
    import dabc

    # slowly falling thresholds: most simulations are accepted, so many generations are quick
    schedule = dabc.ListEpsilon([3.0 - 0.1 * t for t in range(generations)])
    abc = dabc.ABCSMC(gauss, dabc.Prior(mu=dabc.RV("norm", 0, 1)),
                      population_size=population, sampler=dabc.SingleCoreSampler(), seed=3,
                      epsilon=schedule, progress=False)
    history = abc.run({"y": 0.4}, db=db, max_generations=generations)
    history.engine.dispose()


if __name__ == "__main__":  # python fault_storage.py DB GENERATIONS POPULATION
    write_run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
