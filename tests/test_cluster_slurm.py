"""dabc.cluster.SLURMCluster on a real single-node SLURM (scripts/start-slurm.sh), no mocks.

Checked: an ABC run over TLS on two worker jobs gives the population of
MulticoreEvalParallelSampler bit for bit, and so does one on an adaptive cluster that starts
with no job; plain-TCP clients and TLS clients without the cluster's certificate are refused;
the job script holds the certificate only as data written to a node-local 0700 directory
(files 0600, gone when the job ends) and names no file outside it; the preflight refuses
impossible requests (cores, walltime, memory, a missing partition, no scontrol) before any
job is submitted; security=False warns; the dashboard listens on 127.0.0.1 only; pending
jobs are reported with SLURM's reason and a timeout names it; one worker job cancelled
mid-generation changes nothing. The parsers of scontrol/squeue output and the lifetime
arithmetic are checked on known answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest
from distributed import Client

import dabc
from dabc.cluster import slurm_commands
from dabc.cluster.slurm import InsecureClusterWarning, SLURMCluster, lifetime_for_walltime
from dabc.cluster.tls import TLSMaterial
from determinism import assert_same, snapshot
from slurm import (
    abc_run,
    cancel,
    ensure_slurm,
    job_state,
    jobs,
    reference,
    slurm_cluster,
    slurm_cluster_ready,
    unique_job_name,
    wait_for,
    wait_job_state,
    worker_tls_paths,
)
from watch import plain_failures

__all__ = ["slurm_cluster_ready"]  # the fixture, imported for pytest

N, GENS = 200, 3


# --- known answers: parsing and arithmetic ---------------------------------------------------
PARTITION_LINE = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL "
    "Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 "
    "Hidden=NO MaxNodes=UNLIMITED MaxTime=01:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED "
    "Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO "
    "OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=8 TotalNodes=1 "
    "SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED TRES=cpu=8,mem=23593M,node=1,billing=8")
NODE_LINE = (
    "NodeName=vm Arch=x86_64 CoresPerSocket=8 CPUAlloc=0 CPUEfctv=8 CPUTot=8 CPULoad=0.09 "
    "AvailableFeatures=(null) NodeAddr=127.0.0.1 Version=22.05.8 OS=Linux 6.18.44 #1 SMP "
    "RealMemory=23593 AllocMem=0 FreeMem=23219 Sockets=1 State=IDLE MemSpecLimit=593")


def test_partition_and_node_lines_are_parsed():
    p = slurm_commands.PartitionInfo.from_fields(slurm_commands.parse_key_values(PARTITION_LINE))
    assert (p.name, p.state, p.nodes, p.max_time, p.max_nodes, p.max_cpus_per_node,
            p.max_mem_per_node, p.is_default) == ("debug", "UP", "vm", 3600.0, None, None,
                                                   None, True)
    fields = slurm_commands.parse_key_values(NODE_LINE)
    assert fields["OS"] == "Linux 6.18.44 #1 SMP"  # a value with spaces
    n = slurm_commands.NodeInfo.from_fields(fields)
    assert (n.name, n.cpus, n.memory_mb, n.state) == ("vm", 8, 23000, "IDLE")


@pytest.mark.parametrize("text, seconds", [
    ("30", 1800), ("5:30", 330), ("01:00:00", 3600), ("1-0", 86400), ("2-03", 183600),
    ("1-02:03", 93780), ("1-02:03:04", 93784), (90, 5400), ("UNLIMITED", None), (None, None)])
def test_slurm_times(text, seconds):
    assert slurm_commands.parse_time_seconds(text) == seconds
    if seconds is not None:
        assert slurm_commands.parse_time_seconds(slurm_commands.format_walltime(seconds)) == seconds


@pytest.mark.parametrize("text, mb", [("4000", 4000), ("500M", 500), ("4G", 4096),
                                      ("954M", 954), ("1T", 1048576), ("512K", 1),
                                      ("UNLIMITED", None)])
def test_slurm_memory(text, mb):
    assert slurm_commands.parse_memory_mb(text) == mb


def test_bad_walltime_is_an_input_error():
    with pytest.raises(dabc.InputError, match="not a SLURM time.*HH:MM:SS"):
        slurm_commands.parse_time_seconds("1 hour")


@pytest.mark.parametrize("walltime, margin, expected", [
    # auto: 10 % of the walltime, within [60 s, 600 s]; stagger = min(margin/2, rest/4)
    ("01:00:00", "auto", (3600 - 360 - 180, 180)),
    ("1-0", "auto", (86400 - 600 - 300, 300)),
    ("00:05:00", "auto", (300 - 60 - 30, 30)),
    ("2", "auto", (120 - 60 - 15, 15)),       # short: margin 60 s, stagger a quarter of 60
    ("1", "auto", (60 - 30 - 7.5, 7.5)),      # very short: half the walltime is the margin
    ("00:10:00", 120, (600 - 120 - 60, 60)),
    ("00:10:00", "2:00", (600 - 120 - 60, 60)),  # a SLURM time as the margin
    ("00:10:00", None, None), ("00:10:00", 0, None), (None, "auto", None)])
def test_lifetime_for_walltime(walltime, margin, expected):
    got = lifetime_for_walltime(walltime, margin)
    assert got == (None if expected is None else tuple(map(float, expected)))
    if got is not None:  # nobody retires right after starting
        assert got[0] - got[1] > 0


def test_margin_longer_than_walltime_is_an_input_error():
    with pytest.raises(dabc.InputError, match="walltime_margin=600.*not shorter than walltime"):
        lifetime_for_walltime("00:05:00", 600)
    with pytest.raises(dabc.InputError, match="negative"):
        lifetime_for_walltime("00:05:00", -1)


# --- preflight: before anything is submitted ------------------------------------------------
def _refused(tmp_path, match, **kwargs):
    name = unique_job_name("dabc-preflight")
    with pytest.raises(dabc.InputError, match=match) as info:
        SLURMCluster(job_name=name, interface="lo", log_directory=str(tmp_path), n_workers=1,
                     **kwargs)
    assert jobs(name) == {}, "a job was submitted despite the failed preflight"
    assert not list(tmp_path.glob("*.out")), "a job ran despite the failed preflight"
    return str(info.value)


def test_preflight_too_many_cores(slurm_cluster_ready, tmp_path):
    msg = _refused(tmp_path, r"cores=64 per job, but the nodes of partition 'debug' have at "
                   r"most 8 CPUs: ask for --cores 8 or less", cores=64, memory="1GB")
    assert "another partition" in msg


def test_preflight_walltime_over_max_time(slurm_cluster_ready, tmp_path):
    _refused(tmp_path, r"walltime='02:00:00' \(02:00:00\), but partition 'debug' allows at "
             r"most MaxTime=01:00:00", cores=1, memory="1GB", walltime="02:00:00")


def test_preflight_memory_over_node_memory(slurm_cluster_ready, tmp_path):
    node_mb = slurm_commands.nodes("vm")[0].memory_mb
    _refused(tmp_path, rf"memory='1000GB' per job \(\d+ MB as SLURM counts\), but the nodes "
             rf"of partition 'debug' have at most {node_mb} MB", cores=1, memory="1000GB")


def test_preflight_unknown_partition(slurm_cluster_ready, tmp_path):
    _refused(tmp_path, r"SLURM has no partition 'gpu-nonexistent': use queue= with one of "
             r"'debug'", cores=1, memory="1GB", queue="gpu-nonexistent")


def test_no_scontrol_on_path_is_a_clear_error(slurm_cluster_ready, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a directory without SLURM's commands
    _refused(tmp_path, r"'scontrol' is not on PATH: dabc.cluster.SLURMCluster needs SLURM's "
             "commands", cores=1, memory="1GB")


def test_non_loopback_dashboard_is_refused(slurm_cluster_ready, tmp_path):
    for address in ("0.0.0.0:8787", "10.1.2.3:8787"):
        _refused(tmp_path, "dashboard", cores=1, memory="1GB",
                 scheduler_options={"dashboard_address": address})


# --- security ----------------------------------------------------------------------------
def _listening_hosts(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_security_false_warns_and_dashboard_is_on_loopback(slurm_cluster_ready, tmp_path,
                                                           caplog):
    with caplog.at_level(logging.INFO, logger="dabc.cluster"):
        with pytest.warns(InsecureClusterWarning, match="plain TCP without authentication"):
            with slurm_cluster(tmp_path, security=False) as cluster:
                assert cluster.scheduler_address.startswith("tcp://")
                assert cluster.tls is None
                port = cluster.dashboard_port
                assert port and _listening_hosts(port) == {"127.0.0.1"}
                assert cluster.ssh_tunnel.startswith(f"ssh -N -L {port}:127.0.0.1:{port} ")
    records = [r for r in caplog.records if r.name == "dabc.cluster"]
    assert any(r.levelno == logging.WARNING and "run code as you" in r.getMessage()
               for r in records)
    assert any("ssh -N -L" in r.getMessage() for r in records)  # the tunnel, logged at start


@pytest.fixture(scope="module")
def tls_cluster(slurm_cluster_ready, tmp_path_factory):
    """Two worker jobs over TLS (the default), shared by the tests below."""
    logs = tmp_path_factory.mktemp("slurm-logs")
    with slurm_cluster(logs) as cluster:
        t0 = time.monotonic()
        cluster.scale(jobs=2)
        cluster.wait_for_workers(2, timeout=60)
        cluster.ready_after = time.monotonic() - t0
        logging.getLogger("dabc.tests").info("2 workers ready after %.1f s",
                                             cluster.ready_after)
        cluster.log_directory = logs
        yield cluster


@pytest.mark.timeout(120)
@plain_failures
def test_same_population_as_multicore_over_tls(tls_cluster, tmp_path, tmp_path_factory):
    ref = reference(tmp_path_factory, n=N, gens=GENS)
    assert tls_cluster.scheduler_address.startswith("tls://")
    assert tls_cluster.ready_after < 60
    with Client(tls_cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        h = abc_run(dabc.DaskDistributedSampler(client), tmp_path / "tls.db", n=N, gens=GENS,
                    sleep=0.001)
    got = snapshot(h)
    assert_same(got, ref)
    for g, r in zip(got["arrays"], ref["arrays"], strict=True):  # the acceptance's wording
        for f in ("theta", "weight", "distance"):
            assert np.array_equal(g[0][f], r[0][f])


def _raw_tls(host: str, port: int, material: TLSMaterial, certificate: bool = True):
    """A bare TLS connection trusting the cluster's CA: "dask" when the scheduler sends its
    first Dask message over it, else the exception (or timeout) that ended it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=material.ca_pem)
    ctx.check_hostname = False
    if certificate:
        d = Path(tempfile.mkdtemp())
        (d / "cert.pem").write_text(material.cert_pem)
        (d / "key.pem").write_text(material.key_pem)
        ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
        shutil.rmtree(d)
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.settimeout(5)
                data = s.recv(1)
                return "dask" if data else ConnectionError("closed by the scheduler")
    except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
        return exc


