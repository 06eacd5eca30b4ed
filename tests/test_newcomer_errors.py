"""Errors that name the real cause, for the mistakes a newcomer makes first (issue 15).

Each test states the mistake, and asserts the message that now says what is wrong and what
to do (the message before the fix is quoted in a comment). Everything is real: SQLite files
and a PostgreSQL schema, real runs of dabc.ABCSMC, the dabc command line called in this
process, and real subprocesses for what only a user's script shows (its tracebacks, Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

import dabc
from dabc.cli.main import main
from dabc.cli.redis_cli import main as redis_main


def gauss(p, rng):
    return {"y": p["mu"] + rng.standard_normal()}


def wide(p, rng):
    return {"y": p["mu"] + 3.0 * rng.standard_normal()}


PRIOR = dabc.Prior(mu=dabc.RV("norm", 0, 1))


def _run(db, models=gauss, priors=PRIOR, **kwargs):
    abc = dabc.ABCSMC(models, priors, population_size=30, sampler=dabc.SingleCoreSampler(),
                      seed=3, progress=False, **kwargs)
    return abc.run({"y": 0.4}, db=db, max_generations=2)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A database with run 1 (one model) and run 2 (models 'narrow' and 'wide')."""
    db = tmp_path_factory.mktemp("runs") / "runs.db"
    _run(db)
    _run(db, [gauss, wide], [PRIOR, PRIOR], model_names=["narrow", "wide"])
    return db


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)`` of ``dabc`` called in this process."""

    def call(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return rc, out, err

    return call


# --- (a) reading never creates a database --------------------------------------------------
def test_history_and_load_of_a_missing_file_create_nothing(tmp_path, monkeypatch):
    # before: both silently created an empty database (and load then said "No run stored")
    monkeypatch.chdir(tmp_path)
    for call in (lambda: dabc.History("nosuch.db"),
                 lambda: dabc.ABCSMC.load("sqlite:///nosuch2.db")):
        with pytest.raises(dabc.InputError, match=r"Database file 'nosuch2?\.db' does not exist "
                           r"\(in '.*'\)\. Check the path \(runs are written by "
                           r"ABCSMC\.run\(db=\.\.\.\); reading never creates a database\)"):
            call()
    with pytest.raises(dabc.InputError, match=r"'sub/x\.db' does not exist \(folder '.*sub' "
                       "does not exist\\)"):
        dabc.History("sub/x.db")
    with pytest.raises(dabc.InputError, match="is a folder, not a database file"):
        dabc.History(tmp_path)
    assert os.listdir(tmp_path) == []


def test_info_and_export_of_a_missing_file_create_nothing(tmp_path, cli):
    missing = tmp_path / "missing.db"
    for args in (("info", missing), ("export", missing, "--out", tmp_path / "x.csv")):
        rc, out, err = cli(*args)
        assert rc == 1 and out == ""
        assert err.startswith(f"dabc {args[0]}: error: Database file '{missing}' does not "
                              "exist") and "ABCSMC.run(db=...)" in err, err
    assert os.listdir(tmp_path) == []


def test_a_file_without_dabc_tables_is_left_alone(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(dabc.InputError, match=r"'.*empty\.db' is not a dabc database: it has no "
                       r"dabc_runs table \(nothing was created in it\)"):
        dabc.History(empty)
    assert empty.read_bytes() == b"" and os.listdir(tmp_path) == ["empty.db"]


def test_reading_an_empty_postgres_schema_creates_no_table(pg_url):
    import sqlalchemy as sa

    with pytest.raises(dabc.InputError, match="is not a dabc database: it has no dabc_runs "
                       "table"):
        dabc.History(pg_url)
    with pytest.raises(dabc.InputError, match="is not a dabc database"):
        dabc.ABCSMC.load(pg_url)
    engine = sa.create_engine(dabc.storage.database_url(pg_url))
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    # a writer still creates what it needs
    h = dabc.History(pg_url, create=True)
    assert h.id is None and h.all_runs().empty
    h.engine.dispose()


def test_the_first_write_adds_the_tables_an_older_database_lacks(tmp_path):
    """A reader opens a dabc database as it is; a run continued through it (a writer) adds
    the tables of newer dabc versions, as the v0.1.0 fixture's resume needs."""
    import sqlite3

    db = tmp_path / "old.db"
    _run(db).engine.dispose()
    con = sqlite3.connect(db)
    con.execute("DROP TABLE dabc_live")
    con.execute("DROP TABLE dabc_events")
    con.commit()
    con.close()
    h = dabc.History(db)
    assert h.live_state() is None and h.events().empty  # read: nothing created
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert "dabc_live" not in tables
    h.set_status("done", "by the test")  # a write
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"dabc_live", "dabc_events"} <= tables


