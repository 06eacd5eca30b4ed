"""The ``dabc`` command line: the installed console script run as a user would run it, and
(for the many small cases, to keep the suite fast) ``dabc.cli.main.main`` in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import dabc
from dabc.cli.main import main
from dabc.cli.redis_cli import main as redis_main

POPULATION, GENERATIONS = 200, 4
COLUMNS = ["run", "t", "m", "model", "id", "weight", "distance", "par_mu", "stat_ybar"]


def dabc_script() -> str:
    here = Path(sys.executable).parent / "dabc"
    found = str(here) if here.exists() else shutil.which("dabc")
    if not found:
        pytest.fail("the 'dabc' console script is not installed; run: python3 -m pip install "
                    "-e '.[test]' (or bash scripts/test.sh)", pytrace=False)
    return found


def run(*args, check_rc: int | None = 0, env: dict | None = None):
    proc = subprocess.run([dabc_script(), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stderr, proc.stderr
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)`` of main() called in this process."""

    def call(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return rc, out, err

    return call


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One real demo run: (database path, completed process)."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    proc = run("demo", "--db", db, "--population", POPULATION, "--procs", 2, "--seed", 3,
               "--generations", GENERATIONS)
    return db, proc


def test_demo_prints_posterior_summary_and_stores_the_run(demo):
    db, proc = demo
    assert db.is_file()
    out = proc.stdout
    for text in ("Posterior", "ABC mean", "ABC sd", "ABC 95% interval", "exact mean",
                 "exact sd", f"generations:   {GENERATIONS}", "simulations:",
                 "final epsilon:", "wall time:", "MulticoreEvalParallelSampler with 2"):
        assert text in out, (text, out)
    row = next(line for line in out.splitlines() if line.strip().startswith("mu "))
    abc_mean, exact_mean = float(row.split()[1]), float(row.split()[5])
    assert abs(abc_mean - exact_mean) < 0.3  # a coarse run, but a real posterior
    h = dabc.History(db)
    assert h.max_t == GENERATIONS - 1
    assert len(h.get_distribution()[0]) == POPULATION


def test_demo_rejects_a_bad_population(tmp_path, cli):
    rc, _, err = cli("demo", "--db", tmp_path / "x.db", "--population", 0)
    assert rc == 2 and "--population" in err
    assert not (tmp_path / "x.db").exists()


