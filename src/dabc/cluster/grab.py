"""Grab mode: a Dask cluster on SLURM that stays up between sessions, and how to reach it.

``dabc cluster up NAME`` (:func:`up`) submits one *host job* whose process
(``python -m dabc.cluster.host grab``) runs the scheduler and a
:class:`~dabc.cluster.SLURMCluster` that submits and keeps the worker jobs (replacing those
that retire before their walltime). The scheduler therefore lives inside the allocation, not
on the login node: it outlives the shell, the SSH session and the laptop that started it.

What a later session needs to find the cluster is written to a *connection file*,
``~/.dabc/clusters/NAME.json`` (the folder can be moved with ``DABC_CLUSTER_DIR``; it is made
with mode 0700 and the file with mode 0600, and a file readable by others is refused): the
scheduler's ``tls://`` address, the dashboard, the job ids and job names, and the cluster's
TLS material (:class:`~dabc.cluster.tls.TLSMaterial`). The material reaches the host job in
its job script (written to a node-local 0600 file, removed when the job ends), never through
the shared filesystem; the connection file is the one copy outside the allocation, and
:func:`down` removes it. The scheduler refuses every connection without a certificate
signed by the cluster's own CA, so holding the file is what makes a client part of the
cluster.

:func:`connect` reads the file and returns a ``distributed.Client`` over TLS. In batch mode
(:mod:`dabc.cluster.batch`) the job sets ``DABC_CLUSTER_ADDRESS`` and ``DABC_TLS_DIR`` for
the user's script instead, and :func:`connect` with no name uses them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import InputError, WorkerError
from . import slurm_commands
from .tls import TLS_DIR_VARIABLE, TLSMaterial

__all__ = ["ADDRESS_VARIABLE", "CLUSTER_DIR_VARIABLE", "cluster_dir", "connect",
           "connection_path", "down", "list_clusters", "read_connection", "status", "up"]

log = logging.getLogger("dabc.cluster.grab")

#: Folder of the connection files (default ``~/.dabc/clusters``).
CLUSTER_DIR_VARIABLE = "DABC_CLUSTER_DIR"
#: Set by batch mode for the user's script: the scheduler's address (with ``DABC_TLS_DIR``).
ADDRESS_VARIABLE = "DABC_CLUSTER_ADDRESS"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
DEFAULT_NAME = "default"
LOCAL_DASHBOARD_PORT = 8787


def check_name(name: str) -> str:
    """``name`` if it is a valid cluster name (letters, digits, ``_.-``; up to 40).

    Parameters
    ----------
    name : str
        A cluster name.

    Returns
    -------
    str
        The name.

    Raises
    ------
    InputError
        When it is not.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(f"cluster name {name!r} is not valid: use up to 40 letters, digits, "
                         "'_', '.' or '-', starting with a letter or digit (e.g. 'mycluster')")
    return name


def job_names(name: str) -> tuple[str, str]:
    """The SLURM job names of cluster ``name``'s host job and worker jobs.

    Parameters
    ----------
    name : str
        The cluster name.

    Returns
    -------
    tuple of str
        ``("dabc-NAME-host", "dabc-NAME-worker")``.
    """
    return f"dabc-{name}-host", f"dabc-{name}-worker"