# --- (b) a run id that is not stored -------------------------------------------------------
def test_a_missing_run_id_lists_the_runs(two_runs):
    # before: "Run 5 in sqlite:///.../runs.db has no stored generation yet."
    with pytest.raises(dabc.InputError) as info:
        dabc.History(two_runs, run_id=5)
    assert str(info.value) == (f"No run with id 5 in {two_runs}; runs there: 1, 2 (see "
                               f"'dabc info {two_runs}').")
    with pytest.raises(dabc.InputError, match="No run with id 5 .*runs there: 1, 2"):
        dabc.ABCSMC.load(two_runs, run_id=5)


# --- (c) prior parameters checked when the prior is built ----------------------------------
@pytest.mark.parametrize("args, message", [
    # before: accepted; the run then failed with a ModelError blaming the model
    (("uniform", 0, -1), "RV('uniform', 0, -1): scale must be > 0 (got -1); uniform's "
                         "parameters are loc, scale."),
    (("norm", 0, 0), "RV('norm', 0, 0): scale must be > 0 (got 0); norm's parameters are loc, "
                     "scale."),
    (("gamma", -1), "RV('gamma', -1): a must be > 0 (got -1); gamma's parameters are a, loc, "
                    "scale."),
    (("binom", 10, 1.5), "RV('binom', 10, 1.5): p must be in [0, 1] (got 1.5); binom's "
                         "parameters are n, p, loc."),
    (("binom", 2.5, 0.5), "RV('binom', 2.5, 0.5): n must be a whole number >= 0 (got 2.5); "
                          "binom's parameters are n, p, loc."),
    (("norm", 0, float("nan")), "RV('norm', 0, nan): scale must be a finite number (got nan); "
                                "norm's parameters are loc, scale."),
    (("norm", 0, 1, 2), "RV('norm', 0, 1, 2): norm takes at most 2 arguments (3 given); "
                        "norm's parameters are loc, scale."),
])
def test_bad_prior_parameters_are_refused_with_their_names(args, message):
    with pytest.raises(dabc.InputError) as info:
        dabc.RV(*args)
    assert str(info.value) == message


def test_bad_keyword_and_joint_parameters():
    with pytest.raises(dabc.InputError, match=r"^RV\('norm', scal=2\): norm has no parameter "
                       r"'scal' \(did you mean scale=\?\); norm's parameters are loc, scale\.$"):
        dabc.RV("norm", scal=2)
    with pytest.raises(dabc.InputError, match=r"RV\('gamma', a=2\.0, scale=-1\): scale must be "
                       r"> 0 \(got -1\)"):
        dabc.RV("gamma", a=2.0, scale=-1)
    with pytest.raises(dabc.InputError, match=r"RV\('randint', 5, 2\): scipy\.stats\.randint "
                       r"rejects the shape parameters low=5, high=2 together"):
        dabc.RV("randint", 5, 2)
    with pytest.raises(dabc.InputError, match=r"^Prior parameter 'x': scipy\.stats\.uniform\(0, "
                       r"-1\): scale must be > 0 \(got -1\)"):
        dabc.Prior(x=scipy.stats.uniform(0, -1))  # a frozen distribution is checked too


def test_valid_priors_are_unchanged():
    prior = dabc.Prior(a=dabc.RV("gamma", 2.0, scale=3.0), b=dabc.RV("beta", a=2, b=3),
                       c=dabc.RV("randint", 0, 10), d=dabc.RV("binom", 10, 0.5),
                       e=scipy.stats.lognorm(0.5), f=dabc.RV("uniform", -1, 2))
    x = prior.rvs(2000, np.random.default_rng(1))
    assert np.isfinite(prior.logpdf(x)).all()
    # a: gamma(2, scale 3) has mean 6, sd sqrt(18): 6 standard errors is ~0.57
    assert abs(x[:, 0].mean() - 6.0) < 6 * np.sqrt(18 / 2000)


def test_a_run_with_a_bad_prior_fails_before_any_simulation(tmp_path):
    calls = []

    def counting(p, rng):
        calls.append(1)
        return {"y": 0.0}

    with pytest.raises(dabc.InputError, match="scale must be > 0"):
        dabc.ABCSMC(counting, dabc.Prior(mu=dabc.RV("uniform", 0, -1)))
    assert calls == [] and os.listdir(tmp_path) == []