def test_info_lists_runs_and_generations(demo):
    db, _ = demo
    out = run("info", db).stdout
    assert "1 run" in out
    for head in ("id", "created", "status", "stop reason", "generations", "simulations",
                 "epsilon", "acceptance rate", "ESS", "wall time"):
        assert head in out, head
    assert "max_generations=4 reached" in out
    gen_rows = [line.split() for line in out.splitlines()[-GENERATIONS:]]
    assert [r[0] for r in gen_rows] == [str(t) for t in range(GENERATIONS)]
    assert gen_rows[0][1] == "inf"
    assert "p(" not in out  # one model: no model probabilities


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A database with two runs, the second one a model selection."""
    db = tmp_path_factory.mktemp("mm") / "mm.db"

    def near(p, rng):
        return {"y": rng.normal(p["a"], 1.0)}

    def far(p, rng):
        return {"y": rng.normal(p["b"] + p["c"], 2.0)}

    prior_a = dabc.Prior(a=dabc.RV("norm", 0, 1))
    dabc.ABCSMC(near, prior_a, population_size=50, sampler=dabc.SingleCoreSampler(), seed=1,
                progress=False).run({"y": 0.5}, db=str(db), max_generations=2)
    dabc.ABCSMC([near, far], [prior_a, dabc.Prior(b=dabc.RV("norm", 0, 1),
                                                  c=dabc.RV("uniform", 0, 1))],
                population_size=60, sampler=dabc.SingleCoreSampler(), seed=2,
                progress=False).run({"y": 0.5}, db=str(db), max_generations=3)
    return db


def test_info_shows_model_probabilities_and_selects_runs(two_models, cli):
    rc, out, _ = cli("info", two_models)
    assert rc == 0
    assert "2 runs" in out and "Run 2:" in out
    assert "p(near)" in out and "p(far)" in out
    assert "parameters b, c" in out
    rc, out, _ = cli("info", two_models, "--run", 1)
    assert rc == 0 and "Run 1:" in out and "p(near)" not in out


def test_export_two_models(two_models, tmp_path, cli):
    out = tmp_path / "mm.csv"
    assert cli("export", two_models, "--generation", "all", "--out", out)[0] == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["run", "t", "m", "model", "id", "weight", "distance", "par_a",
                                "par_b", "par_c", "stat_y"]
    assert len(df) == 3 * 60 and set(df["run"]) == {2}
    assert df.groupby("t")["weight"].sum().tolist() == pytest.approx([1, 1, 1])
    assert df.loc[df["m"] == 0, "par_b"].isna().all()
    assert df.loc[df["m"] == 1, "par_a"].isna().all()
    assert set(df["model"]) <= {"near", "far"}
    assert cli("export", two_models, "--run", 1, "--out", out)[0] == 0
    assert len(pd.read_csv(out)) == 50


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.read_parquet(path)


def _check_export(db, df, generation):
    assert list(df.columns) == COLUMNS
    expected_t = {"last": [GENERATIONS - 1], "all": list(range(GENERATIONS)), "2": [2]}
    assert sorted(set(df["t"])) == expected_t[generation]
    assert len(df) == POPULATION * len(expected_t[generation])
    assert (df["run"] == 1).all() and (df["m"] == 0).all()
    assert df.groupby("t")["weight"].sum().tolist() == pytest.approx(
        [1.0] * len(expected_t[generation]))
    # the exported values are the stored ones
    h = dabc.History(db)
    t = expected_t[generation][-1]
    params, w = h.get_distribution(0, t)
    part = df[df["t"] == t]
    assert part["par_mu"].tolist() == pytest.approx(params["mu"].tolist(), rel=1e-12)
    assert part["weight"].tolist() == pytest.approx(w.tolist(), rel=1e-12)
    h.engine.dispose()


def test_export_with_the_console_script(demo, tmp_path):
    db, _ = demo
    out = tmp_path / "particles.csv"
    proc = run("export", db, "--format", "csv", "--generation", "all", "--out", out)
    df = pd.read_csv(out)
    assert f"wrote {len(df):,} particles" in proc.stderr
    _check_export(db, df, "all")


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
@pytest.mark.parametrize("generation", ["last", "all", "2"])
def test_export(demo, tmp_path, cli, fmt, generation):
    db, _ = demo
    out = tmp_path / f"particles.{fmt}"
    rc, _, err = cli("export", db, "--format", fmt, "--generation", generation, "--out", out)
    assert rc == 0, err
    df = _read(out, fmt)
    assert f"wrote {len(df):,} particles" in err
    _check_export(db, df, generation)


def test_export_to_stdout(demo, cli):
    db, _ = demo
    rc, out, _ = cli("export", db, "--out", "-")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == ",".join(COLUMNS) and len(lines) == POPULATION + 1


# --- errors: one clear line on stderr, a non-zero exit code, no traceback ------------------
def test_missing_database_is_reported_not_created(tmp_path, cli):
    missing = tmp_path / "missing.db"
    proc = run("info", missing, check_rc=1)  # the real script: exit code 1, no traceback
    assert "does not exist" in proc.stderr and proc.stdout == ""
    rc, _, err = cli("export", missing, "--out", tmp_path / "x.csv")
    assert rc == 1 and "does not exist" in err
    assert not missing.exists()


def test_unknown_run(demo, cli):
    db, _ = demo
    rc, _, err = cli("info", db, "--run", 7)
    assert rc == 1 and "No run with id 7" in err
    rc, _, err = cli("export", db, "--run", 7, "--out", "-")
    assert rc == 1 and "No run with id 7" in err


@pytest.mark.parametrize("generation, message", [("99", "has no generation 99"),
                                                 ("-1", "has no generation -1"),
                                                 ("latest", "must be 'last', 'all'")])
def test_bad_generation(demo, tmp_path, cli, generation, message):
    db, _ = demo
    out = tmp_path / "x.csv"
    rc, _, err = cli("export", db, "--generation", generation, "--out", out)
    assert rc == 1 and message in err
    assert not out.exists()


def test_not_a_dabc_database(tmp_path, cli):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    rc, _, err = cli("info", text)
    assert rc == 1 and "not a readable SQLite database" in err
    import sqlite3

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    rc, _, err = cli("info", other)
    assert rc == 1 and "not a dabc database" in err
    rc, _, err = cli("info", tmp_path)
    assert rc == 1 and "folder" in err


def test_unreachable_server(cli):
    rc, _, err = cli("info", "postgresql+psycopg2://127.0.0.1:1/none?connect_timeout=2")
    assert rc == 1 and "Cannot open database" in err


def test_info_and_export_on_postgres(pg_url, tmp_path, cli):
    import cloudpickle
    import numpy as np

    h = dabc.History(pg_url, create=True)
    h.create_run(seed=4, population_size=30, model_names=["m"], param_names=[["mu"]],
                 stat_columns=["y"], observed=cloudpickle.dumps({"y": 0.2}), config=b"",
                 version="test")
    rng = np.random.default_rng(4)
    for t in range(2):
        info = {"epsilon": 1.0 / (t + 1), "n_simulations": 60, "n_evaluated": 60,
                "n_accepted": 30, "acceptance_rate": 0.5, "ess": 25.0, "walltime_s": 0.1,
                "started": None, "finished": None, "model_probabilities": [1.0]}
        arrays = {"theta": rng.normal(size=(30, 1)), "weight": np.full(30, 1 / 30),
                  "distance": rng.random(30), "stats": rng.normal(size=(30, 1)),
                  "id": np.arange(30)}
        h.append_generation(t, info, {0: arrays}, b"")
    h.set_status("done", "test data")
    h.engine.dispose()
    rc, out, err = cli("info", pg_url)
    assert rc == 0, err
    assert "1 run" in out and "test data" in out and "0.5000" in out
    rc, _, err = cli("export", pg_url, "--generation", "all", "--out", tmp_path / "pg.csv")
    assert rc == 0, err
    df = pd.read_csv(tmp_path / "pg.csv")
    assert len(df) == 60 and list(df.columns) == ["run", "t", "m", "model", "id", "weight",
                                                  "distance", "par_mu", "stat_y"]


def test_export_errors(demo, tmp_path, cli):
    db, _ = demo
    rc, _, err = cli("export", db, "--out", tmp_path / "no" / "x.csv")
    assert rc == 1 and "does not exist" in err
    rc, _, err = cli("export", db, "--format", "xml", "--out", tmp_path / "x.xml")
    assert rc == 2 and "invalid choice" in err
    rc, _, err = cli("export", db, "--format", "parquet", "--out", "-")
    assert rc == 1 and "stdout" in err
    rc, _, err = cli("export", db, "--out", tmp_path)
    assert rc == 1 and "folder" in err


def test_parquet_without_pyarrow_says_what_to_install(demo, tmp_path, cli, monkeypatch):
    db, _ = demo
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    out = tmp_path / "x.parquet"
    rc, _, err = cli("export", db, "--format", "parquet", "--out", out)
    assert rc == 1 and "pyarrow" in err and "dabc[export]" in err
    assert not out.exists()


def test_usage(cli):
    rc, out, _ = cli()
    assert rc == 2 and out.startswith("usage: dabc")
    rc, out, _ = cli("--help")
    assert rc == 0 and "demo" in out and "export" in out
    rc, out, _ = cli("--version")
    assert rc == 0 and dabc.__version__ in out
    rc, _, err = cli("info")
    assert rc == 2 and "usage" in err


# --- one exit-code rule for every command, the Redis ones included --------------------------
@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server on 127.0.0.1 (free port, password), stopped by its PID."""
    from redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_redis_commands_exit_1_on_a_dabc_error_through_both_entry_points(redis_server, cli,
                                                                          capsys):
    where = ["--host", redis_server.host, "--port", str(redis_server.port)]
    wrong = [*where, "--password", "wrong-password"]
    # the installed 'dabc' script and 'python -m dabc.cli.redis_cli', as users start them
    for command in (["redis-manager", "info"], ["redis-worker"]):
        for argv in ([dabc_script(), *command, *wrong],
                     [sys.executable, "-m", "dabc.cli.redis_cli", *command, *wrong]):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
            assert proc.returncode == 1, (argv, proc.returncode, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"dabc {command[0]}: error: "), lines
            assert "password" in lines[0] and "Traceback" not in proc.stderr
    # in-process, both mains: the same code and the same line
    rc, out, err = cli("redis-manager", "info", *where)  # no password at all
    assert rc == 1 and out == "" and err.startswith("dabc redis-manager: error: ")
    capsys.readouterr()
    assert redis_main(["redis-manager", "stop", *wrong]) == 1
    assert capsys.readouterr().err.startswith("dabc redis-manager: error: ")
    # and a good password still works, through the same rule
    assert redis_main(["redis-manager", "info", *where, "--password",
                       redis_server.password]) == 0
    assert redis_server.dbsize() == 0


def test_redis_commands_exit_2_on_a_usage_error(cli, capsys):
    rc, _, err = cli("redis-manager", "bogus")
    assert rc == 2 and "invalid choice" in err
    rc, _, err = cli("redis-worker", "--runtime", "soon")
    assert rc == 2 and "not a duration" in err
    capsys.readouterr()
    assert redis_main(["redis-worker", "--port", "not-a-port"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert redis_main([]) == 2  # no command: the help, as for 'dabc'
    assert capsys.readouterr().out.startswith("usage: dabc")
    proc = subprocess.run([sys.executable, "-m", "dabc.cli.redis_cli", "redis-manager"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "usage" in proc.stderr
