"""History on SQLite and on a real PostgreSQL server: what is written is read back exactly."""

from __future__ import annotations

import os
from datetime import datetime

import cloudpickle
import numpy as np
import pandas as pd
import pytest

import dabc
from dabc import History

STATS = ["y", "z[0]", "z[1]"]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """An empty database: a SQLite file, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("pg_url")


def _info(t, eps, n_sim, n_acc, probs):
    now = datetime(2026, 1, 1, 12, 0, t)
    return {"epsilon": eps, "n_simulations": n_sim, "n_evaluated": n_sim + 3,
            "n_accepted": n_acc, "acceptance_rate": n_acc / n_sim, "ess": 0.8 * n_acc,
            "walltime_s": 0.25 * (t + 1), "started": now, "finished": now,
            "model_probabilities": probs}


def write_run(db, seed, n_gens, sizes, model_names=("m0",), param_names=(("a",),),
              stat_columns=STATS, absent=None):
    """A synthetic run: generation t has ``sizes[m]`` particles of model m (model ``absent``
    has none in the last generation). Returns the run id and what was written."""
    rng = np.random.default_rng(seed)
    h = History(db, create=True)
    run_id = h.create_run(seed=seed, population_size=sum(sizes),
                          model_names=list(model_names),
                          param_names=[list(p) for p in param_names],
                          stat_columns=list(stat_columns),
                          observed=cloudpickle.dumps({"y": 1.0}), config=b"cfg", version="test")
    written = []
    for t in range(n_gens):
        per_model = {}
        for m, n in enumerate(sizes):
            if absent == m and t == n_gens - 1:
                continue
            w = rng.random(n)
            per_model[m] = {"theta": rng.normal(size=(n, len(param_names[m]))), "weight": w,
                            "distance": rng.random(n), "stats": rng.normal(size=(n, len(STATS))),
                            "id": np.arange(n, dtype=np.int64) * 3 + m}
        total = sum(a["weight"].sum() for a in per_model.values())
        for a in per_model.values():
            a["weight"] = a["weight"] / total
        probs = [float(per_model[m]["weight"].sum()) if m in per_model else 0.0
                 for m in range(len(sizes))]
        n_acc = sum(len(a["weight"]) for a in per_model.values())
        info = _info(t, float("inf") if t == 0 else 1.0 / t, 10 * n_acc + t, n_acc, probs)
        h.append_generation(t, info, per_model, state=cloudpickle.dumps({"t": t}))
        written.append((info, per_model))
    h.engine.dispose()
    return run_id, written


def test_several_runs_round_trip(db_url):
    r1, w1 = write_run(db_url, 1, 3, [50])
    r2, w2 = write_run(db_url, 2, 4, [30, 20], model_names=("small", "big"),
                       param_names=(("a",), ("b", "c")), absent=1)
    r3, w3 = write_run(db_url, 3, 2, [40])
    assert len({r1, r2, r3}) == 3

    assert History(db_url).id == r3  # the latest run by default
    for run_id, written in [(r1, w1), (r2, w2), (r3, w3)]:
        h = History(db_url, run_id)
        assert h.max_t == len(written) - 1
        assert h.n_populations == len(written)
        assert h.total_simulations == sum(info["n_simulations"] for info, _ in written)
        pops = h.get_all_populations()
        assert list(pops["t"]) == list(range(len(written)))
        for col in ("epsilon", "n_simulations", "n_evaluated", "n_accepted",
                    "acceptance_rate", "ess", "walltime_s"):
            assert list(pops[col]) == [info[col] for info, _ in written], col
        assert pd.Timestamp(pops["started"].iloc[0]) == written[0][0]["started"]
        probs = h.get_model_probabilities()
        assert list(probs.index) == list(range(len(written)))
        np.testing.assert_allclose(probs.to_numpy(),
                                   [info["model_probabilities"] for info, _ in written],
                                   rtol=0, atol=1e-15)
        for t, (_, per_model) in enumerate(written):
            arrays = h.get_arrays(t)
            assert set(arrays) == set(per_model)
            for m, a in per_model.items():
                for key in ("theta", "weight", "distance", "stats", "id"):
                    assert np.array_equal(arrays[m][key], a[key]), (t, m, key)
                params, w = h.get_distribution(m, t)
                assert list(params.columns) == h.param_names[m]
                assert np.array_equal(params.to_numpy(), a["theta"])
                np.testing.assert_allclose(w, a["weight"] / a["weight"].sum(), rtol=1e-15)
                stats, _ = h.get_statistics(m, t)
                assert list(stats.columns) == STATS
                assert np.array_equal(stats.to_numpy(), a["stats"])
        h.engine.dispose()

    # the two-model run: model 1 has no particle in the last generation
    h = History(db_url, r2)
    assert h.model_names == ["small", "big"]
    assert h.param_names == [["a"], ["b", "c"]]
    params, w = h.get_distribution(1)
    assert list(params.columns) == ["b", "c"] and len(params) == 0 and len(w) == 0
    assert h.get_model_probabilities().loc[3].tolist() == pytest.approx([1.0, 0.0])
    params, w = h.get_distribution(0, t=-1)  # negative t counts from the end
    assert np.array_equal(params.to_numpy(), w2[-1][1][0]["theta"])
    assert len(h.get_weighted_distances(0)) == 50

    h.set_status("done", "test finished")
    runs = h.all_runs()
    assert list(runs["id"]) == [r1, r2, r3]
    assert list(runs["generations"]) == [3, 4, 2]
    assert list(runs["simulations"]) == [sum(i["n_simulations"] for i, _ in w)
                                         for w in (w1, w2, w3)]
    assert list(runs["status"]) == ["running", "done", "running"]
    assert runs.loc[runs["id"] == r2, "stop_reason"].item() == "test finished"
    assert History(db_url, r1).seed == 1
    h.engine.dispose()


def test_large_generation_round_trip(db_url):
    n, k = 100_000, 10
    rng = np.random.default_rng(7)
    h = History(db_url, create=True)
    h.create_run(seed=7, population_size=n, model_names=["big"], param_names=[["a", "b"]],
                 stat_columns=[f"s[{i}]" for i in range(k)], observed=b"", config=b"",
                 version="test")
    a = {"theta": rng.normal(size=(n, 2)), "weight": np.full(n, 1 / n),
         "distance": rng.random(n), "stats": rng.normal(size=(n, k)) * 1e6,
         "id": rng.permutation(n).astype(np.int64)}
    a["stats"][0, 0] = np.nextafter(1.0, 2.0)  # last bit must survive
    h.append_generation(0, _info(0, 1.0, n, n, [1.0]), {0: a}, state=b"")
    back = History(db_url, h.id)
    arrays = back.get_arrays(0)[0]
    for key, value in a.items():
        assert arrays[key].dtype == value.dtype
        assert np.array_equal(arrays[key], value), key
    stats, w = back.get_statistics(0)
    assert stats.shape == (n, k) and np.array_equal(stats.to_numpy(), a["stats"])
    assert back.total_simulations == n
    h.engine.dispose()
    back.engine.dispose()


def test_unwritable_path_is_an_input_error(tmp_path):
    with pytest.raises(dabc.InputError, match="does not exist"):
        History(tmp_path / "no-such-folder" / "h.db", create=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(dabc.InputError):
        History(f"sqlite:///{blocker}/h.db", create=True)
    with pytest.raises(dabc.InputError):
        History("/proc/dabc-cannot-write-here.db", create=True)  # unwritable even for root
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(dabc.InputError, match="permission"):
                History(ro / "h.db", create=True)
        finally:
            ro.chmod(0o700)


def test_unreachable_postgres_is_an_input_error():
    with pytest.raises(dabc.InputError, match="Cannot open"):
        History("postgresql+psycopg2://127.0.0.1:1/nothing?connect_timeout=2")


# --- end to end: a real run stored in PostgreSQL, then resumed from it -----------------
def gauss(params, rng):
    return {"y": rng.normal(params["mu"], 1.0)}


PRIOR = dabc.Prior(mu=dabc.RV("norm", 0, 2))


def test_abcsmc_run_and_resume_on_postgres(pg_url, tmp_path):
    abc = dabc.ABCSMC(gauss, PRIOR, population_size=200, sampler=dabc.SingleCoreSampler(),
                      seed=11, progress=False)
    h = abc.run({"y": 1.0}, db=pg_url, max_generations=3)
    assert h.max_t == 2
    first = {t: h.get_arrays(t)[0] for t in range(3)}
    eps = list(h.get_all_populations()["epsilon"])
    sims = h.total_simulations
    run = h.all_runs().iloc[0]
    assert run["status"] == "done" and "max_generations=3" in run["stop_reason"]
    h.engine.dispose()

    resumed = dabc.ABCSMC.load(pg_url, sampler=dabc.SingleCoreSampler(), progress=False)
    h2 = resumed.run(max_generations=4)
    assert h2.id == h.id and h2.max_t == 3
    assert list(h2.get_all_populations()["epsilon"])[:3] == eps
    assert h2.total_simulations > sims
    for t, a in first.items():
        assert all(np.array_equal(h2.get_arrays(t)[0][k], a[k]) for k in a)
    runs = h2.all_runs()
    assert len(runs) == 1 and runs.iloc[0]["generations"] == 4
    assert runs.iloc[0]["status"] == "done"
    params, w = h2.get_distribution()
    assert len(params) == 200 and w.sum() == pytest.approx(1)

    # resuming gives exactly the generation an uninterrupted run gives
    straight = dabc.ABCSMC(gauss, PRIOR, population_size=200,
                           sampler=dabc.SingleCoreSampler(), seed=11, progress=False)
    h3 = straight.run({"y": 1.0}, db=str(tmp_path / "straight.db"), max_generations=4)
    a3, a2 = h3.get_arrays(3)[0], h2.get_arrays(3)[0]
    for k in a3:
        assert np.array_equal(a3[k], a2[k]), k
    h2.engine.dispose()
    h3.engine.dispose()


# --- reading, exporting and summarising stored runs (dabc.storage.read/export/summary) ---
def test_database_names_are_parsed_in_one_place(tmp_path):
    from dabc.storage import database_url, display_url, sqlite_path

    assert database_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert sqlite_path(f"sqlite:///{tmp_path / 'a.db'}?timeout=3") == str(tmp_path / "a.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql+psycopg2://u@h/d") is None
    shown = display_url("postgresql+psycopg2://me:secret@127.0.0.1/runs")
    assert "secret" not in shown and shown.startswith("postgresql+psycopg2://me:")
    assert display_url("plain/path.db") == "plain/path.db"
    # History checks the folder of a SQLite URL with a query string like any other
    with pytest.raises(dabc.InputError, match="does not exist"):
        History(f"sqlite:///{tmp_path / 'no-such-folder' / 'h.db'}?timeout=1", create=True)


def test_open_history_never_creates_a_database(tmp_path):
    from dabc.storage import open_history

    missing = tmp_path / "missing.db"
    with pytest.raises(dabc.InputError, match="does not exist"):
        open_history(missing)
    assert not missing.exists()
    db = f"sqlite:///{tmp_path / 'h.db'}"
    write_run(db, seed=1, n_gens=2, sizes=[5])
    write_run(db, seed=2, n_gens=1, sizes=[4])
    history, runs = open_history(db)
    assert history.id == 2 and runs["id"].tolist() == [1, 2]
    history, _ = open_history(db, run=1)
    assert history.id == 1 and history.max_t == 1
    with pytest.raises(dabc.InputError, match="No run with id 9 .*stored runs: 1, 2"):
        open_history(db, run=9)
    history.engine.dispose()


def test_storage_logs_opening_each_generation_and_a_failed_write(tmp_path, caplog):
    import logging
    import sqlite3

    path = tmp_path / "log.db"
    url = f"sqlite:///{path}?timeout=0.2"
    with caplog.at_level(logging.DEBUG, logger="dabc.storage"):
        run_id, _ = write_run(url, seed=3, n_gens=2, sizes=[7])
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "dabc.storage"]
    assert ("INFO", f"created the dabc tables in sqlite:///{path}?timeout=0.2") in messages
    assert any(lv == "INFO" and m.startswith("opened database") for lv, m in messages)
    stored = [m for lv, m in messages if lv == "DEBUG" and m.startswith("stored generation")]
    assert len(stored) == 2 and all(f"of run {run_id}: 7 particles" in m for m in stored)

    h = History(url, run_id)
    blocker = sqlite3.connect(path, timeout=0.2)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    caplog.clear()
    try:
        with pytest.raises(dabc.InputError, match="Could not store generation 2"):
            h.append_generation(2, _info(2, 0.5, 20, 7, [1.0]), {}, state=b"")
    finally:
        blocker.rollback()
        blocker.close()
    errors = [r for r in caplog.records if r.name == "dabc.storage" and r.levelname == "ERROR"]
    assert len(errors) == 1 and "could not store generation 2" in errors[0].getMessage()
    assert h.max_t == 1  # nothing of the failed generation is stored
    h.engine.dispose()


def test_export_particles_to_a_file_and_a_stream(tmp_path):
    import io

    from dabc.storage import export_particles, open_history, particles_frame

    db = f"sqlite:///{tmp_path / 'x.db'}"
    _, written = write_run(db, seed=4, n_gens=3, sizes=[6, 4], model_names=("p", "q"),
                           param_names=(("a",), ("a", "b")))
    history, _ = open_history(db)
    df = particles_frame(history, [0, 2])
    assert list(df.columns) == ["run", "t", "m", "model", "id", "weight", "distance", "par_a",
                                "par_b", "stat_y", "stat_z[0]", "stat_z[1]"]
    assert len(df) == 20 and df.groupby("t")["weight"].sum().tolist() == pytest.approx([1, 1])
    assert df.loc[df["m"] == 0, "par_b"].isna().all()
    last = written[2][1]
    assert df.loc[(df.t == 2) & (df.m == 1), "par_b"].tolist() == last[1]["theta"][:, 1].tolist()
    out = tmp_path / "p.csv"
    assert len(export_particles(history, out, "csv", "all")) == 30
    assert len(pd.read_csv(out)) == 30
    stream = io.StringIO()
    export_particles(history, stream, "json", 1)
    assert stream.getvalue().endswith("]\n") and len(pd.read_json(io.StringIO(
        stream.getvalue()))) == 10
    with pytest.raises(dabc.InputError, match="stdout"):
        export_particles(history, io.StringIO(), "parquet")
    with pytest.raises(dabc.InputError, match="has no generation 5; stored generations are 0..2"):
        export_particles(history, out, "csv", 5)
    with pytest.raises(dabc.InputError, match="Unknown export format 'xml'"):
        export_particles(history, out, "xml")
    history.engine.dispose()


def test_posterior_summary_of_a_weighted_sample():
    from dabc.storage import posterior_summary, weighted_quantile

    x = np.array([3.0, 1.0, 2.0, 4.0])
    assert weighted_quantile(x, np.ones(4), 0.5) == pytest.approx(2.5)
    # each value at the middle of its weight's step: 0 at 1/8, 1 at 5/8, interpolated between
    assert weighted_quantile(np.array([1.0, 0.0]), np.array([3.0, 1.0]), 0.5) == pytest.approx(0.75)
    assert weighted_quantile(x, np.ones(4), 0.0) == 1.0  # clamped to the smallest value
    rng = np.random.default_rng(5)
    values = rng.normal(2.0, 3.0, 200_000)
    s = posterior_summary(values, np.full(values.size, 7.0))  # weights need not sum to 1
    assert s["mean"] == pytest.approx(2.0, abs=0.03) and s["sd"] == pytest.approx(3.0, rel=0.01)
    assert s["q025"] == pytest.approx(2.0 - 1.96 * 3.0, abs=0.05)
    assert s["q975"] == pytest.approx(2.0 + 1.96 * 3.0, abs=0.05)