# --- (d) missing shape parameters, unknown names -------------------------------------------
def test_a_missing_shape_parameter_shows_an_example():
    # before: "RV('gamma', (), {}): _parse_args() missing 1 required positional argument: 'a'"
    with pytest.raises(dabc.InputError) as info:
        dabc.RV("gamma")
    assert str(info.value) == ("RV('gamma') needs its shape parameter a: e.g. RV('gamma', 2.0) "
                               "or RV('gamma', a=2.0, scale=1.0).")
    with pytest.raises(dabc.InputError) as info:
        dabc.RV("beta", 2.0)
    assert str(info.value) == ("RV('beta', 2.0) needs its shape parameters a, b (b missing): "
                               "e.g. RV('beta', 2.0, 2.0) or RV('beta', a=2.0, b=2.0, "
                               "scale=1.0).")
    with pytest.raises(dabc.InputError) as info:
        dabc.RV("binom")
    assert str(info.value) == ("RV('binom') needs its shape parameters n, p: e.g. RV('binom', "
                               "2, 0.5) or RV('binom', n=2, p=0.5, loc=0).")
    dabc.RV("binom", 2, 0.5)  # the examples given work
    dabc.RV("randint", 2, 5)
    with pytest.raises(dabc.InputError, match=r"e\.g\. RV\('randint', 2, 5\)"):
        dabc.RV("randint")


def test_an_unknown_distribution_suggests_the_closest_names():
    # before: "RV('gama'): no such scipy.stats distribution; use a name such as 'norm', ..."
    with pytest.raises(dabc.InputError, match=r"^RV\('gama'\): no such scipy\.stats "
                       r"distribution\. Did you mean 'gamma' \(or "):
        dabc.RV("gama")
    with pytest.raises(dabc.InputError, match=r"RV\('normal'\): .*Did you mean 'norm'"):
        dabc.RV("normal", 0, 1)
    with pytest.raises(dabc.InputError, match=r"RV\('xyzzy'\): no such scipy\.stats "
                       r"distribution\. Use a name such as 'norm'"):
        dabc.RV("xyzzy")
    with pytest.raises(dabc.InputError, match="the first argument is the name of a scipy.stats "
                       "distribution"):
        dabc.RV(scipy.stats.norm)


# --- (e) a model index that the run does not have ------------------------------------------
def test_a_model_index_out_of_range_names_the_models(two_runs):
    # before: a bare "IndexError: list index out of range"
    one = dabc.History(two_runs, run_id=1)
    with pytest.raises(dabc.InputError) as info:
        one.get_distribution(m=1)
    assert str(info.value) == (f"m=1 is not a model of run 1 in {two_runs}: it has 1 model, "
                               "m=0 ('gauss'); give m=0.")
    two = dabc.History(two_runs, run_id=2)
    for call in (lambda: two.get_distribution(m=2), lambda: two.get_statistics(m=-1),
                 lambda: two.get_arrays(m=2)):
        with pytest.raises(dabc.InputError, match=r"is not a model of run 2 .*: it has 2 models, "
                           r"m=0 \('narrow'\), m=1 \('wide'\); give m in 0\.\.1\."):
            call()
    assert len(two.get_distribution(m=1)[1]) + len(two.get_distribution(m=0)[1]) == 30


