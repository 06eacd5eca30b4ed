"""Operating a Redis worker pool (issue 15, Build point 4): ``redis-manager info`` as a table
and as JSON, connection settings from the environment and a password file, the workers'
start and exit lines, and the password never on a command line.

One private ``redis-server`` (127.0.0.1, free port, password) serves the whole module, with
two workers started at the start, as a user would start them:

- ``documented``: the README's worker block (the first ``sh`` block of "Distributed
  sampling"), run with ``bash`` as copied, with only its placeholders filled in (the
  server's address, the secret file, two processes instead of eight); the password is
  typed at its prompt (``read``), here through the shell's stdin;
- ``file_way``: ``dabc redis-worker --host --port --password-file FILE`` (one process).

A real run (``dabc.ABCSMC``) on a sampler that gets everything from the environment is
inspected while it runs, then stopped with ``redis-manager stop``; its populations equal
the single-core reference (same seed). Processes are only ever signalled by the PIDs we
started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

import dabc
import test_redis as _tr
from dabc.cli.redis_cli import format_duration
from dabc.cli.redis_cli import main as redis_main
from dabc.samplers.redis import status
from determinism import assert_same, snapshot
from redis_server import RedisServer, free_port, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
EPOCH = re.compile(r"\b1[6-9]\d{8}(\.\d+)?\b")  # a Unix time from 2020 to 2033
CLEAN_ENV = ("REDISCLI_AUTH", "DABC_REDIS_PASSWORD", "DABC_REDIS_URL", "DABC_REDIS_SECRET",
             "DABC_REDIS_SECRET_FILE")


def dabc_script() -> str:
    here = Path(sys.executable).parent / "dabc"
    found = str(here) if here.exists() else shutil.which("dabc")
    if not found:
        pytest.fail("the 'dabc' console script is not installed; run: python3 -m pip install "
                    "-e '.[test]' (or bash scripts/test.sh)", pytrace=False)
    return found


def base_env(**extra: str) -> dict:
    """Our environment without any Redis setting, ``dabc`` first on PATH, unbuffered."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env["PATH"] = f"{Path(dabc_script()).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def documented_worker_block() -> str:
    """The README's block that starts a Redis worker (first ``sh`` block of the section)."""
    text = README.read_text()
    section = text.split("\n## Distributed sampling", 1)[-1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(?:sh|bash)[^\n]*\n(.*?)^```", section, re.M | re.S)
    found = [b for b in blocks if "redis-worker" in b]
    assert found, "README.md's 'Distributed sampling' section has no sh block starting a worker"
    return found[0]


def fill_in(block: str, server: RedisServer, secret_file: Path) -> str:
    """The block with its placeholders filled in; fails when it passes a password in argv."""
    assert not re.search(r"--password(?!-file)\b", block), (
        "README.md starts the worker with --password on its command line, which `ps` shows "
        f"to every user:\n{block}")
    filled = block.replace("HOST", server.host).replace("6379", str(server.port))
    filled = filled.replace("~/dabc-secret", str(secret_file))
    filled = re.sub(r"=PW\b", f"={server.password}", filled)  # export REDISCLI_AUTH=PW
    filled, n = re.subn(r"--processes \d+", "--processes 2", filled)
    assert n == 1, f"the README's worker block has no --processes N:\n{block}"
    return filled


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children of all its threads, recursively)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
            except FileNotFoundError:
                continue
            for k in map(int, kids):
                if k not in out:
                    out.append(k)
                    todo.append(k)
    return out


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
        errors="replace")


class Started:
    """A command we started (stdout and stderr to files), signalled only by its PID."""

    def __init__(self, argv: list[str], env: dict, folder: Path, name: str,
                 stdin_text: str | None = None):
        self.out_path, self.err_path = folder / f"{name}.out", folder / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env,
                                         stdin=subprocess.PIPE, cwd=folder)
        self.proc.stdin.write((stdin_text or "").encode())
        self.proc.stdin.close()
        self.pid = self.proc.pid

    def tree(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stats(self) -> list[dict]:
        return [json.loads(x) for x in self.out_path.read_text().splitlines() if x.strip()]

    def worker_ids(self, server: RedisServer) -> list[str]:
        pids = set(self.tree())
        return [w for w in server.worker_ids() if int(w.rsplit("-", 2)[1]) in pids]

    def dabc_pid(self) -> int:
        """The ``dabc redis-worker`` process (ours, or the shell's child running it)."""
        for pid in self.tree():
            if "redis-worker" in cmdline(pid) and "multiprocessing" not in cmdline(pid):
                return pid
        raise AssertionError(f"no redis-worker process under {self.pid}")

    def reap(self) -> None:
        if self.proc.poll() is None:
            for pid in reversed(self.tree()):  # the worker first, then the shell
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis-ops")
    server = RedisServer(folder / "redis").start()
    pw = folder / "redis-password"
    pw.write_text(server.password + "\n")
    pw.chmod(0o600)
    script = folder / "start-worker.sh"
    script.write_text(fill_in(documented_worker_block(), server, server.secret_file))
    started = {}
    try:
        started["documented"] = Started(["bash", str(script)], base_env(), folder,
                                        "documented", stdin_text=server.password + "\n")
        started["file_way"] = Started(
            [dabc_script(), "redis-worker", "--host", server.host, "--port", str(server.port),
             "--password-file", str(pw), "--runtime", "10m"],
            base_env(DABC_REDIS_SECRET_FILE=str(server.secret_file)), folder, "file_way")
        for name, count in (("documented", 2), ("file_way", 1)):
            s = started[name]
            wait_for(lambda s=s, count=count: len(s.worker_ids(server)) >= count
                     or s.proc.poll() is not None, 120, 0.1, f"the {name} worker")
            assert s.proc.poll() is None, f"the {name} worker exited:\n{s.stderr()}"
        yield {"server": server, "password_file": pw, "folder": folder, **started}
    finally:
        for s in started.values():
            s.reap()
        server.stop()


def test_ps_never_shows_the_password(pool):
    """The README's way (password typed into the environment) and --password-file: no
    process of either worker, the shell, the dabc process or its worker processes, has the
    password on its command line, and their environments are readable by their owner only."""
    password = pool["server"].password
    seen = {}
    for name in ("documented", "file_way"):
        for pid in pool[name].tree():
            seen[pid] = (name, cmdline(pid))
            assert password not in seen[pid][1], seen[pid]
            mode = stat.S_IMODE(os.stat(f"/proc/{pid}/environ").st_mode)
            assert mode & 0o077 == 0, (pid, oct(mode))
    documented = [c for n, c in seen.values() if n == "documented"]
    print("\n".join(f"{pid} {n}: {c}" for pid, (n, c) in seen.items()))
    # bash, dabc redis-worker, its two worker processes (and multiprocessing's tracker)
    assert sum("multiprocessing" in c and "spawn_main" in c for c in documented) == 2, seen
    assert sum("redis-worker" in c for c in documented) == 1, seen
    assert documented[0].startswith("bash "), seen


def test_workers_log_one_start_line_without_the_password(pool):
    server = pool["server"]
    expected = {
        "documented": (f"Redis at redis://{server.host}:{server.port} (password from "
                       "DABC_REDIS_PASSWORD), 2 processes, runtime 2 h 0 min"),
        "file_way": (f"Redis at {server.host}:{server.port} (password from the file "
                     f"{pool['password_file']}), 1 process, runtime 10 min 0 s"),
    }
    for name, text in expected.items():
        err = pool[name].stderr()
        assert server.password not in err
        lines = [ln for ln in err.splitlines() if "redis-worker started" in ln]
        assert len(lines) == 1, err
        assert text in lines[0], (lines[0], text)
        assert " INFO " in lines[0] and f"pid {pool[name].dabc_pid()}" in lines[0], lines[0]
        assert "WARNING" not in err, err


@pytest.mark.timeout(240)
def test_info_table_and_json_while_a_real_run_runs(pool, tmp_path, tmp_path_factory,
                                                   monkeypatch, capsys):
    server = pool["server"]
    url = f"redis://{server.host}:{server.port}"
    monkeypatch.setenv("DABC_REDIS_URL", url)
    monkeypatch.setenv("DABC_REDIS_PASSWORD", server.password)
    monkeypatch.setenv("DABC_REDIS_SECRET_FILE", str(server.secret_file))
    monkeypatch.delenv("REDISCLI_AUTH", raising=False)
    sampler = dabc.RedisEvalParallelSampler()  # the master: everything from the environment
    assert sampler.where == url
    bg = _tr.Background(_tr.run_abc, _tr.Sleepy(0.01), _tr.PRIOR_X, sampler, tmp_path / "r.db",
                        gens=40)
    pids = {pid for name in ("documented", "file_way") for pid in pool[name].tree()}

    def busy_status():
        assert not bg.done, bg.result(0)
        st = status(url=url)
        (a,) = [a for a in st["analyses"] if a["analysis"] == sampler.analysis_id] or [None]
        busy = [w for w in st["workers"] if w["analysis"] == sampler.analysis_id]
        return st if a is not None and a["claimed"] and busy else None

    st = wait_for(busy_status, 120, 0.05, "a worker busy with the analysis")
    (a,) = [a for a in st["analyses"] if a["analysis"] == sampler.analysis_id]
    assert a["claimed"] == sum(w["state"] == "busy" for w in st["workers"]), st
    # the table, through the documented command, with the settings from the environment
    table = subprocess.run([dabc_script(), "redis-manager", "info"], capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL,
                           env=base_env(DABC_REDIS_URL=url,
                                        DABC_REDIS_PASSWORD=server.password))
    out = table.stdout
    print(out)
    assert table.returncode == 0 and table.stderr == "", table.stderr
    assert "{" not in out and not EPOCH.search(out), out
    lines = out.splitlines()
    assert re.fullmatch(rf"Redis {re.escape(url)} at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                        lines[0]), lines[0]
    m = re.fullmatch(r"Workers: (\d+) alive \((\d+) busy, (\d+) idle\)", lines[1])
    assert m and int(m[1]) == 3 and int(m[2]) + int(m[3]) == 3, lines[1]
    assert lines[2].split() == ["HOST", "PID", "STATE", "ANALYSIS", "TASKS", "EVALUATIONS",
                                "UP", "LAST", "SEEN"], lines[2]
    rows = [ln.split() for ln in lines[3:6]]
    host = socket.gethostname()
    for row in rows:
        assert row[0] == host and int(row[1]) in pids, row
        assert row[2] in ("busy", "idle") and row[3] in ("-", sampler.analysis_id), row
        assert int(row[4]) >= 0 and int(row[5]) >= 0, row
        assert row[-2:] == ["s", "ago"] and int(row[-3]) <= 3, row  # heartbeat: 1 s
    assert lines[6] == "Analyses: 1 running", lines[6]
    assert lines[7].split()[:5] == ["ANALYSIS", "MASTER", "GENERATION", "ACCEPTED",
                                    "EVALUATIONS"], lines[7]
    row = lines[8].split()
    assert row[0] == sampler.analysis_id and row[1] == f"{host}-{os.getpid()}", row
    assert int(row[2]) >= 0, row
    assert re.fullmatch(rf"\d+/{_tr.N}", row[3]) and re.fullmatch(r"\(\d+%\)", row[4]), row
    assert row[-1] == "-", row  # no stop requested
    # --json, in this process, with --password-file and the address on the command line
    monkeypatch.delenv("DABC_REDIS_PASSWORD")
    capsys.readouterr()
    assert redis_main(["redis-manager", "info", "--json", "--host", server.host, "--port",
                       str(server.port), "--password-file", str(pool["password_file"])]) == 0
    got, err = capsys.readouterr()
    assert err == "", err
    info = json.loads(got)
    assert info["server"] == f"{server.host}:{server.port}"
    assert datetime.fromisoformat(info["time"]).utcoffset().total_seconds() == 0
    assert {w["pid"] for w in info["workers"]} <= pids and len(info["workers"]) == 3, info
    for w in info["workers"]:
        assert w["host"] == host and w["state"] in ("busy", "idle"), w
        assert isinstance(w["tasks"], int) and isinstance(w["evaluations"], int), w
        assert isinstance(w["last_seen_seconds"], float) and w["last_seen_seconds"] < 3.5, w
        assert datetime.fromisoformat(w["last_seen"]) >= datetime.fromisoformat(w["started"])
    (a,) = info["analyses"]
    assert a["analysis"] == sampler.analysis_id and a["n"] == _tr.N, a
    for key in ("generation", "accepted", "evaluations", "failures", "queued", "claimed",
                "results", "refused"):
        assert isinstance(a[key], int) and a[key] >= 0, (key, a)
    assert isinstance(a["generation_seconds"], float) and a["generation_seconds"] >= 0, a
    assert datetime.fromisoformat(a["generation_started"]) <= datetime.fromisoformat(
        info["time"]), a
    assert a["stop_requested"] is False
    # stop it: a line for people, then the run ends after its generation
    assert redis_main(["redis-manager", "stop"]) == 1  # no password at all now: an error
    assert "needs a password" in capsys.readouterr().err
    monkeypatch.setenv("DABC_REDIS_PASSWORD", server.password)
    assert redis_main(["redis-manager", "stop"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(rf"Asked analysis {sampler.analysis_id} \(generation \d+\) to stop "
                        r"after its current generation\.\n", out), out
    h = bg.result(120)
    assert "stop requested" in h.all_runs().stop_reason.tolist()[0]
    assert_same(snapshot(h), _tr.reference("dyn", tmp_path_factory, gens=h.n_populations))


def test_connection_settings_precedence_and_clear_errors(pool, tmp_path, monkeypatch, capsys):
    """argv > password file > environment; a wrong password names where it came from and
    never shows it; a URL's password is masked; a group-readable file is refused."""
    server = pool["server"]
    for env in CLEAN_ENV:
        monkeypatch.delenv(env, raising=False)
    where = ["--host", server.host, "--port", str(server.port)]
    url = f"redis://{server.host}:{server.port}"
    good, wrong = pool["password_file"], tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)

    def call(*args):
        capsys.readouterr()
        rc = redis_main(["redis-manager", "info", "--json", *map(str, args)])
        out, err = capsys.readouterr()
        return rc, out, err

    def error(rc, out, err):
        lines = err.strip().splitlines()
        assert rc == 1 and out == "" and len(lines) == 1, (rc, out, err)
        assert lines[0].startswith("dabc redis-manager: error: ") and server.password not in err
        return lines[0]

    monkeypatch.setenv("DABC_REDIS_URL", url)
    monkeypatch.setenv("DABC_REDIS_PASSWORD", "wrong-from-env")
    line = error(*call())
    assert f"Redis at {url} refused the password from DABC_REDIS_PASSWORD" in line, line
    assert "wrong-from-env" not in line
    rc, out, err = call("--password-file", good)  # the file beats the environment
    assert rc == 0 and err == "" and json.loads(out)["server"] == url, err
    rc, out, err = call("--password", server.password, "--password-file", wrong)  # argv
    assert rc == 0 and json.loads(out)["workers"], err
    assert "visible to every user of this machine in `ps`" in err and "--password-file" in err
    line = error(*call("--password-file", wrong))
    assert f"refused the password from the file {wrong}" in line, line
    # --host/--port beat DABC_REDIS_URL; REDISCLI_AUTH comes before DABC_REDIS_PASSWORD
    monkeypatch.setenv("DABC_REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    monkeypatch.setenv("REDISCLI_AUTH", server.password)
    rc, out, err = call(*where)
    assert rc == 0 and json.loads(out)["server"] == f"{server.host}:{server.port}", err
    line = error(*call())  # nobody listens at DABC_REDIS_URL
    assert "Cannot reach Redis at redis://127.0.0.1:" in line, line
    monkeypatch.delenv("REDISCLI_AUTH")
    # a password in the URL: masked in messages
    monkeypatch.setenv("DABC_REDIS_URL", f"redis://:url-secret-42@{server.host}:{server.port}")
    line = error(*call())
    assert (f"Redis at redis://:***@{server.host}:{server.port} refused the password from "
            "the URL") in line and "url-secret-42" not in line, line
    monkeypatch.setenv("DABC_REDIS_URL",
                       f"redis://:{server.password}@{server.host}:{server.port}")
    rc, out, err = call()
    assert rc == 0 and json.loads(out)["server"] == \
        f"redis://:***@{server.host}:{server.port}", err
    monkeypatch.delenv("DABC_REDIS_URL")
    # password files only their owner may read; a missing one
    good.chmod(0o644)
    try:
        line = error(*call(*where, "--password-file", good))
    finally:
        good.chmod(0o600)
    assert "is readable by group or others (mode 0644). Run `chmod 600" in line, line
    line = error(*call(*where, "--password-file", tmp_path / "nope"))
    assert "Cannot read the Redis password file" in line, line
    # the worker refuses at once too, in one line, and logs no start line
    monkeypatch.setenv("DABC_REDIS_PASSWORD", "wrong-from-env")
    capsys.readouterr()
    assert redis_main(["redis-worker", *where]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dabc redis-worker: error: Redis at "), err
    assert "refused the password from DABC_REDIS_PASSWORD" in err, err
    # the master: the same rule and the same message
    s = dabc.RedisEvalParallelSampler(url=url, secret_file=server.secret_file)
    with pytest.raises(dabc.InputError, match="refused the password from DABC_REDIS_PASSWORD"):
        _tr.run_abc(_tr.Sleepy(), _tr.PRIOR_X, s, tmp_path / "wrong.db", gens=1)


@pytest.mark.timeout(180)
def test_workers_log_one_exit_line_with_why_and_what_they_did(pool):
    """SIGTERM (both started workers) and the end of --runtime (a third, short one)."""
    server = pool["server"]
    short = Started([dabc_script(), "redis-worker", "--runtime", "1s"],
                    base_env(DABC_REDIS_URL=f"redis://{server.host}:{server.port}",
                             REDISCLI_AUTH=server.password,
                             DABC_REDIS_SECRET_FILE=str(server.secret_file)),
                    pool["folder"], "short")
    for name in ("documented", "file_way"):
        w = pool[name]
        os.kill(w.dabc_pid(), signal.SIGTERM)  # the shell's child, for the README's way
        assert w.proc.wait(30) == 0, w.stderr()
    assert short.proc.wait(120) == 0, short.stderr()
    for name, why, processes in (("documented", "SIGTERM", "2 processes"),
                                 ("file_way", "SIGTERM", "1 process"),
                                 ("short", "runtime", "1 process")):
        w = short if name == "short" else pool[name]
        err = w.stderr()
        stats = w.stats()
        assert len(stats) == int(processes[0]), (w.out_path.read_text(), err)
        assert all(st["stopped"] == why for st in stats), stats
        lines = [ln for ln in err.splitlines() if "redis-worker stopped" in ln]
        assert len(lines) == 1, err
        tasks, evaluations = sum(st["tasks"] for st in stats), sum(st["evaluations"]
                                                                    for st in stats)
        m = re.search(rf"redis-worker stopped \({why}\) after (\d+) (s|min \d+ s): "
                      rf"{processes} did (\d+) tasks \((\d+) evaluations\) and refused 0 "
                      r"generations' work$", lines[0])
        assert m and (int(m[3]), int(m[4])) == (tasks, evaluations), (lines[0], stats)
        assert len([ln for ln in err.splitlines() if "redis-worker started" in ln]) == 1, err
        assert server.password not in err
    # the pool took part in the run: both of the long-lived workers did tasks
    assert all(st["tasks"] > 0 for n in ("documented", "file_way") for st in pool[n].stats())
    server.wait_empty(timeout=10)


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (0, 2.6, 59.4, 60, 125, 3600, 7200, 90061)] == \
        ["0 s", "3 s", "59 s", "1 min 0 s", "2 min 5 s", "1 h 0 min", "2 h 0 min", "1 d 1 h"]
    assert format_duration(-4) == "0 s"
