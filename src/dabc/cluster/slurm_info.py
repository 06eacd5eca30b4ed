"""What SLURM says about partitions, nodes and pending jobs, parsed.

:class:`~dabc.cluster.slurm.SLURMCluster` checks a request against the partition before it
submits anything (a job asking for more than any node has would otherwise pend forever, or
fail with "More processors requested than permitted", which explains nothing), and reports
why its jobs are pending. Both read the one-line forms of ``scontrol show partition -o`` and
``scontrol show node -o`` (``Key=Value`` fields) and ``squeue -h -o "%i|%T|%r"``; the
parsing lives here, apart from the cluster, so it can be tested on captured text.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["NodeInfo", "PartitionInfo", "explain_reason", "job_states", "nodes",
           "parse_key_values", "parse_memory_mb", "parse_time_seconds", "partition",
           "run_slurm", "format_seconds"]

log = logging.getLogger("dabc.cluster")

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


def run_slurm(args: Sequence[str], timeout: float = 30) -> str:
    """Run a SLURM command and return its standard output.

    Parameters
    ----------
    args : sequence of str
        The command and its arguments, e.g. ``["scontrol", "show", "partition", "-o"]``.
    timeout : float, default 30
        Seconds before giving up (a busy ``slurmctld`` can be slow).

    Returns
    -------
    str
        The command's standard output.

    Raises
    ------
    dabc.InputError
        When the command is not on PATH, fails or times out; the message names it and
        quotes SLURM's own message.
    """
    if shutil.which(args[0]) is None:
        raise InputError(f"{args[0]!r} is not on PATH: dabc.cluster.SLURMCluster needs SLURM's "
                         "commands (sbatch, squeue, scancel, scontrol). Run it on a login node "
                         "of a SLURM cluster, or load SLURM's module (e.g. 'module load slurm'); "
                         "preflight=False skips the partition check but jobs still need sbatch.")
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"'{' '.join(args)}' did not answer in {timeout:g} s: is slurmctld "
                         "up? ('scontrol ping' tells)") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise InputError(f"'{' '.join(args)}' failed (exit {proc.returncode}): {msg}")
    return proc.stdout


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


def format_seconds(seconds: float) -> str:
    """A duration as SLURM writes it: ``[D-]HH:MM:SS``.

    Parameters
    ----------
    seconds : float
        The duration.

    Returns
    -------
    str
        E.g. ``"01:00:00"`` or ``"1-00:00:00"``.
    """
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    hms = f"{hours:02d}:{minutes:02d}:{s:02d}"
    return f"{days}-{hms}" if days else hms


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
    out = run_slurm(["scontrol", "show", "partition", "-o"])
    parts = [PartitionInfo.from_fields(parse_key_values(line))
             for line in out.splitlines() if line.strip().startswith("PartitionName=")]
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
    out = run_slurm(["scontrol", "show", "node", "-o", hostlist])
    return [NodeInfo.from_fields(parse_key_values(line))
            for line in out.splitlines() if line.strip().startswith("NodeName=")]


def job_states(job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """State and reason of jobs still known to ``squeue``.

    Parameters
    ----------
    job_ids : iterable of str
        SLURM job ids.

    Returns
    -------
    dict
        ``{job_id: (state, reason)}``, e.g. ``{"123": ("PENDING", "Resources")}``; jobs
        that ended and were forgotten are missing.
    """
    ids = [str(j) for j in job_ids if j]
    if not ids:
        return {}
    out = run_slurm(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r"])
    result = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3:
            result[parts[0]] = (parts[1], parts[2])
    return result


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
