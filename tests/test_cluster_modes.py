"""Grab mode and batch mode on a real single-node SLURM (no mocks).

Grab mode end to end: ``dabc cluster up`` (2 worker jobs) -> ``dabc.cluster.connect`` -> an
ABC run on ``DaskDistributedSampler`` whose populations equal those of
``MulticoreEvalParallelSampler`` for the same seed -> ``dabc cluster status`` -> ``dabc
cluster down``; the connection file has mode 0600 in a 0700 folder, and after ``down`` no
job is left and no certificate or key is on disk (the jobs' node-local TLS folders live
under a ``TMPDIR`` of the test's own, so they can be checked without touching anyone
else's). Batch mode with both backends runs the same ABC inside one job and gives the same
populations; the job's ``redis-server`` refuses a client without the password and a client
without TLS. Clear errors: a missing cluster, a file others may read, a scheduler that does
not answer, requests the partition cannot meet (nothing submitted).

Every job carries a name unique to the test; fixtures cancel exactly those jobs. The
reference runs in a subprocess (the multicore sampler forks; this process has Dask threads).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest

import dabc
import dabc.cluster
from dabc.cluster import batch as batch_mode
from dabc.cluster import grab, slurm_commands
from dabc.storage import open_history
from determinism import assert_same, snapshot
from slurm import cancel, job_state, jobs, slurm_cluster_ready, wait_for  # noqa: F401

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "scripts" / "cluster_abc.py"
DABC = [sys.executable, "-m", "dabc"]


def _load_script_module():
    spec = importlib.util.spec_from_file_location("cluster_abc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cluster_abc"] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)  # its model reaches the workers by value
    return module


cluster_abc = _load_script_module()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The populations of MulticoreEvalParallelSampler(2) for the script's seed."""
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(db), "multicore"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    snap = _snapshot(db)
    assert len(snap["t"]) == cluster_abc.GENERATIONS
    return snap


def _snapshot(db: Path) -> dict:
    history, _ = open_history(f"sqlite:///{db}")
    return snapshot(history)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Connection files and node-local TLS folders under this test's tmp_path."""
    clusters, node = tmp_path / "clusters", tmp_path / "node-tmp"
    node.mkdir()
    monkeypatch.setenv(grab.CLUSTER_DIR_VARIABLE, str(clusters))
    monkeypatch.setenv("TMPDIR", str(node))  # jobs inherit it (sbatch --export=ALL)
    monkeypatch.delenv(grab.ADDRESS_VARIABLE, raising=False)
    return {**os.environ, grab.CLUSTER_DIR_VARIABLE: str(clusters), "TMPDIR": str(node)}