# --- (f) a mistyped database URL -----------------------------------------------------------
@pytest.mark.parametrize("url, message", [
    # before: "Cannot open database 'sqlite://runs.db': ArgumentError: Invalid SQLite URL:
    # sqlite://runs.db. Check the URL and that the server is running." (dabc info)
    ("sqlite://runs.db", r"'sqlite://runs\.db' is not a valid SQLite URL: it needs three "
                         r"slashes before a relative path and four before an absolute one\. "
                         r"Did you mean 'sqlite:///runs\.db'\?"),
    # before: "... NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:sqlit. Check the
    # URL and that the server is running."
    ("sqlit:///x.db", r"'sqlit:///x\.db': unknown database type 'sqlit' \(the part before "
                      r"'://'\)\. Did you mean 'sqlite'\? Write a SQLite file as "
                      r"'sqlite:///runs\.db'"),
    ("postgresql+nodriver://u@127.0.0.1/d", r"SQLAlchemy knows no driver 'nodriver' for "
                                            r"postgresql"),
    ("sqlite:runs.db", r"'sqlite:runs\.db' is not a database URL: it lacks the '://'"),
    # before (dabc info): "Database file '/nodir/x.db' does not exist. Give the path ..."
    ("sqlite:////no-such-dir-dabc/x.db", r"Database file '/no-such-dir-dabc/x\.db' does not "
                                         r"exist \(folder '/no-such-dir-dabc' does not "
                                         r"exist\)"),
])
def test_a_mistyped_url_names_the_right_form(url, message, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(dabc.InputError, match=message):
        dabc.History(url)
    rc, out, err = cli("info", url)
    assert rc == 1 and "server is running" not in err
    if "does not exist" not in message:  # open_history words a missing file its own way
        assert err.startswith("dabc info: error: ") and len(err.strip().splitlines()) == 1
        with pytest.raises(dabc.InputError, match=message):  # a writer is told the same
            _run(url)
    assert os.listdir(tmp_path) == []


def test_a_missing_folder_for_a_new_run_is_named(tmp_path):
    with pytest.raises(dabc.InputError, match=r"Cannot create the database '.*x\.db': folder "
                       r"'.*nodir' does not exist\. Create the folder"):
        _run(f"sqlite:///{tmp_path / 'nodir' / 'x.db'}")


# --- (g) a model's traceback names the user's file -----------------------------------------
USER_SCRIPT = textwrap.dedent('''\
    import sys

    import dabc
    from dabc._compat.cloudpickle import dumps


    def model(p, rng):
        x = p["mu"]
        raise ValueError(f"simulator broke at {x:.2f}")  # line 9 of the user's file


    if __name__ == "__main__":
        abc = dabc.ABCSMC(model, dabc.Prior(mu=dabc.RV("norm", 0, 1)), population_size=10,
                          sampler=dabc.MulticoreEvalParallelSampler(n_procs=1), seed=1,
                          progress=False)
        try:
            abc.run({"y": 0.5}, db=sys.argv[1], max_generations=1)
        except dabc.ModelError as exc:
            print(exc)
        with open(sys.argv[2], "wb") as f:
            f.write(dumps(model))
''')


def test_a_model_traceback_shows_the_users_file_and_line(tmp_path):
    script = tmp_path / "user_model.py"
    script.write_text(USER_SCRIPT)
    blob = tmp_path / "model.pickle"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "m.db"), str(blob)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    # before: File "<dynamic-code>", line 9, in model (and no source line)
    assert "<dynamic-code>" not in proc.stdout
    assert (f'File "{script}", line 9, in model\n    raise ValueError(f"simulator broke at '
            '{x:.2f}")') in proc.stdout, proc.stdout
    # on a machine without the file (a remote worker): the source travelled with the code
    script.unlink()
    reader = ("import pickle, sys, traceback\n"
              f"f = pickle.load(open({str(blob)!r}, 'rb'))\n"
              "try:\n    f({'mu': 1.0}, None)\n"
              "except ValueError:\n    traceback.print_exc(file=sys.stdout)\n")
    proc = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert (f'File "{script}", line 9, in model\n    raise ValueError(f"simulator broke at '
            '{x:.2f}")') in proc.stdout, proc.stdout


def test_code_pickled_with_its_file_name_still_loads_with_plain_pickle():
    from dabc._compat.cloudpickle import dumps

    ns: dict = {}
    exec(compile("def f(x):\n    return x * 2\n", "<a string>", "exec"), ns)
    g = pickle.loads(dumps(ns["f"]))  # no file: nothing to carry, still works
    assert g(21) == 42 and g.__code__.co_filename == "<a string>"


# --- (h) each command's errors carry its own name ------------------------------------------
def test_redis_commands_name_themselves_in_errors(cli, capsys):
    # before (issue 15): redis-manager errors began with "dabc info: error:"
    where = ("--host", "127.0.0.1", "--port", "1")
    for command in (("redis-manager", "info"), ("redis-worker",)):
        rc, out, err = cli(*command, *where)
        assert rc == 1 and err.startswith(f"dabc {command[0]}: error: Cannot reach Redis at "
                                          "127.0.0.1:1"), err
        capsys.readouterr()
        assert redis_main([*command, *where]) == 1
        assert capsys.readouterr().err.startswith(f"dabc {command[0]}: error: ")
    assert main(["redis-manager"]) == 2  # argparse's usage error, named by the subcommand
    assert "dabc redis-manager: error: the following arguments are required" in \
        capsys.readouterr().err