@pytest.mark.timeout(60)
def test_plain_tcp_and_certificateless_clients_are_refused(tls_cluster):
    address = tls_cluster.scheduler_address
    assert address.startswith("tls://")
    with pytest.raises((OSError, TimeoutError)):
        Client(address.replace("tls://", "tcp://"), timeout=3)
    # TLS with the right CA but no client certificate (distributed's Client cannot even be
    # configured so): the scheduler ends the connection; with the certificate it speaks Dask
    host, port = address[len("tls://"):].rsplit(":", 1)
    assert _raw_tls(host, int(port), tls_cluster.tls) == "dask"
    refused = _raw_tls(host, int(port), tls_cluster.tls, certificate=False)
    assert isinstance(refused, (ssl.SSLError, ConnectionError)), refused
    other = TLSMaterial.create()  # a certificate from another CA
    with pytest.raises((OSError, TimeoutError)):
        Client(address, timeout=3, security=other.security())
    with Client(address, timeout=10, security=tls_cluster.tls.security()) as client:
        assert len(client.scheduler_info()["workers"]) == 2  # the cluster's own material


@pytest.mark.timeout(120)
def test_job_script_keeps_the_key_node_local(slurm_cluster_ready, tmp_path):
    """The key travels inside the job script only; on the node it is a 0600 file in a 0700
    directory under $TMPDIR, named in the worker's command line, removed when the job ends
    (scancel)."""
    with slurm_cluster(tmp_path / "logs") as cluster:
        script = cluster.job_script()
        assert "BEGIN" not in script and "PRIVATE" not in script  # PEM only as base64 data
        tls_args = [a for a in script.split() if a.startswith("--tls-")]
        assert tls_args == ["--tls-ca-file", "--tls-cert", "--tls-key"]
        words = script.split()
        for option in tls_args:
            assert words[words.index(option) + 1].startswith("$DABC_TLS_DIR/")
        assert not list(tmp_path.rglob("*.pem")) and not list(tmp_path.rglob(".dask-jobqueue*"))
        assert not list(Path.cwd().glob(".dask-jobqueue.worker.*"))
        cluster.scale(jobs=1)
        cluster.wait_for_workers(1, timeout=60)
        with Client(cluster) as client:
            paths = next(iter(client.run(worker_tls_paths).values()))
        directory = os.path.dirname(paths[0])
        assert {os.path.dirname(p) for p in paths} == {directory}
        assert os.path.basename(directory).startswith("dabc-tls-")
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        for p in paths:
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        (job_id,) = cluster.job_ids().values()
        cancel(job_id=job_id)
        wait_job_state(job_id, ("CANCELLED", "COMPLETED", "FAILED", "GONE"), timeout=60)
        wait_for(lambda: not os.path.exists(directory), 30, what=f"{directory} to be removed")