def cluster_dir(create: bool = False) -> Path:
    """The folder of the connection files: ``$DABC_CLUSTER_DIR`` or ``~/.dabc/clusters``.

    Parameters
    ----------
    create : bool, default False
        Make it (mode 0700) when missing, and restrict an existing one to 0700.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    env = os.environ.get(CLUSTER_DIR_VARIABLE)
    path = Path(env).expanduser() if env else Path.home() / ".dabc" / "clusters"
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) != 0o700:
            os.chmod(path, 0o700)
    return path


def connection_path(name: str) -> Path:
    """Cluster ``name``'s connection file.

    Parameters
    ----------
    name : str
        The cluster name.

    Returns
    -------
    pathlib.Path
        ``<cluster_dir()>/NAME.json``.
    """
    return cluster_dir() / f"{check_name(name)}.json"


def list_clusters() -> list[str]:
    """The names of the clusters that have a connection file.

    Returns
    -------
    list of str
        Sorted names.
    """
    d = cluster_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if _NAME.fullmatch(p.stem))


def _write_private(path: Path, data: dict) -> None:
    """Write JSON to ``path`` with mode 0600, atomically (a temporary file, then rename)."""
    cluster_dir(create=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _missing_message(name: str) -> str:
    there = list_clusters()
    where = cluster_dir()
    listed = (f"the clusters there are: {', '.join(there)}" if there
              else "there are none")
    return (f"No cluster named {name!r}: {where / (name + '.json')} does not exist ({listed}). "
            f"Start one with 'dabc cluster up {name} --workers N --walltime 1-0', or set "
            f"{CLUSTER_DIR_VARIABLE} to the folder holding its file.")


def read_connection(name: str, check_mode: bool = True) -> dict:
    """The connection file of cluster ``name``.

    Parameters
    ----------
    name : str
        The cluster name.
    check_mode : bool, default True
        Refuse a file that group or others may read (it holds the cluster's private key).

    Returns
    -------
    dict
        Its content (``address``, ``dashboard``, ``host_job``, ``tls``, ...).

    Raises
    ------
    InputError
        When there is no such file (the message lists the clusters there are), it is
        readable by others, or it is not a connection file.
    """
    path = connection_path(name)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(_missing_message(name)) from None
    if check_mode and mode & 0o077:
        raise InputError(f"{path} has mode {mode:04o}: it holds the cluster's private key, so "
                         f"only you may read it. Run 'chmod 600 {path}' (and consider the key "
                         f"exposed: 'dabc cluster down {name}' and up again).")
    try:
        data = json.loads(text)
        data["name"]  # noqa: B018 (a connection file always names its cluster)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a dabc connection file ({exc}); remove it") from exc
    return data


def _client(address: str, material: TLSMaterial, timeout: float, what: str) -> Any:
    from distributed import Client

    try:
        return Client(address, security=material.security(), timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise WorkerError(f"The scheduler of {what} at {address} does not answer within "
                          f"{timeout:g} s ({type(exc).__name__}: {exc}). Its job may have ended "
                          "(walltime, scancel, node failure): see 'dabc cluster status'.") from exc


def connect(name: str | None = None, timeout: float = 30.0) -> Any:
    """A ``distributed.Client`` of a grab-mode cluster (or of this batch job), over TLS.

    Parameters
    ----------
    name : str, optional
        The cluster's name (``dabc cluster up NAME``). Default: inside a batch-mode job
        (``dabc cluster batch``) the job's own cluster, else the one cluster that has a
        connection file.
    timeout : float, default 30
        Seconds to wait for the scheduler to answer.

    Returns
    -------
    distributed.Client
        Connected with the cluster's certificate (encryption required).

    Raises
    ------
    InputError
        When there is no such cluster (the message lists those there are), none at all,
        several and no name given, or the connection file is readable by others.
    WorkerError
        When the scheduler does not answer (its job may have ended: ``dabc cluster
        status``).

    Examples
    --------
    >>> import dabc.cluster                                   # doctest: +SKIP
    >>> client = dabc.cluster.connect("mycluster")            # doctest: +SKIP
    >>> sampler = dabc.DaskDistributedSampler(client)         # doctest: +SKIP
    """
    if name is None and os.environ.get(ADDRESS_VARIABLE):
        address = os.environ[ADDRESS_VARIABLE]
        material = _material_from_dir(os.environ.get(TLS_DIR_VARIABLE, ""))
        return _client(address, material, timeout, "this batch job")
    if name is None:
        there = list_clusters()
        if not there:
            raise InputError(f"No cluster to connect to: {cluster_dir()} holds no connection "
                             "file. Start one with 'dabc cluster up NAME --workers N "
                             f"--walltime 1-0' (or set {CLUSTER_DIR_VARIABLE}).")
        if len(there) > 1:
            raise InputError(f"Several clusters ({', '.join(there)}): name one, e.g. "
                             f"connect({there[0]!r}).")
        name = there[0]
    info = read_connection(name)
    if not info.get("address"):
        raise WorkerError(f"Cluster {name!r} has no scheduler address yet: 'dabc cluster up' "
                          f"did not finish. See 'dabc cluster status {name}'.")
    return _client(info["address"], TLSMaterial.from_json(info["tls"]), timeout,
                   f"cluster {name!r}")


def _material_from_dir(directory: str) -> TLSMaterial:
    if not directory or not os.path.isdir(directory):
        raise InputError(f"{ADDRESS_VARIABLE} is set but {TLS_DIR_VARIABLE} "
                         f"({directory or 'unset'}) is not a folder: connect() without a name "
                         "works inside a 'dabc cluster batch' job only.")
    texts = []
    for filename in ("ca.pem", "cert.pem", "key.pem"):
        with open(os.path.join(directory, filename)) as f:
            texts.append(f.read())
    return TLSMaterial(*texts)


# --- up ----------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port nobody listens on here, right now.

    Returns
    -------
    int
        The port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _host_script(name: str, port: int, material: TLSMaterial, args: list[str],
                 output: Path, walltime: str, partition: str | None,
                 account: str | None, python: str) -> str:
    host_name, _ = job_names(name)
    lines = ["#!/bin/bash", f"#SBATCH --job-name={host_name}", "#SBATCH --ntasks=1",
             "#SBATCH --cpus-per-task=1", f"#SBATCH --time={walltime}",
             f"#SBATCH --output={output}"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines.append("# written by 'dabc cluster up': the scheduler of a grab-mode cluster")
    lines.extend(material.job_script_lines())
    lines.append(f"export {TLS_DIR_VARIABLE}")
    cmd = [python, "-u", "-m", "dabc.cluster.host", "grab", "--name", name, "--port",
           str(port), *args]
    # in the background, so that the TERM trap runs at once on scancel or at the walltime
    lines += [" ".join(shlex.quote(c) for c in cmd) + " &", "wait $!"]
    return "\n".join(lines) + "\n"


def _tail(path: str | os.PathLike | None, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def up(name: str = DEFAULT_NAME, workers: int = 1, walltime: str = "1-0",
       worker_walltime: str | None = None, cores: int = 1, memory: str | None = None,
       partition: str | None = None, account: str | None = None, processes: int = 1,
       interface: str | None = None, timeout: float = 600.0,
       report: Callable[[str], None] | None = None) -> dict:
    """Start a grab-mode cluster and wait until its workers are connected.

    Submits the host job (scheduler and :class:`~dabc.cluster.SLURMCluster` inside the
    allocation), writes the connection file, reports the reason SLURM gives while jobs
    pend, and returns once ``workers * processes`` Dask workers are connected.

    Parameters
    ----------
    name : str, default "default"
        The cluster's name (letters, digits, ``_.-``).
    workers : int, default 1
        Worker jobs to keep.
    walltime : str, default "1-0"
        Time limit of the host job, so the cluster's lifetime (SLURM format: ``30``,
        ``02:00:00``, ``1-0``).
    worker_walltime : str, optional
        Time limit of each worker job (default ``walltime``). Its workers retire before
        it and a new job replaces each; shorter jobs often start sooner (backfill).
    cores : int, default 1
        Cores (threads) per worker job.
    memory : str, optional
        Memory per worker job (``"4GB"``); default the partition's ``DefMemPerCPU``
        times ``cores``.
    partition, account : str, optional
        SLURM partition and account (default SLURM's defaults).
    processes : int, default 1
        Dask worker processes per worker job (the cores are shared among them).
    interface : str, optional
        The network interface the workers listen on (``ib0``, ``lo``, ...; default Dask's
        choice, the host's main address). The scheduler listens on the host job's node
        address (``NodeAddr``).
    timeout : float, default 600
        Seconds to wait for the workers before giving up (the jobs stay submitted).
    report : callable, optional
        Called with each progress line (default: the ``dabc.cluster.grab`` logger).

    Returns
    -------
    dict
        The connection file's content (``address``, ``dashboard``, ``ssh``,
        ``host_job``, ``worker_jobs``, ..., ``seconds``: time from submission to ready).

    Raises
    ------
    InputError
        When the name is invalid or taken by a running cluster, the request cannot be met
        by the partition (the limit is named), or ``sbatch`` refuses the job.
    WorkerError
        When the host job ends before the scheduler is up (its output's tail is in the
        message), or the workers are not connected within ``timeout`` seconds.
    """
    say = report or log.info
    check_name(name)
    if workers < 1 or cores < 1 or processes < 1:
        raise InputError(f"workers={workers}, cores={cores}, processes={processes}: each "
                         "must be at least 1")
    wall = slurm_commands.format_walltime(slurm_commands.parse_walltime(walltime))
    worker_wall = (slurm_commands.format_walltime(slurm_commands.parse_walltime(worker_walltime))
                   if worker_walltime else wall)
    host_name, worker_name = job_names(name)
    path = connection_path(name)
    if path.exists():
        old = read_connection(name, check_mode=False)
        alive = slurm_commands.jobs([old.get("host_job", "")], [host_name])
        if alive:
            raise InputError(f"Cluster {name!r} is already up (host job "
                             f"{alive[0].job_id}, {alive[0].state}): use it "
                             f"(dabc.cluster.connect({name!r})), or 'dabc cluster down {name}' "
                             "first.")
        path.unlink()  # a stale file of a cluster whose jobs have ended
    if memory is None:  # dask-jobqueue needs a figure: what SLURM would give anyway
        memory = slurm_commands.default_memory(cores, partition)
    _preflight(cores=1, memory=None, walltime=wall, partition=partition)  # the host job
    _preflight(cores=cores, memory=memory, walltime=worker_wall, partition=partition,
               account=account, processes=processes, workers=workers)
    material = TLSMaterial.create()
    port = free_port()
    args = ["--workers", str(workers), "--walltime", worker_wall, "--cores", str(cores),
            "--processes", str(processes)]
    for flag, value in (("--memory", memory), ("--partition", partition),
                        ("--account", account), ("--interface", interface)):
        if value:
            args += [flag, value]
    directory = cluster_dir(create=True)
    args += ["--log-directory", str(directory / f"{name}-logs")]  # the worker jobs' output
    output = directory / f"{name}-%j.out"
    tic = time.monotonic()
    job_id = slurm_commands.submit(_host_script(name, port, material, args, output, wall,
                                            partition, account, sys.executable))
    output = directory / f"{name}-{job_id}.out"
    info = {"name": name, "mode": "grab", "address": None, "dashboard": None, "ssh": None,
            "node": None, "host_job": job_id, "job_names": [host_name, worker_name],
            "worker_jobs": [], "workers": workers, "processes": processes, "cores": cores,
            "walltime": wall, "worker_walltime": worker_wall, "output": str(output),
            "logs": str(directory / f"{name}-logs"),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "tls": json.loads(material.to_json())}
    _write_private(path, info)
    say(f"submitted host job {job_id} ({host_name}); output {output}")
    client = None
    try:
        client = _await_scheduler(info, material, port, tic + timeout, say)
        _await_workers(client, info, tic + timeout, say)
        dashboard_port = client.scheduler_info()["services"].get("dashboard")
        if dashboard_port:
            info["dashboard"] = f"http://127.0.0.1:{dashboard_port}/status"
            info["ssh"] = (f"ssh -N -L {LOCAL_DASHBOARD_PORT}:127.0.0.1:{dashboard_port} "
                           f"{info['node']}")
        info["worker_jobs"] = [j.job_id for j in slurm_commands.jobs(names=[worker_name])]
        info["seconds"] = round(time.monotonic() - tic, 1)
        _write_private(path, info)
        return info
    finally:
        if client is not None:
            client.close()


def _preflight(**request: Any) -> None:
    """Check the worker request against the partition before anything is submitted."""
    from .slurm import preflight

    preflight(queue=request.get("partition"), cores=request.get("cores"),
              memory=request.get("memory"), walltime=request.get("walltime"))


def _await_scheduler(info: dict, material: TLSMaterial, port: int, deadline: float,
                     say: Callable[[str], None]) -> Any:
    last = None
    job_id = info["host_job"]
    while True:
        found = slurm_commands.jobs([job_id])
        if not found:
            tail = _tail(info["output"])
            connection_path(info["name"]).unlink(missing_ok=True)
            raise WorkerError(f"The host job {job_id} of cluster {info['name']!r} ended before "
                              f"its scheduler came up. Its output ({info['output']}) ends:\n"
                              f"{tail or '(empty)'}")
        job = found[0]
        if job.summary != last:
            say(f"host job {job_id}: {job.summary}")
            last = job.summary
        if not job.pending and info["address"] is None:
            node = slurm_commands.batch_host(job_id)
            if node:
                info["node"] = node
                info["address"] = f"tls://{slurm_commands.node_address(node)}:{port}"
                _write_private(connection_path(info["name"]), info)
        if info["address"]:
            try:
                from distributed import Client

                return Client(info["address"], security=material.security(), timeout=3)
            except (OSError, TimeoutError):
                pass  # not listening yet
        if time.monotonic() > deadline:
            raise WorkerError(f"The scheduler of cluster {info['name']!r} is not up yet (host "
                              f"job {job_id}: {job.state}"
                              + (f", reason {job.reason}" if job.pending else "")
                              + f"). The job stays submitted: 'dabc cluster status "
                              f"{info['name']}', or 'dabc cluster down {info['name']}'.")
        time.sleep(0.5)


def _await_workers(client: Any, info: dict, deadline: float,
                   say: Callable[[str], None]) -> None:
    want = info["workers"] * info["processes"]
    worker_name = info["job_names"][1]
    last = None
    while True:
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        found = slurm_commands.jobs(names=[worker_name])
        pending = sorted({j.reason for j in found if j.pending})
        state = (have, len(found), tuple(pending))
        if state != last:
            say(f"workers connected: {have}/{want}; worker jobs: {len(found)} submitted"
                + (f", pending (reason: {', '.join(map(slurm_commands.explain_reason, pending))})"
                   if pending else ""))
            last = state
        if have >= want:
            return
        if not slurm_commands.jobs([info["host_job"]]):
            raise WorkerError(f"The host job {info['host_job']} of cluster {info['name']!r} "
                              f"ended while waiting for workers. Its output "
                              f"({info['output']}) ends:\n{_tail(info['output'])}")
        if time.monotonic() > deadline:
            raise WorkerError(f"Only {have} of {want} workers of cluster {info['name']!r} are "
                              "connected after waiting"
                              + (f" (jobs pending: {', '.join(pending)})" if pending else "")
                              + f". The jobs stay submitted: 'dabc cluster status "
                              f"{info['name']}' to follow them, 'dabc cluster down "
                              f"{info['name']}' to give up.")
        time.sleep(0.5)


# --- status and down ----------------------------------------------------------------------
def status(name: str | None = None, timeout: float = 10.0) -> dict:
    """What cluster ``name`` has: workers, jobs (state, pending reason, time left), dashboard.

    Parameters
    ----------
    name : str, optional
        The cluster (default: the only one).
    timeout : float, default 10
        Seconds to wait for the scheduler.

    Returns
    -------
    dict
        ``name``, ``address``, ``dashboard``, ``ssh``, ``scheduler`` ("up" or the error),
        ``workers`` (count), ``threads``, ``jobs`` (list of
        :class:`~dabc.cluster.slurm_commands.JobInfo`), ``expected_workers``.

    Raises
    ------
    InputError
        When there is no such cluster (or none, or several and no name given).
    """
    if name is None:
        there = list_clusters()
        if len(there) != 1:
            raise InputError(f"Name a cluster: {cluster_dir()} holds "
                             + (", ".join(there) if there else "no connection file") + ".")
        name = there[0]
    info = read_connection(name)
    out = {"name": name, "address": info.get("address"), "dashboard": info.get("dashboard"),
           "ssh": info.get("ssh"), "workers": 0, "threads": 0, "output": info.get("output"),
           "expected_workers": info.get("workers", 0) * info.get("processes", 1)}
    out["jobs"] = slurm_commands.jobs([info.get("host_job", "")], info.get("job_names", []))
    if not info.get("address"):
        out["scheduler"] = "no address yet ('dabc cluster up' did not finish)"
        return out
    try:
        client = _client(info["address"], TLSMaterial.from_json(info["tls"]), timeout,
                         f"cluster {name!r}")
    except WorkerError as exc:
        out["scheduler"] = str(exc)
        return out
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        out["workers"] = len(workers)
        out["threads"] = sum(int(w.get("nthreads", 0)) for w in workers.values())
        out["scheduler"] = "up"
    finally:
        client.close()
    return out


def down(name: str, timeout: float = 120.0) -> list[str]:
    """Cancel cluster ``name``'s jobs, wait until they are gone, remove its connection file.

    The host job and the worker jobs are cancelled by id and by the job names the cluster
    gave them (never by user). When they have ended, their node-local TLS folders are gone
    (their job scripts remove them), and the connection file is removed.

    Parameters
    ----------
    name : str
        The cluster.
    timeout : float, default 120
        Seconds to wait for the jobs to end.

    Returns
    -------
    list of str
        The ids of the jobs that were still queued or running.

    Raises
    ------
    InputError
        When there is no such cluster.
    WorkerError
        When jobs are still there after ``timeout`` seconds (the file is kept).
    """
    info = read_connection(name, check_mode=False)
    names = info.get("job_names") or list(job_names(name))
    ids = [info.get("host_job", ""), *info.get("worker_jobs", [])]
    ids = [i for i in ids if i]
    running = [j.job_id for j in slurm_commands.jobs(ids, names)]
    deadline = time.monotonic() + timeout
    left = running
    while True:
        # again and again: the host may submit a worker job just before it ends
        slurm_commands.cancel(ids, names)
        left = slurm_commands.wait_gone(ids, names, timeout=2)
        if not left or time.monotonic() > deadline:
            break
        ids = sorted(set(ids) | {j.job_id for j in left})
    if left:
        raise WorkerError(f"Jobs of cluster {name!r} are still there after {timeout:g} s: "
                          + ", ".join(f"{j.job_id} ({j.state})" for j in left)
                          + f". Run 'dabc cluster down {name}' again, or scancel them.")
    connection_path(name).unlink(missing_ok=True)
    return sorted(set(running), key=int)