# --- (i) Ctrl-C: "interrupted", and one line on how to resume --------------------------------
SLOW_SCRIPT = textwrap.dedent('''\
    import sys
    import time

    import dabc


    def model(p, rng):
        time.sleep(0.01)
        return {"y": p["mu"] + rng.standard_normal()}


    abc = dabc.ABCSMC(model, dabc.Prior(mu=dabc.RV("norm", 0, 1)), population_size=100,
                      sampler=dabc.MulticoreEvalParallelSampler(n_procs=2), seed=1,
                      progress=False)
    abc.run({"y": 0.5}, db=sys.argv[1], max_generations=100)
''')


def _stored_generations(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return -1
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM dabc_generations").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet
        return -1


@pytest.mark.timeout(180)
def test_ctrl_c_in_a_script_stores_interrupted_and_prints_one_line(tmp_path, cli):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT)
    db = tmp_path / "int.db"
    # a new session, so that the SIGINT goes to the whole group as a terminal's Ctrl-C does
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _stored_generations(db) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no generation stored in 120 s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("dabc: stopped by SIGINT, ")
    assert f"dabc resume {db} --run 1" in lines[0]
    assert f"dabc.ABCSMC.load({str(db)!r}, run_id=1).run(...)" in lines[0]
    rc, out, _ = cli("info", db)
    assert rc == 0
    row = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert " interrupted " in row and "stopped by SIGINT" in row and "failed" not in row


def test_a_keyboard_interrupt_the_handler_did_not_see_is_not_a_failure(tmp_path, caplog):
    """A KeyboardInterrupt that reaches the run (a second Ctrl-C, or one raised by other
    code) is stored as "interrupted" with one WARNING on how to resume, and propagates."""
    # before: status "failed", stop reason "stopped by an error in generation 1"
    calls = []

    def model(p, rng):
        calls.append(1)
        if len(calls) > 40:  # after some results of the second generation
            raise KeyboardInterrupt
        return {"y": p["mu"] + rng.standard_normal()}

    db = tmp_path / "k.db"
    abc = dabc.ABCSMC(model, PRIOR, population_size=30, sampler=dabc.SingleCoreSampler(),
                      seed=3, progress=False)
    with caplog.at_level(logging.WARNING, logger="dabc"), pytest.raises(KeyboardInterrupt):
        abc.run({"y": 0.4}, db=db, max_generations=3)
    runs = dabc.History(db).all_runs()
    assert runs.status.tolist() == ["interrupted"]
    reason = runs.stop_reason[0]
    # with results saved when the interrupt came after the generation's first task; inside
    # it (SingleCoreSampler sizes tasks by measured time, so a fast machine may run all 40
    # evaluations in one) nothing of generation 1 was recorded yet
    assert re.fullmatch(r"stopped by KeyboardInterrupt, (interrupted in generation \d+, \d+ "
                        r"results saved|in generation 1)", reason), reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"run 1: {reason}. Resume it with: ")
    assert f"dabc resume {db} --run 1" in warnings[0] and "ABCSMC.load(" in warnings[0]


# --- (j) model probabilities are named by the models ----------------------------------------
def test_model_probabilities_are_named_by_the_models(two_runs):
    # before: columns 0 and 1
    probs = dabc.History(two_runs, run_id=2).get_model_probabilities()
    assert list(probs.columns) == ["narrow", "wide"] and probs.columns.name == "model"
    assert list(probs.index) == [0, 1]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert probs.iloc[:, 1].equals(probs["wide"])  # by position, as documented


def test_a_name_shared_by_models_gets_its_index(tmp_path):
    f = lambda p, rng: {"y": p["mu"] + rng.standard_normal()}  # noqa: E731
    g = lambda p, rng: {"y": p["mu"] + 2 * rng.standard_normal()}  # noqa: E731
    h = _run(tmp_path / "dup.db", [f, g], [PRIOR, PRIOR])
    assert h.model_names == ["<lambda>", "<lambda>"]
    assert list(h.get_model_probabilities().columns) == ["<lambda> [0]", "<lambda> [1]"]


# --- (k) dabc info shows a running run's elapsed time ---------------------------------------
# Covered by tests/test_live.py::test_a_sigkilled_master_shows_as_interrupted_after_the_timeout
# (a real subprocess run: 'dabc info' prints "running on HOST (pid N): generation t, ...,
# X elapsed, about Y left").
