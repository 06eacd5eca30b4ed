"""Talking to SLURM: its commands, run checked, and what they print, parsed.

Everything in :mod:`dabc.cluster` that asks SLURM something goes through here.
:class:`~dabc.cluster.slurm.SLURMCluster` checks a request against the partition before it
submits anything (a job asking for more than any node has would otherwise pend forever, or
fail with "More processors requested than permitted", which explains nothing) and reports
why its jobs pend. Grab mode (:mod:`dabc.cluster.grab`) and batch mode
(:mod:`dabc.cluster.batch`) submit jobs with ``sbatch``, follow them with ``squeue`` (state,
the reason SLURM gives for a pending job, the time left), find the node a job runs on
(``BatchHost``) and that node's address (``NodeAddr``) with ``scontrol show``, and cancel
them with ``scancel``: by job id, or by a job name they chose themselves, never by user.

Every command that fails becomes an :class:`~dabc.errors.InputError` naming the command and
quoting SLURM's message, so a missing SLURM, a rejected submission or an unknown partition
read as one clear line. The parsing of the one-line ``Key=Value`` forms (``scontrol show
... -o``) and of SLURM's times and memory sizes is separate from the commands, so it can be
tested on captured text.
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

__all__ = ["JobInfo", "NodeInfo", "PartitionInfo", "batch_host", "cancel", "default_memory",
           "explain_reason", "format_walltime", "jobs", "node_address", "nodes",
           "parse_key_values", "parse_memory_mb", "parse_time_seconds", "parse_walltime",
           "partition", "run_command", "show", "submit", "wait_gone"]

log = logging.getLogger("dabc.cluster")

_SQUEUE_FORMAT = "%i|%j|%T|%r|%L|%N|%M"
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)B?\s*$", re.IGNORECASE)

#: What the common pending reasons of ``squeue`` mean, for the progress line.
REASONS = {
    "Resources": "waiting for free nodes/CPUs/memory",
    "Priority": "other jobs come first",
    "None": "just submitted",
    "BeginTime": "its start time has not come",
    "Dependency": "waiting for another job",
    "JobHeldUser": "held by you (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "PartitionTimeLimit": "its walltime exceeds the partition's limit",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows",
    "QOSMaxCpuPerUserLimit": "you already use as many CPUs as your QOS allows",
    "AssocGrpCpuLimit": "your account's CPU limit is reached",
    "AssocMaxJobsLimit": "your account's job limit is reached",
    "AssocGrpJobsLimit": "your account's job limit is reached",
}


def run_command(cmd: Sequence[str], input: str | None = None, timeout: float = 60.0) -> str:
    """Run a SLURM command and return its standard output.

    Parameters
    ----------
    cmd : sequence of str
        The command and its arguments (never through a shell), e.g. ``["scontrol", "show",
        "partition", "-o"]``.
    input : str, optional
        Text for its standard input (a job script for ``sbatch``).
    timeout : float, default 60
        Seconds before giving up (a busy ``slurmctld`` can be slow).

    Returns
    -------
    str
        Its standard output.

    Raises
    ------
    InputError
        When the command is not on PATH (not on a SLURM login node?), times out or fails;
        the message names it and quotes SLURM's own message.
    """
    exe = shutil.which(cmd[0])
    if exe is None:
        raise InputError(f"{cmd[0]!r} is not on PATH: dabc.cluster.SLURMCluster needs SLURM's "
                         "commands (sbatch, squeue, scancel, scontrol), and so does 'dabc "
                         "cluster'. Run it on a login node of a SLURM cluster, or load SLURM's "
                         "module (e.g. 'module load slurm') or install slurm-client; "
                         "preflight=False skips the partition check but jobs still need sbatch.")
    try:
        res = subprocess.run([exe, *cmd[1:]], input=input, capture_output=True, text=True,
                             timeout=timeout, stdin=None if input is not None
                             else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"'{' '.join(cmd)}' did not answer in {timeout:g} s: is slurmctld "
                         "up? ('scontrol ping' tells)") from exc
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().replace("\n", "; ")
        raise InputError(f"'{' '.join(cmd)}' failed (exit {res.returncode}): {msg}")
    return res.stdout


def parse_key_values(line: str) -> dict[str, str]:
    """The ``Key=Value`` fields of one ``scontrol show ... -o`` line.

    Values may contain spaces only in the last field of a few record types (``OS=``,
    ``Reason=``); a token without ``=`` is appended to the previous value.

    Parameters
    ----------
    line : str
        One line of ``scontrol show partition -o`` or ``scontrol show node -o``.

    Returns
    -------
    dict
        Field name -> value (as text).
    """
    fields: dict[str, str] = {}
    last = None
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key and (key[0].isupper() or key[0].isdigit()):
            fields[key] = value
            last = key
        elif last is not None:
            fields[last] += " " + token
    return fields


def parse_time_seconds(text: str | int | float | None) -> float | None:
    """Seconds in a SLURM time: ``minutes``, ``minutes:seconds``, ``hours:minutes:seconds``,
    ``days-hours``, ``days-hours:minutes`` or ``days-hours:minutes:seconds``.

    Parameters
    ----------
    text : str, int, float or None
        The time; a number means minutes (as for ``sbatch -t``). ``UNLIMITED``,
        ``INFINITE``, ``NONE`` and None give None.

    Returns
    -------
    float or None
        Seconds, or None for no limit.

    Raises
    ------
    dabc.InputError
        When ``text`` is not a SLURM time.
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text) * 60
    s = str(text).strip()
    if s.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A", ""):
        return None
    m = _TIME.match(s)
    if not m:
        raise InputError(f"walltime {text!r} is not a SLURM time: use 'HH:MM:SS', 'MM', "
                         "'MM:SS', 'D-HH', 'D-HH:MM' or 'D-HH:MM:SS' (e.g. '01:30:00' or "
                         "'1-0').")
    days, a, b, c = m.groups()
    days_s = int(days) * 86400 if days else 0
    a, b, c = int(a), (int(b) if b else None), (int(c) if c else None)
    if days:  # days-hours[:minutes[:seconds]]
        return float(days_s + a * 3600 + (b or 0) * 60 + (c or 0))
    if c is not None:  # hours:minutes:seconds
        return float(a * 3600 + b * 60 + c)
    if b is not None:  # minutes:seconds
        return float(a * 60 + b)
    return float(a * 60)  # minutes


