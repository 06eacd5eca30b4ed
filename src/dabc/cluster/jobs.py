"""Thin, checked wrappers of the SLURM commands grab and batch mode need.

Grab mode (:mod:`dabc.cluster.grab`) and batch mode (:mod:`dabc.cluster.batch`) submit jobs
with ``sbatch``, follow them with ``squeue`` (state, the reason SLURM gives for a pending
job, the time left), find the node a job runs on with ``scontrol show job`` (``BatchHost``)
and that node's address with ``scontrol show node`` (``NodeAddr``), and cancel them with
``scancel``: by job id, or by a job name they chose themselves, never by user. Every command
that fails becomes an :class:`~dabc.errors.InputError` naming the command and its message,
so a missing SLURM, a rejected submission or an unknown partition read as one clear line.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["JobInfo", "batch_host", "cancel", "default_memory", "format_walltime", "jobs",
           "node_address", "parse_walltime", "run_command", "show", "submit", "wait_gone"]

log = logging.getLogger("dabc.cluster.jobs")

_SQUEUE_FORMAT = "%i|%j|%T|%r|%L|%N|%M"
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class JobInfo:
    """One line of ``squeue``.

    Parameters
    ----------
    job_id : str
        The job id.
    name : str
        The job name.
    state : str
        ``PENDING``, ``RUNNING``, ``COMPLETING``, ...
    reason : str
        Why a pending job waits (``Resources``, ``Priority``, ...), ``None`` when running.
    time_left : str
        SLURM's ``%L`` (e.g. ``23:59:10``, ``1-00:00:00``, ``INVALID`` while pending).
    nodes : str
        The node list (empty while pending).
    elapsed : str
        Time used so far (``%M``).
    """

    job_id: str
    name: str
    state: str
    reason: str
    time_left: str
    nodes: str
    elapsed: str

    @property
    def pending(self) -> bool:
        """Whether the job still waits to start."""
        return self.state in ("PENDING", "CONFIGURING", "REQUEUED", "RESV_DEL_HOLD")


def run_command(cmd: Sequence[str], input: str | None = None, timeout: float = 60.0) -> str:
    """Run a SLURM command and return its standard output.

    Parameters
    ----------
    cmd : sequence of str
        The command and its arguments (never through a shell).
    input : str, optional
        Text for its standard input (a job script for ``sbatch``).
    timeout : float, default 60
        Seconds before giving up.

    Returns
    -------
    str
        Its standard output.

    Raises
    ------
    InputError
        When the command is missing (not on a SLURM login node?), times out or fails; the
        message holds its standard error.
    """
    exe = shutil.which(cmd[0])
    if exe is None:
        raise InputError(f"{cmd[0]!r} not found on PATH: run this on a machine with the SLURM "
                         "client commands (a login node), or install slurm-client.")
    try:
        res = subprocess.run([exe, *cmd[1:]], input=input, capture_output=True, text=True,
                             timeout=timeout, stdin=None if input is not None
                             else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"{' '.join(cmd[:2])} did not answer within {timeout:g} s: is "
                         "slurmctld up (scontrol ping)?") from exc
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().replace("\n", "; ")
        raise InputError(f"{' '.join(cmd[:2])} failed (exit {res.returncode}): {msg}")
    return res.stdout


def submit(script: str, options: Sequence[str] = ()) -> str:
    """Submit a job script with ``sbatch --parsable`` (the script on standard input).

    Parameters
    ----------
    script : str
        The job script (``#!/bin/bash`` and ``#SBATCH`` lines first).
    options : sequence of str
        More ``sbatch`` options (they override the script's ``#SBATCH`` lines).

    Returns
    -------
    str
        The job id.

    Raises
    ------
    InputError
        When ``sbatch`` rejects the job (its message says why).
    """
    out = run_command(["sbatch", "--parsable", *options], input=script)
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise InputError(f"sbatch printed no job id: {out.strip()!r}")
    return job_id


def jobs(ids: Iterable[str] = (), names: Iterable[str] = ()) -> list[JobInfo]:
    """The user's queued and running jobs with one of ``ids`` or ``names``.

    Parameters
    ----------
    ids : iterable of str
        Job ids.
    names : iterable of str
        Job names.

    Returns
    -------
    list of JobInfo
        In ``squeue``'s order; jobs that ended (and left the queue) are absent.

    Raises
    ------
    InputError
        When ``squeue`` fails.
    """
    ids, names = {str(i) for i in ids}, set(names)
    if not ids and not names:
        return []
    out = run_command(["squeue", "--me", "-h", "-o", _SQUEUE_FORMAT])
    found = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 7:
            continue
        info = JobInfo(*[p.strip() for p in parts])
        if info.job_id in ids or info.name in names:
            found.append(info)
    return found


def show(kind: str, what: str) -> dict[str, str]:
    """``scontrol show KIND -o WHAT`` as a dict of its ``Key=Value`` fields.

    Parameters
    ----------
    kind : str
        ``job``, ``node``, ``partition``, ...
    what : str
        Its id or name.

    Returns
    -------
    dict
        The first value of each key.

    Raises
    ------
    InputError
        When ``scontrol`` fails (for example an unknown or forgotten job).
    """
    out = run_command(["scontrol", "show", kind, "-o", what])
    fields = {}
    for token in out.split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def batch_host(job_id: str) -> str | None:
    """The node that runs a job's batch script (``BatchHost``), None while pending.

    Parameters
    ----------
    job_id : str
        The job.

    Returns
    -------
    str or None
        The node name.

    Raises
    ------
    InputError
        When ``scontrol`` does not know the job.
    """
    host = show("job", str(job_id)).get("BatchHost")
    return host if host and host != "(null)" else None


def node_address(node: str) -> str:
    """The address other nodes reach ``node`` by (``NodeAddr``; the node name when unset).

    Parameters
    ----------
    node : str
        A node name.

    Returns
    -------
    str
        An IP address or host name.

    Raises
    ------
    InputError
        When ``scontrol`` does not know the node.
    """
    return show("node", node).get("NodeAddr") or node


def default_memory(cores: int, partition: str | None = None) -> str:
    """What SLURM gives a job of ``cores`` CPUs without ``--mem``: ``DefMemPerCPU`` (of the
    partition, else of the cluster) times ``cores``, or the partition's ``DefMemPerNode``.

    dask-jobqueue needs a memory figure for each worker job; this one changes nothing in
    what SLURM books.

    Parameters
    ----------
    cores : int
        CPUs per job.
    partition : str, optional
        The partition (default: the default partition).

    Returns
    -------
    str
        E.g. ``"2048MiB"``; ``"1GiB"`` times ``cores`` when SLURM sets no default.
    """
    fields: dict[str, str] = {}
    try:
        out = run_command(["scontrol", "show", "partition", "-o", *([partition] if partition
                                                                  else [])])
        lines = [ln for ln in out.splitlines() if ln.strip()]
        chosen = next((ln for ln in lines if partition or " Default=YES" in ln),
                      lines[0] if lines else "")
        for token in chosen.split():
            key, _, value = token.partition("=")
            fields.setdefault(key, value)
    except InputError:
        pass
    per_cpu = fields.get("DefMemPerCPU", "")
    per_node = fields.get("DefMemPerNode", "")
    if not per_cpu.isdigit() and not per_node.isdigit():
        try:
            for line in run_command(["scontrol", "show", "config"]).splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "DefMemPerCPU":
                    per_cpu = value.strip()
                elif key.strip() == "DefMemPerNode":
                    per_node = value.strip()
        except InputError:
            pass
    if per_cpu.isdigit() and int(per_cpu) > 0:
        return f"{int(per_cpu) * cores}MiB"
    if per_node.isdigit() and int(per_node) > 0:
        return f"{int(per_node)}MiB"
    return f"{cores}GiB"


def cancel(ids: Iterable[str] = (), names: Iterable[str] = ()) -> None:
    """``scancel`` jobs by id and by name (the user's own jobs only; never all of them).

    Parameters
    ----------
    ids : iterable of str
        Job ids (ids of jobs that already ended are fine).
    names : iterable of str
        Job names.

    Raises
    ------
    InputError
        When ``scancel`` fails for another reason than an ended job.
    """
    ids, names = [str(i) for i in ids], [n for n in names if n]
    if ids:
        try:
            run_command(["scancel", *ids])
        except InputError as exc:  # a job that already left the queue
            if "Invalid job id" not in str(exc):
                raise
    for name in names:
        run_command(["scancel", "--me", f"--name={name}"])


def wait_gone(ids: Iterable[str] = (), names: Iterable[str] = (),
              timeout: float = 120.0) -> list[JobInfo]:
    """Wait until no job with one of ``ids`` or ``names`` is queued or running.

    Parameters
    ----------
    ids : iterable of str
        Job ids.
    names : iterable of str
        Job names.
    timeout : float, default 120
        Seconds to wait at most.

    Returns
    -------
    list of JobInfo
        The jobs still there at the timeout (empty when all are gone).
    """
    ids, names = list(ids), list(names)
    deadline = time.monotonic() + timeout
    while True:
        left = jobs(ids, names)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def parse_walltime(text: str) -> int:
    """Seconds in a SLURM time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``.

    Parameters
    ----------
    text : str
        The time limit as ``sbatch --time`` takes it.

    Returns
    -------
    int
        Seconds.

    Raises
    ------
    InputError
        When ``text`` is not such a time or is zero.

    Examples
    --------
    >>> parse_walltime("1-0"), parse_walltime("30"), parse_walltime("02:00:00")
    (86400, 1800, 7200)
    """
    m = _WALLTIME.fullmatch(str(text).strip())
    if not m:
        raise InputError(f"walltime {text!r} is not a SLURM time: use MM, HH:MM:SS, D-HH or "
                         "D-HH:MM:SS (e.g. 30, 02:00:00, 1-0)")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:   # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:   # MM:SS
        seconds = a * 60 + b
    else:                 # MM
        seconds = a * 60
    if seconds <= 0:
        raise InputError(f"walltime {text!r} is zero: give the job some time (e.g. 30, 1-0)")
    return seconds


def format_walltime(seconds: float) -> str:
    """``D-HH:MM:SS`` (or ``HH:MM:SS``) for a number of seconds, as ``sbatch --time`` takes it.

    Parameters
    ----------
    seconds : float
        A positive duration.

    Returns
    -------
    str
        The SLURM time.

    Examples
    --------
    >>> format_walltime(86400), format_walltime(90)
    ('1-00:00:00', '00:01:30')
    """
    s = max(int(seconds), 1)
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}" if days else f"{h:02d}:{m:02d}:{s:02d}"
