"""Batch mode: one SLURM job that runs a script with its own cluster, and ends with it.

``dabc cluster batch --workers N script.py`` (:func:`submit_batch`) submits a single job of
``N + 1`` tasks. The batch script's process (``python -m dabc.cluster.host batch``, on the
job's first node) is the first task: it makes the cluster's TLS material *inside the job*
(so no key ever travels through the shared filesystem or leaves the allocation), starts the
Dask scheduler (``--backend dask``) or a ``redis-server`` (``--backend redis``: random
password, TLS with client certificates where the server is built with TLS, bound to the
node's address), starts the ``N`` worker tasks with ``srun`` (handing them the address and
the material on their standard input, never on a command line or in a file), waits for them,
and runs the script. When the script ends, the workers and the server are stopped and the
job exits with the script's exit code; resources are held only while the script runs.

The script finds its cluster without knowing the address: ``dabc.cluster.connect()``
(Dask: ``DABC_CLUSTER_ADDRESS`` and the node-local ``DABC_TLS_DIR``) or
``RedisEvalParallelSampler()`` (Redis: ``DABC_REDIS_URL``, ``DABC_REDIS_PASSWORD`` and the
HMAC secret ``DABC_REDIS_SECRET``). The job's output file names the scheduler, the
dashboard and the ``ssh -L`` command that reaches it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError, WorkerError
from . import slurm_commands
from .tls import TLS_DIR_VARIABLE, private_dir_lines

__all__ = ["BACKENDS", "batch_script", "exit_code", "submit_batch", "wait_batch"]

log = logging.getLogger("dabc.cluster.batch")

BACKENDS = ("dask", "redis")
#: The last line the job's first task writes: the script's exit code.
EXIT_LINE = "dabc batch: the script exited with code "


def memory_mb(memory: str) -> int:
    """Megabytes in a size such as ``"4GB"``, ``"500MiB"`` or ``"2G"``.

    Parameters
    ----------
    memory : str
        A size (Dask's ``parse_bytes`` units; a bare number is bytes).

    Returns
    -------
    int
        Megabytes (``sbatch --mem`` units), at least 1.

    Raises
    ------
    InputError
        When ``memory`` is not a size.
    """
    from dask.utils import parse_bytes

    text = str(memory).strip()
    if re.fullmatch(r"\d+[KMGT]", text, flags=re.I):  # SLURM's own suffixes
        text += "iB"
    try:
        return max(1, int(parse_bytes(text) // 2**20))
    except (ValueError, TypeError) as exc:
        raise InputError(f"memory {memory!r} is not a size: use e.g. 4GB or 500MB") from exc


def batch_script(script: str, script_args: Sequence[str] = (), workers: int = 1,
                 walltime: str = "01:00:00", backend: str = "dask", cores: int = 1,
                 memory: str | None = None, partition: str | None = None,
                 account: str | None = None, output: str = "dabc-batch-%j.out",
                 job_name: str | None = None, python: str | None = None,
                 workdir: str | None = None) -> str:
    """The job script of a batch-mode job.

    Parameters
    ----------
    script : str
        The user's Python script (made absolute).
    script_args : sequence of str
        Its arguments.
    workers : int, default 1
        Worker tasks (one Dask worker or one ``dabc redis-worker`` each).
    walltime : str, default "01:00:00"
        The job's time limit (SLURM format).
    backend : {"dask", "redis"}, default "dask"
        What coordinates the workers.
    cores : int, default 1
        Cores per task (a worker's threads or Redis worker processes).
    memory : str, optional
        Memory per task (``"4GB"``); default the partition's ``DefMemPerCPU``.
    partition, account : str, optional
        SLURM partition and account.
    output : str, default "dabc-batch-%j.out"
        The job's output file (``%j``: the job id).
    job_name : str, optional
        Default ``dabc-batch-<script name>``.
    python : str, optional
        The interpreter (default this one: the same environment on the nodes).
    workdir : str, optional
        The folder the script runs in (default the current one).

    Returns
    -------
    str
        The bash job script.

    Raises
    ------
    InputError
        When a count is below 1, the backend unknown, or the walltime or memory invalid.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if workers < 1 or cores < 1:
        raise InputError(f"workers={workers}, cores={cores}: each must be at least 1")
    wall = slurm_commands.format_walltime(slurm_commands.parse_walltime(walltime))
    name = job_name or f"dabc-batch-{Path(script).stem}"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --ntasks={workers + 1}",
             f"#SBATCH --cpus-per-task={cores}", f"#SBATCH --time={wall}",
             f"#SBATCH --output={output}"]
    if memory:
        lines.append(f"#SBATCH --mem-per-cpu={max(1, memory_mb(memory) // cores)}M")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    var = TLS_DIR_VARIABLE
    lines += [
        f"# written by 'dabc cluster batch' ({backend} backend)",
        # a node-local, private folder for the TLS material the first task makes; removed
        # when the job ends (normally, by scancel or at the walltime)
        *private_dir_lines(),
        f"export {var}",
        f"cd {shlex.quote(workdir or os.getcwd())}",
    ]
    cmd = [python or sys.executable, "-u", "-m", "dabc.cluster.host", "batch", "--backend",
           backend, "--workers", str(workers), "--cores", str(cores)]
    if memory:
        cmd += ["--memory", str(memory)]
    cmd += ["--", str(script), *script_args]
    lines += [" ".join(shlex.quote(c) for c in cmd) + " &", "wait $!"]
    return "\n".join(lines) + "\n"


def submit_batch(script: str, script_args: Sequence[str] = (), workers: int = 1,
                 walltime: str = "01:00:00", backend: str = "dask", cores: int = 1,
                 memory: str | None = None, partition: str | None = None,
                 account: str | None = None, output: str | None = None,
                 job_name: str | None = None) -> tuple[str, str]:
    """Check the request, then submit a batch-mode job.

    Parameters
    ----------
    script : str
        The user's Python script.
    script_args : sequence of str
        Its arguments.
    workers : int, default 1
        Worker tasks.
    walltime : str, default "01:00:00"
        The job's time limit.
    backend : {"dask", "redis"}, default "dask"
        Dask scheduler or ``redis-server``.
    cores : int, default 1
        Cores per task.
    memory : str, optional
        Memory per task.
    partition, account : str, optional
        SLURM partition and account.
    output : str, optional
        The output file (default ``dabc-batch-%j.out`` in the current folder).
    job_name : str, optional
        Default ``dabc-batch-<script name>``.

    Returns
    -------
    tuple of str
        The job id and the output file's path.

    Raises
    ------
    InputError
        When the script does not exist, the request cannot be met by the partition (the
        limit is named), or ``sbatch`` refuses the job.
    """
    path = Path(script).expanduser()
    if not path.is_file():
        raise InputError(f"script {script!r} not found (from {os.getcwd()})")
    out = str(Path(output or "dabc-batch-%j.out").expanduser().absolute())
    text = batch_script(str(path.resolve()), script_args, workers, walltime, backend, cores,
                        memory, partition, account, out, job_name)
    _preflight(cores=cores, memory=memory, walltime=walltime, partition=partition,
               account=account, workers=workers)
    job_id = slurm_commands.submit(text)
    return job_id, out.replace("%j", job_id)


def _preflight(**request) -> None:
    from .slurm import preflight

    preflight(queue=request.get("partition"), cores=request.get("cores"),
              memory=request.get("memory"), walltime=request.get("walltime"))


def exit_code(job_id: str, output: str | None = None) -> int | None:
    """The exit code of an ended batch job (``scontrol``'s ``ExitCode``, else the output's last
    line), None when unknown.

    Parameters
    ----------
    job_id : str
        The job.
    output : str, optional
        Its output file.

    Returns
    -------
    int or None
        The exit code (128 + signal for a job ended by a signal).
    """
    try:
        fields = slurm_commands.show("job", str(job_id))
    except InputError:
        fields = {}
    if fields.get("JobState") in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
        return None
    code = fields.get("ExitCode")
    if code and ":" in code:
        rc, sig = (int(x) for x in code.split(":"))
        return 128 + sig if sig else rc
    if output and os.path.exists(output):
        for line in reversed(Path(output).read_text(errors="replace").splitlines()):
            if line.startswith(EXIT_LINE):
                return int(line[len(EXIT_LINE):].split()[0])
    return None


def wait_batch(job_id: str, output: str | None = None, timeout: float | None = None,
               report: Callable[[str], None] | None = None) -> int:
    """Wait until a batch job ends; report the pending reason while it waits.

    Parameters
    ----------
    job_id : str
        The job.
    output : str, optional
        Its output file (read for the exit code when SLURM has forgotten the job).
    timeout : float, optional
        Seconds to wait at most (default: until it ends).
    report : callable, optional
        Called with each progress line (default: the ``dabc.cluster.batch`` logger).

    Returns
    -------
    int
        The job's exit code (the script's).

    Raises
    ------
    WorkerError
        When the job is still there after ``timeout`` seconds, or its exit code is unknown.
    """
    say = report or log.info
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        found = slurm_commands.jobs([job_id])
        if not found or found[0].state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            break
        job = found[0]
        if job.summary != last:
            say(f"job {job_id}: {job.summary}")
            last = job.summary
        if deadline is not None and time.monotonic() > deadline:
            raise WorkerError(f"job {job_id} still {job.state} after {timeout:g} s "
                              f"(scancel {job_id} to stop it)")
        time.sleep(0.5)
    for _ in range(20):  # COMPLETING: the exit code comes when the job has fully ended
        code = exit_code(job_id, output)
        if code is not None:
            return code
        time.sleep(0.5)
    raise WorkerError(f"job {job_id} ended but its exit code is unknown; see {output}")