# --- visible waiting ---------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_pending_reason_is_reported_and_named_on_timeout(slurm_cluster_ready, tmp_path, caplog):
    """A job that may not start yet (--begin in an hour) pends with reason BeginTime."""
    seen = []
    with slurm_cluster(tmp_path, job_extra_directives=["--begin=now+1hour"]) as cluster:
        cluster.scale(jobs=1)
        wait_for(cluster.job_ids, 20, what="the job to be submitted")
        (job_id,) = cluster.job_ids().values()
        wait_for(lambda: cluster.pending_reasons().get(job_id) == "BeginTime", 20,
                 what="squeue to give the reason BeginTime")
        with caplog.at_level(logging.INFO, logger="dabc.cluster"):
            t0 = time.monotonic()
            with pytest.raises(dabc.WorkerError, match=r"timed out after 3 s waiting for 1 Dask "
                               rf"worker.*1 job\(s\) pending: BeginTime .*\[{job_id}\]"):
                cluster.wait_for_workers(1, timeout=3, progress=seen.append, interval=0.5)
            assert time.monotonic() - t0 < 10
    assert seen and "pending: BeginTime (its start time has not come)" in seen[0]
    assert any("BeginTime" in r.getMessage() for r in caplog.records
               if r.name == "dabc.cluster")