def _cli(args: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*DABC, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _tls_leftovers(root: Path) -> list[str]:
    """Certificates or keys anywhere under ``root`` (folders named dabc-tls-*, PEM files)."""
    found = []
    for path in root.rglob("*"):
        if path.name.startswith("dabc-tls-"):
            found.append(str(path))
        elif path.is_file() and path.stat().st_size < 10**6:
            text = path.read_text(errors="replace")
            if "PRIVATE KEY" in text or "BEGIN CERTIFICATE" in text:
                found.append(str(path))
    return found


# --- grab mode ---------------------------------------------------------------------------
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("slurm_cluster_ready")
def test_grab_mode_up_connect_abc_status_down(reference, env, tmp_path, capsys):
    name = f"t{uuid.uuid4().hex[:10]}"
    host_name, worker_name = grab.job_names(name)
    node_tmp = Path(env["TMPDIR"])
    try:
        tic = time.monotonic()
        up = _cli(["cluster", "up", name, "--interface", "lo", "--workers", "2", "--walltime", "10",
                   "--timeout", "180"], env)
        wall = time.monotonic() - tic
        assert up.returncode == 0, up.stdout + up.stderr
        m = re.search(r"2 workers connected after ([\d.]+) s", up.stdout)
        assert m, up.stdout
        assert "tls://" in up.stdout and "ssh -N -L 8787:127.0.0.1:" in up.stdout, up.stdout
        assert "host job" in up.stderr and "workers connected: 2/2" in up.stderr, up.stderr
        with capsys.disabled():
            print(f"\n[grab mode] dabc cluster up --workers 2: ready {m.group(1)} s after "
                  f"submission ({wall:.1f} s for the whole command)")

        # the connection file: 0600 in a 0700 folder, with the address and the material
        path = grab.connection_path(name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        info = json.loads(path.read_text())
        assert info["address"].startswith("tls://")
        assert info["host_job"] and len(info["worker_jobs"]) == 2

        # connect() -> ABC on DaskDistributedSampler == multicore, same seed
        client = dabc.cluster.connect(name, timeout=30)
        try:
            assert client.scheduler.address == info["address"]
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
            h = cluster_abc.run(dabc.DaskDistributedSampler(client), str(tmp_path / "g.db"))
        finally:
            client.close()
        assert_same(snapshot(h), reference)

        # a plain-TCP client is refused (the scheduler requires TLS and our certificate)
        from distributed import Client

        plain = info["address"].replace("tls://", "tcp://")
        with pytest.raises((OSError, TimeoutError)):
            Client(plain, timeout=3)

        st = _cli(["cluster", "status", name], env)
        assert st.returncode == 0, st.stdout + st.stderr
        assert "2 connected" in st.stdout and "2 threads" in st.stdout, st.stdout
        for job_id in [info["host_job"], *info["worker_jobs"]]:
            assert re.search(rf"^\s+{job_id}\s+dabc-{name}-\w+\s+RUNNING\s+-\s+\d+:\d\d",
                             st.stdout, flags=re.M), st.stdout
        assert "dashboard:" in st.stdout

        down = _cli(["cluster", "down", name], env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "is down" in down.stdout
        assert not path.exists()
        assert not jobs(host_name) and not jobs(worker_name)
        assert _tls_leftovers(node_tmp) == []
        assert _tls_leftovers(path.parent) == []   # the host job's output holds no key
        assert "BEGIN" not in Path(info["output"]).read_text()
        # nor in slurmd's copies of the job scripts (they held the material), when readable
        spool = Path(slurm_commands.run_command(["scontrol", "show", "config"]).split(
            "SlurmdSpoolDir")[1].split("=", 1)[1].split()[0])
        if os.access(spool, os.R_OK | os.X_OK):
            ours = [info["host_job"], *info["worker_jobs"]]
            wait_for(lambda: not any((spool / f"job{int(j):05d}").exists() for j in ours), 30,
                     what="slurmd to remove the job scripts")
    finally:
        cancel(name=host_name)
        cancel(name=worker_name)


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("slurm_cluster_ready")
def test_grab_mode_reports_why_workers_pend_and_gives_up_clearly(env):
    """Worker jobs that cannot start: ``up`` shows SLURM's pending reason, stops waiting
    after --timeout with a message that says the jobs stay submitted, ``status`` lists
    them PENDING, and ``down`` cancels them. The jobs ask for every CPU of the node (so
    they cannot start beside the host job) and are held at once (``scontrol uhold``), so
    that they do not stand in the way of other tests' jobs while they pend."""
    name = f"t{uuid.uuid4().hex[:10]}"
    host_name, worker_name = grab.job_names(name)
    cpus = max(n.cpus for n in slurm_commands.nodes(slurm_commands.partition().nodes))
    try:
        up = subprocess.Popen([*DABC, "cluster", "up", name, "--interface", "lo", "--workers",
                               "2", "--cores", str(cpus), "--walltime", "10", "--timeout",
                               "15"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        ids = wait_for(lambda: len(jobs(worker_name)) == 2 and sorted(jobs(worker_name)), 60,
                       what="the worker jobs to be submitted")
        subprocess.run(["scontrol", "uhold", *ids], check=True, capture_output=True)
        out, err = up.communicate(timeout=120)
        assert up.returncode == 1, out + err
        assert re.search(r"worker jobs: 2 submitted, pending \(reason: \w+", err), err
        assert "JobHeldUser (held by you (scontrol release))" in err, err
        assert re.search(r"Only 0 of 2 workers .* connected .*jobs pending: \w+.*stay "
                         rf"submitted.*dabc cluster down {name}", err), err
        assert "Traceback" not in err
        st = _cli(["cluster", "status", name], env)
        assert st.returncode == 0, st.stdout + st.stderr
        assert re.search(r"dabc-\w+-worker\s+PENDING\s+JobHeldUser", st.stdout), st.stdout
        assert "0 connected" in st.stdout
        down = _cli(["cluster", "down", name], env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not jobs(host_name) and not jobs(worker_name)
        assert _tls_leftovers(Path(env["TMPDIR"])) == []
    finally:
        cancel(name=host_name)
        cancel(name=worker_name)


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.usefixtures("slurm_cluster_ready")
def test_grab_mode_replaces_workers_that_retire_before_their_walltime(reference, env,
                                                                     tmp_path, capsys):
    """Worker jobs of 2 minutes: their workers retire (lifetime) before SLURM's limit, the
    jobs end COMPLETED (not TIMEOUT), new jobs replace them, and the cluster still gives the
    reference populations."""
    name = f"t{uuid.uuid4().hex[:10]}"
    host_name, worker_name = grab.job_names(name)
    try:
        up = _cli(["cluster", "up", name, "--interface", "lo", "--workers", "2", "--walltime", "15",
                   "--worker-walltime", "2", "--timeout", "180"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        first = set(json.loads(grab.connection_path(name).read_text())["worker_jobs"])
        assert len(first) == 2
        ended: dict[str, str] = {}
        tic = time.monotonic()

        def replaced():
            for job_id in first:
                state = job_state(job_id)
                if state is not None and state not in ("RUNNING", "COMPLETING"):
                    ended[job_id] = state
            st = grab.status(name)
            running = {j.job_id for j in st["jobs"]
                       if j.name == worker_name and j.state == "RUNNING"}
            return (st["workers"] == 2 and len(running) == 2 and not running & first
                    and set(ended) == first)

        wait_for(replaced, 300, interval=1.0, what="both worker jobs to be replaced")
        with capsys.disabled():
            print(f"\n[grab mode] 2-minute worker jobs replaced after "
                  f"{time.monotonic() - tic:.0f} s; the first ones ended {ended}")
        assert set(ended.values()) == {"COMPLETED"}, ended  # retired, not killed by SLURM
        client = dabc.cluster.connect(name)
        try:
            h = cluster_abc.run(dabc.DaskDistributedSampler(client), str(tmp_path / "r.db"))
        finally:
            client.close()
        assert_same(snapshot(h), reference)
        down = _cli(["cluster", "down", name], env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert _tls_leftovers(Path(env["TMPDIR"])) == []
    finally:
        cancel(name=host_name)
        cancel(name=worker_name)


# --- batch mode --------------------------------------------------------------------------
def _batch(backend: str, env: dict, tmp_path: Path, *script_args: str, workers: int = 2,
           script: Path = SCRIPT) -> tuple[subprocess.CompletedProcess, str, str]:
    job_name = f"dabc-test-batch-{uuid.uuid4().hex[:10]}"
    try:
        proc = _cli(["cluster", "batch", "--workers", str(workers), "--walltime", "10",
                     "--backend", backend, "--job-name", job_name, "--output",
                     str(tmp_path / "batch-%j.out"), "--wait", str(script), *script_args], env)
    finally:
        cancel(name=job_name)
    m = re.search(r"submitted batch job (\d+) .*; output (\S+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return proc, m.group(1), Path(m.group(2)).read_text(errors="replace")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["dask", "redis"])
@pytest.mark.usefixtures("slurm_cluster_ready")
def test_batch_mode_runs_the_script_with_its_own_cluster(backend, reference, env, tmp_path):
    db, report = tmp_path / "batch.db", tmp_path / "report.json"
    proc, job_id, output = _batch(backend, env, tmp_path, str(db), backend, str(report))
    assert proc.returncode == 0, proc.stdout + proc.stderr + output
    assert f"job {job_id} ended with exit code 0" in proc.stdout
    assert "dabc batch: the script exited with code 0" in output
    assert_same(_snapshot(db), reference)
    seen = json.loads(report.read_text())
    if backend == "dask":
        assert seen["workers"] == 2 and seen["address"].startswith("tls://")
        assert seen["plain_tcp"].startswith("refused"), seen
        assert re.search(r"dabc batch: dashboard http://127\.0\.0\.1:\d+/status on node \S+; "
                         r"reach it with ssh -N -L 8787:127\.0\.0\.1:\d+ ", output), output
    else:
        assert "redis-server rediss://" in output and "client certificates" in output
        assert seen["without_password"].startswith("refused"), seen
        assert seen["without_tls"].startswith("refused"), seen
        assert seen["with_password"] is True
        assert not seen["url_has_password"]
        assert len(seen["password"]) >= 32 and seen["password"] not in output
    assert "PRIVATE KEY" not in output and "BEGIN" not in output
    assert _tls_leftovers(Path(env["TMPDIR"])) == []


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("slurm_cluster_ready")
def test_batch_job_exits_with_the_script_exit_code(env, tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import os, sys\n"
                      "assert os.environ['DABC_CLUSTER_ADDRESS'].startswith('tls://')\n"
                      "print('the script ran')\n"
                      "sys.exit(3)\n")
    proc, job_id, output = _batch("dask", env, tmp_path, workers=1, script=script)
    assert proc.returncode == 3, proc.stdout + proc.stderr + output
    assert "the script ran" in output
    assert "dabc batch: the script exited with code 3" in output
    assert batch_mode.exit_code(job_id, None) in (3, None)  # None once SLURM forgot it


# --- clear errors ------------------------------------------------------------------------
def test_connect_to_a_missing_cluster_names_the_ones_there_are(env):
    with pytest.raises(dabc.InputError, match="No cluster to connect to"):
        dabc.cluster.connect()
    grab._write_private(grab.connection_path("other"), {"name": "other", "address": None})
    with pytest.raises(dabc.InputError) as err:
        dabc.cluster.connect("nosuchcluster")
    msg = str(err.value)
    assert "nosuchcluster" in msg and "other" in msg and "dabc cluster up" in msg
    with pytest.raises(dabc.InputError, match="not valid"):
        dabc.cluster.connect("../etc/passwd")
    proc = _cli(["cluster", "status", "nosuchcluster"], env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("dabc cluster: error: No cluster named 'nosuchcluster'")
    assert "Traceback" not in proc.stderr


def test_connect_refuses_a_file_others_can_read_and_reports_a_dead_scheduler(env):
    from dabc.cluster.tls import TLSMaterial

    material = TLSMaterial.create()
    path = grab.connection_path("dead")
    grab._write_private(path, {"name": "dead", "address": "tls://127.0.0.1:"
                               f"{grab.free_port()}", "tls": json.loads(material.to_json())})
    os.chmod(path, 0o644)
    with pytest.raises(dabc.InputError, match="chmod 600"):
        dabc.cluster.connect("dead")
    os.chmod(path, 0o600)
    tic = time.monotonic()
    with pytest.raises(dabc.WorkerError, match="does not answer.*dabc cluster status"):
        dabc.cluster.connect("dead", timeout=2)
    assert time.monotonic() - tic < 30
    assert dabc.cluster.connect.__module__ == "dabc.cluster.grab"
    st = _cli(["cluster", "status", "dead", "--timeout", "2"], env)
    assert st.returncode == 1, st.stdout + st.stderr
    assert "NOT ANSWERING" in st.stdout and "none queued or running" in st.stdout, st.stdout
    down = _cli(["cluster", "down", "dead"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "no job was left" in down.stdout and not path.exists()


@pytest.mark.usefixtures("slurm_cluster_ready")
def test_impossible_requests_fail_before_submission(env, tmp_path):
    name = f"t{uuid.uuid4().hex[:10]}"
    up = _cli(["cluster", "up", name, "--workers", "1", "--cores", "4096", "--walltime", "10"],
              env)
    assert up.returncode == 1, up.stdout + up.stderr
    assert re.search(r"cores=4096 .*at most \d+ CPUs", up.stderr), up.stderr
    assert "Traceback" not in up.stderr
    assert not grab.connection_path(name).exists()
    assert not jobs(grab.job_names(name)[0])
    job_name = f"dabc-test-batch-{uuid.uuid4().hex[:10]}"
    b = _cli(["cluster", "batch", "--workers", "1", "--walltime", "7-0", "--job-name",
              job_name, str(SCRIPT)], env)
    assert b.returncode == 1, b.stdout + b.stderr
    assert "MaxTime=" in b.stderr and "'7-0'" in b.stderr, b.stderr
    assert not jobs(job_name)
    missing = _cli(["cluster", "batch", "--workers", "1", str(tmp_path / "nope.py")], env)
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = _cli(["cluster", "up", name, "--workers", "1", "--walltime", "soon"], env)
    assert bad.returncode == 1 and "not a SLURM time" in bad.stderr


# --- small parts -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 1800), ("30:15", 1815), ("02:00:00", 7200), ("1-0", 86400), ("1-2", 93600),
    ("1-02:30", 95400), ("2-00:00:01", 172801)])
def test_walltimes_parse_as_slurm_does(text, seconds):
    assert slurm_commands.parse_walltime(text) == seconds
    assert slurm_commands.parse_walltime(slurm_commands.format_walltime(seconds)) == seconds


def test_memory_sizes():
    assert batch_mode.memory_mb("4GB") == 3814  # 4e9 bytes
    assert batch_mode.memory_mb("4G") == 4096   # SLURM's suffix: GiB
    assert batch_mode.memory_mb("500MiB") == 500
    with pytest.raises(dabc.InputError, match="not a size"):
        batch_mode.memory_mb("lots")


def test_redis_sampler_reads_dabc_redis_url_when_given_no_server(monkeypatch):
    url = "rediss://10.1.2.3:6390/0?ssl_cert_reqs=required"
    monkeypatch.setenv("DABC_REDIS_URL", url)
    assert dabc.RedisEvalParallelSampler().url == url
    assert dabc.RedisEvalParallelSampler(host="10.0.0.9").url is None  # explicit wins
    assert dabc.RedisEvalParallelSampler(url="redis://h:1/0").url == "redis://h:1/0"
    monkeypatch.delenv("DABC_REDIS_URL")
    assert dabc.RedisEvalParallelSampler().url is None


def test_batch_script_text(tmp_path):
    text = batch_mode.batch_script("/data/my run.py", ["--n", "3"], workers=4,
                                   walltime="1-0", backend="redis", cores=2, memory="4G",
                                   partition="long", account="proj", output="o-%j.out")
    assert "#SBATCH --ntasks=5" in text and "#SBATCH --cpus-per-task=2" in text
    assert "#SBATCH --time=1-00:00:00" in text and "#SBATCH --mem-per-cpu=2048M" in text
    assert "#SBATCH --partition=long" in text and "#SBATCH --account=proj" in text
    assert "'/data/my run.py' --n 3" in text and "--backend redis" in text
    assert "BEGIN" not in text  # the material is made inside the job, never in the script
    with pytest.raises(dabc.InputError, match="backend"):
        batch_mode.batch_script("x.py", backend="mpi")


NO_TLS_REDIS = """#!/bin/bash
# a redis-server built without TLS, as far as dabc can tell: refuses tls-* directives
conf=$(cat)
if grep -q '^tls-' <<<"$conf"; then
    echo "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***"
    echo ">>> 'tls-port 1' Bad directive or wrong number of arguments"
    exit 1
fi
exec {server} - <<<"$conf"
"""


def test_redis_without_tls_support_runs_with_the_password_only(tmp_path, monkeypatch):
    import shutil

    import redis

    from dabc.cluster import host

    shim = tmp_path / "redis-server-without-tls"
    shim.write_text(NO_TLS_REDIS.format(server=shutil.which("redis-server")))
    shim.chmod(0o700)
    monkeypatch.setenv("DABC_REDIS_SERVER", str(shim))
    with pytest.raises(host._RedisDidNotStart, match="tls-port"):
        host._start_redis("127.0.0.1", tmp_path, "pw-" + uuid.uuid4().hex, tls=True)
    password = "pw-" + uuid.uuid4().hex
    server, url, port = host._start_redis("127.0.0.1", tmp_path, password, tls=False)
    try:
        assert url == f"redis://127.0.0.1:{port}/0"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        with redis.Redis.from_url(url, password=password) as r:
            assert r.ping()
        assert password not in " ".join(server.args)  # the password went through stdin
    finally:
        server.terminate()
        server.wait(10)