def parse_walltime(text: str) -> int:
    """Seconds in a walltime a user asks for: a SLURM time (:func:`parse_time_seconds`)
    that is neither unlimited nor zero.

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
    seconds = parse_time_seconds(str(text))
    if seconds is None:
        raise InputError(f"walltime {text!r} is not a SLURM time: use MM, HH:MM:SS, D-HH or "
                         "D-HH:MM:SS (e.g. 30, 02:00:00, 1-0)")
    if seconds <= 0:
        raise InputError(f"walltime {text!r} is zero: give the job some time (e.g. 30, 1-0)")
    return int(seconds)


def format_walltime(seconds: float) -> str:
    """``D-HH:MM:SS`` (or ``HH:MM:SS``) for a number of seconds, as ``sbatch --time`` takes it.

    Parameters
    ----------
    seconds : float
        A positive duration (rounded to whole seconds, at least 1).

    Returns
    -------
    str
        The SLURM time.

    Examples
    --------
    >>> format_walltime(86400), format_walltime(90)
    ('1-00:00:00', '00:01:30')
    """
    s = max(int(round(seconds)), 1)
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}" if days else f"{h:02d}:{m:02d}:{s:02d}"

def parse_memory_mb(text: str | int | None) -> int | None:
    """Megabytes (MiB, as SLURM counts) in a SLURM memory value: ``4000`` (MB), ``500M``,
    ``4G``, ``2T``; ``UNLIMITED`` and None give None.

    Parameters
    ----------
    text : str, int or None
        The value.

    Returns
    -------
    int or None
        MiB, rounded up.

    Raises
    ------
    dabc.InputError
        When ``text`` is not a memory size.
    """
    if text is None:
        return None
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if s.upper() in ("UNLIMITED", "INFINITE", "NONE", "0", ""):
        return None
    m = _MEMORY.match(s)
    if not m:
        raise InputError(f"memory {text!r} is not a SLURM memory size: use e.g. '4000M' or "
                         "'4G'.")
    value, unit = float(m.group(1)), m.group(2).upper()
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2, "P": 1024 ** 3}[unit]
    return int(-(-value * factor // 1))


@dataclass(frozen=True)
class PartitionInfo:
    """The limits of one partition, from ``scontrol show partition -o``.

    Parameters
    ----------
    name : str
        The partition.
    state : str
        ``UP``, ``DOWN``, ``DRAIN`` or ``INACTIVE``.
    nodes : str
        Its node list (a hostlist expression such as ``node[01-64]``).
    max_time : float or None
        ``MaxTime`` in seconds, None when unlimited.
    max_nodes : int or None
        ``MaxNodes`` per job, None when unlimited.
    max_cpus_per_node : int or None
        ``MaxCPUsPerNode``, None when unlimited.
    max_mem_per_node : int or None
        ``MaxMemPerNode`` in MiB, None when unlimited.
    is_default : bool
        Whether it is the default partition.
    """

    name: str
    state: str
    nodes: str
    max_time: float | None
    max_nodes: int | None
    max_cpus_per_node: int | None
    max_mem_per_node: int | None
    is_default: bool

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> PartitionInfo:
        """Build from :func:`parse_key_values` of one partition line.

        Parameters
        ----------
        f : dict
            The fields.

        Returns
        -------
        PartitionInfo
            The partition's limits.
        """
        def count(key: str) -> int | None:
            v = f.get(key, "UNLIMITED")
            return int(v) if v.isdigit() else None

        return cls(name=f.get("PartitionName", "?"), state=f.get("State", "UP"),
                   nodes=f.get("Nodes", ""), max_time=parse_time_seconds(f.get("MaxTime")),
                   max_nodes=count("MaxNodes"), max_cpus_per_node=count("MaxCPUsPerNode"),
                   max_mem_per_node=parse_memory_mb(f.get("MaxMemPerNode", "UNLIMITED")),
                   is_default=f.get("Default", "NO") == "YES")


@dataclass(frozen=True)
class NodeInfo:
    """One node's size, from ``scontrol show node -o``.

    Parameters
    ----------
    name : str
        The node.
    cpus : int
        CPUs a job can use (``CPUEfctv``, or ``CPUTot`` on SLURM before 22.05).
    memory_mb : int
        ``RealMemory`` minus ``MemSpecLimit``, in MiB.
    state : str
        The node's state (``IDLE``, ``MIXED``, ``DOWN+DRAIN``, ...).
    """

    name: str
    cpus: int
    memory_mb: int
    state: str

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> NodeInfo:
        """Build from :func:`parse_key_values` of one node line.

        Parameters
        ----------
        f : dict
            The fields.

        Returns
        -------
        NodeInfo
            The node's size.
        """
        cpus = f.get("CPUEfctv") or f.get("CPUTot") or "0"
        mem = int(f.get("RealMemory", "0") or 0)
        spec = f.get("MemSpecLimit", "")
        if spec.isdigit():
            mem -= int(spec)
        return cls(name=f.get("NodeName", "?"), cpus=int(cpus) if cpus.isdigit() else 0,
                   memory_mb=mem, state=f.get("State", "UNKNOWN"))


def _partition_fields() -> list[dict[str, str]]:
    out = run_command(["scontrol", "show", "partition", "-o"])
    return [parse_key_values(line) for line in out.splitlines()
            if line.strip().startswith("PartitionName=")]


def partition(name: str | None = None) -> PartitionInfo:
    """A partition's limits (the default partition when ``name`` is None).

    Parameters
    ----------
    name : str, optional
        The partition (``sbatch -p``).

    Returns
    -------
    PartitionInfo
        Its limits.

    Raises
    ------
    dabc.InputError
        When ``scontrol`` is missing or fails, the partition does not exist, or there is no
        default partition and none was named.
    """
    parts = [PartitionInfo.from_fields(f) for f in _partition_fields()]
    names = ", ".join(repr(p.name) for p in parts) or "none"
    if name is None:
        for p in parts:
            if p.is_default:
                return p
        raise InputError(f"this SLURM cluster has no default partition: name one with "
                         f"queue= (one of {names}).")
    for p in parts:
        if p.name == name:
            return p
    raise InputError(f"SLURM has no partition {name!r}: use queue= with one of {names} "
                     "('sinfo' lists them).")


def nodes(hostlist: str) -> list[NodeInfo]:
    """The nodes of a hostlist expression (e.g. a partition's ``Nodes``).

    Parameters
    ----------
    hostlist : str
        E.g. ``"node[01-64],big01"``; empty gives no nodes.

    Returns
    -------
    list of NodeInfo
        One per node.
    """
    if not hostlist or hostlist == "(null)":
        return []
    out = run_command(["scontrol", "show", "node", "-o", hostlist])
    return [NodeInfo.from_fields(parse_key_values(line))
            for line in out.splitlines() if line.strip().startswith("NodeName=")]


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
        parts = _partition_fields()
        fields = next((f for f in parts if (f.get("PartitionName") == partition if partition
                                            else f.get("Default") == "YES")),
                      parts[0] if parts and not partition else {})
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

    @property
    def summary(self) -> str:
        """``RUNNING on node01``, or ``PENDING (reason: Priority (other jobs come first))``."""
        if self.pending:
            return f"{self.state} (reason: {explain_reason(self.reason)})"
        return f"{self.state} on {self.nodes}"


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
        Its fields (of the first line, when ``what`` names several).

    Raises
    ------
    InputError
        When ``scontrol`` fails (for example an unknown or forgotten job).
    """
    lines = run_command(["scontrol", "show", kind, "-o", what]).splitlines()
    return parse_key_values(lines[0]) if lines else {}


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


def explain_reason(reason: str) -> str:
    """A pending reason with a few words of explanation, e.g. ``"Resources (waiting for free
    nodes/CPUs/memory)"``.

    Parameters
    ----------
    reason : str
        SLURM's reason code (``squeue %r``).

    Returns
    -------
    str
        The code, explained when it is a common one.
    """
    words = REASONS.get(reason)
    return f"{reason} ({words})" if words else reason