def test_wait_without_jobs_says_to_scale(slurm_cluster_ready, tmp_path):
    with slurm_cluster(tmp_path) as cluster:
        with pytest.raises(dabc.WorkerError, match=r"No job is submitted: call "
                           r"cluster.scale\(jobs=N\)"):
            cluster.wait_for_workers(1, timeout=1, interval=0.2)


# --- adapt and a fault -------------------------------------------------------------------
@pytest.mark.timeout(120)
@plain_failures
def test_adapt_from_zero_jobs(slurm_cluster_ready, tmp_path, tmp_path_factory):
    """No job at first: the run's tasks make adapt() submit jobs; the result is unchanged."""
    ref = reference(tmp_path_factory, n=N, gens=GENS)
    with slurm_cluster(tmp_path / "logs") as cluster:
        adaptive = cluster.adapt(minimum_jobs=0, maximum_jobs=2, interval="500ms")
        assert cluster.job_ids() == {}
        with Client(cluster) as client:
            h = abc_run(dabc.DaskDistributedSampler(client, no_worker_timeout=60),
                        tmp_path / "adapt.db", n=N, gens=GENS, sleep=0.001)
        adaptive.stop()
        submitted = list(tmp_path.glob("logs/*.out"))
        assert len(submitted) >= 1, "adapt() submitted no job"
    assert_same(snapshot(h), ref)


def test_slurm_helpers_only_touch_our_jobs(slurm_cluster_ready):
    """A job of another name survives our cancel-by-name (the helpers never cancel by user)."""
    ensure_slurm()
    ours, theirs = unique_job_name(), unique_job_name("dabc-other")
    ids = []
    try:
        for name in (ours, theirs):
            out = subprocess.run(["sbatch", "--parsable", "-J", name, "-t", "2", "-o",
                                  "/dev/null", "--wrap", "sleep 60"], capture_output=True,
                                 text=True, check=True).stdout
            ids.append(out.strip().split(";")[0])
        cancel(name=ours)
        wait_job_state(ids[0], ("CANCELLED", "GONE"), timeout=30)
        assert job_state(ids[1]) in ("PENDING", "RUNNING")
    finally:
        for job_id in ids:
            cancel(job_id=job_id)


def test_user_security_object_is_used_as_given(slurm_cluster_ready, tmp_path):
    """A distributed.Security with in-memory keys: the scheduler uses it; the workers get
    its keys through the job script (not a shared directory)."""
    material = TLSMaterial.create()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dask-jobqueue's shared-directory warning would fail
        with slurm_cluster(tmp_path, security=material.security()) as cluster:
            assert cluster.tls is None
            assert cluster.security.tls_ca_file == material.ca_pem
            assert "$DABC_TLS_DIR/key.pem" in cluster.job_script()
            assert not list(Path.cwd().glob(".dask-jobqueue.worker.*"))
