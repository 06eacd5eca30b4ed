"""dask-jobqueue's ``SLURMCluster`` with defaults that are safe and survive walltimes.

Why a subclass and not a recipe: the defaults of ``dask_jobqueue.SLURMCluster`` leave a
scheduler that anyone who reaches its port can use to run code as you (plain TCP), a
dashboard on every interface, TLS only through key files in a shared directory, workers that
die mid-task when their job's walltime ends, requests that pend forever or fail with "More
processors requested than permitted", and a master that waits without saying why. This class
keeps every parameter of dask-jobqueue's (``queue``, ``account``, ``cores``, ``memory``,
``processes``, ``walltime``, ``job_extra_directives``, ...) and changes only defaults:

- **TLS, no shared filesystem** (``security=None``/``True``): a throw-away CA and certificate
  per cluster (:class:`~dabc.cluster.tls.TLSMaterial`), kept in memory by the scheduler and
  clients, written by each job script to a node-local 0600 file that is removed when the job
  ends. The scheduler requires encryption and the CA's certificate: a ``tcp://`` client, or a
  TLS client without the certificate, is refused. ``security=False`` turns it off, with an
  :class:`InsecureClusterWarning`.
- **The dashboard on loopback** (``127.0.0.1``, a free port); :attr:`SLURMCluster.ssh_tunnel`
  is the ``ssh -L`` command that reaches it, logged at INFO when the cluster starts. Workers'
  HTTP servers listen on their node's loopback only.
- **Walltime-aware workers**: each worker gets ``--lifetime``/``--lifetime-stagger`` from
  ``walltime`` minus ``walltime_margin``, so it retires gracefully (its tasks and data move to
  other workers) before SLURM kills the job, and workers do not all leave at once; the job
  then ends and ``adapt()`` submits a new one.
- **Preflight**: before anything is submitted, the request (CPUs and memory per job,
  walltime) is checked against the partition's limits and nodes (``scontrol``); an impossible
  request raises :class:`~dabc.errors.InputError` naming the limit and the value asked for.
- **Visible waiting**: :meth:`SLURMCluster.wait_for_workers` reports the reason SLURM gives for
  pending jobs (``squeue``) on the ``dabc.cluster`` logger and as a progress line;
  :meth:`SLURMCluster.pending_reasons` returns them.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import dask
from dask.utils import parse_bytes

from .._compat.jobqueue import (
    NodeLocalTLSMixin,
    dask_jobqueue,
    node_local_tls_supported,
    slurm_format_bytes_ceil,
)
from ..errors import InputError, WorkerError
from . import slurm_commands
from .tls import TLSMaterial

__all__ = ["InsecureClusterWarning", "SLURMCluster", "lifetime_for_walltime", "preflight"]

log = logging.getLogger("dabc.cluster")

DEFAULT_JOB_NAME = "dabc-worker"
_MARGIN_MIN, _MARGIN_FRACTION, _MARGIN_MAX = 60.0, 0.10, 600.0


class InsecureClusterWarning(UserWarning):
    """A cluster runs without TLS: anyone who reaches its scheduler can run code as you."""


def _loopback_dashboard(address: Any) -> str:
    """``None``/``":0"``/``":8787"`` -> ``"127.0.0.1:<port>"``; any other host is refused."""
    if address is None:
        return "127.0.0.1:0"
    text = str(address)
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = ("", text) if text.isdigit() else (text, "0")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", "*"):
        raise InputError(f"dashboard_address={address!r} would serve the unauthenticated Dask "
                         "dashboard on every interface; use '127.0.0.1:PORT' and reach it "
                         "through the SSH tunnel (cluster.ssh_tunnel).")
    if host == "":
        host = "127.0.0.1"
    if host not in ("localhost", "::1") and not host.startswith("127."):
        raise InputError(f"dashboard_address={address!r} is not a loopback address; dabc serves "
                         "the unauthenticated Dask dashboard on loopback only: use "
                         "'127.0.0.1:PORT' and reach it through the SSH tunnel "
                         "(cluster.ssh_tunnel).")
    return f"{host}:{port or 0}"


def lifetime_for_walltime(walltime: str | float | None,
                          margin: str | float | None = "auto") -> tuple[float, float] | None:
    """The worker ``--lifetime`` and ``--lifetime-stagger`` (seconds) for a job's walltime.

    Workers retire uniformly at random between ``walltime - margin - 2 * stagger`` and
    ``walltime - margin`` after they start, so they leave before SLURM's time limit and not
    all at once. The margin leaves time for a retiring worker to hand its data to others
    and for the job to end.

    Parameters
    ----------
    walltime : str, float or None
        The job's walltime (a SLURM time such as ``"01:00:00"``; a number is minutes).
    margin : str, float or None, default "auto"
        Seconds (or a SLURM time) before the walltime by which every worker has left.
        ``"auto"``: 10 % of the walltime, at least 60 s and at most 10 minutes. None or 0:
        no lifetime (workers run until SLURM ends the job).

    Returns
    -------
    tuple of float or None
        ``(lifetime, stagger)``, or None when there is no walltime or no margin.

    Raises
    ------
    dabc.InputError
        When the margin is negative or leaves no time to work.
    """
    seconds = slurm_commands.parse_time_seconds(walltime)
    if seconds is None or margin is None or margin == 0:
        return None
    if margin == "auto":
        m = min(max(_MARGIN_MIN, _MARGIN_FRACTION * seconds), _MARGIN_MAX)
        if m >= seconds / 2:  # very short walltimes: keep half of it for work
            m = seconds / 2
    else:
        m = float(margin) if isinstance(margin, (int, float)) else (
            slurm_commands.parse_time_seconds(margin) or 0.0)
        if m < 0:
            raise InputError(f"walltime_margin={margin!r} is negative: give the seconds before "
                             "the walltime by which workers retire, or None to disable.")
        if m == 0:
            return None
        if m >= seconds:
            raise InputError(f"walltime_margin={margin!r} ({m:g} s) is not shorter than "
                             f"walltime={walltime!r} ({seconds:g} s): workers would retire "
                             "before they start; ask for a longer walltime or a smaller "
                             "margin (None disables retiring).")
    stagger = min(m / 2, (seconds - m) / 4)
    return seconds - m - stagger, stagger


def _job_states(job_ids: Any) -> dict[str, tuple[str, str]]:
    """``{job_id: (state, reason)}`` of the jobs still in ``squeue``."""
    return {j.job_id: (j.state, j.reason) for j in slurm_commands.jobs(job_ids)}


def _config(config_name: str, key: str, kwargs: dict, kw: str | None = None) -> Any:
    value = kwargs.get(kw or key.replace("-", "_"))
    if value is None:
        value = dask.config.get(f"jobqueue.{config_name}.{key}", None)
    return value


def preflight(queue: str | None = None, cores: int | None = None, memory: str | None = None,
              walltime: str | None = None, job_cpu: int | None = None,
              job_mem: str | None = None) -> slurm_commands.PartitionInfo:
    """Check one worker job's request against a partition before anything is submitted.

    Parameters
    ----------
    queue : str, optional
        The partition (default: SLURM's default partition).
    cores : int, optional
        CPUs per job (``--cpus-per-task``), when ``job_cpu`` is not given.
    memory : str, optional
        Memory per job as dask-jobqueue takes it (``"4GB"``), when ``job_mem`` is not given.
    walltime : str, optional
        The job's walltime (SLURM time).
    job_cpu : int, optional
        CPUs to book, overriding ``cores``.
    job_mem : str, optional
        Memory to book in SLURM's units (``"4G"``), overriding ``memory``.

    Returns
    -------
    slurm_commands.PartitionInfo
        The partition's limits.

    Raises
    ------
    dabc.InputError
        When SLURM's commands are missing, the partition does not exist or takes no jobs, or
        the request exceeds a limit (the message names the limit and the value asked for).
    """
    part = slurm_commands.partition(queue)
    name = part.name
    if part.state.upper().startswith(("INACTIVE", "DRAIN")):
        raise InputError(f"partition {name!r} is {part.state}: it takes no new jobs; choose "
                         "another partition with queue= ('sinfo' lists them).")
    if part.state.upper().startswith("DOWN"):
        log.warning("partition %r is DOWN: jobs will pend until an administrator brings it up",
                    name)
    cpus = job_cpu or cores
    mem_mb = (slurm_commands.parse_memory_mb(job_mem) if job_mem is not None else
              slurm_commands.parse_memory_mb(slurm_format_bytes_ceil(parse_bytes(memory)))
              if memory is not None else None)
    seconds = slurm_commands.parse_time_seconds(walltime)
    what = "job_cpu" if job_cpu else "cores"
    if part.max_nodes is not None and part.max_nodes < 1:
        raise InputError(f"partition {name!r} allows MaxNodes={part.max_nodes} per job: it "
                         "cannot run a worker job; choose another partition with queue=.")
    if seconds is not None and part.max_time is not None and seconds > part.max_time:
        raise InputError(f"walltime={walltime!r} ({slurm_commands.format_walltime(seconds)}), but "
                         f"partition {name!r} allows at most MaxTime="
                         f"{slurm_commands.format_walltime(part.max_time)}: ask for walltime="
                         f"'{slurm_commands.format_walltime(part.max_time)}' or less, or another "
                         "partition.")
    if cpus is not None and part.max_cpus_per_node is not None and cpus > part.max_cpus_per_node:
        raise InputError(f"{what}={cpus} per job, but partition {name!r} allows at most "
                         f"MaxCPUsPerNode={part.max_cpus_per_node}: ask for --cores "
                         f"{part.max_cpus_per_node} or less, or another partition.")
    if (mem_mb is not None and part.max_mem_per_node is not None
            and mem_mb > part.max_mem_per_node):
        raise InputError(f"memory={memory or job_mem!r} per job ({mem_mb} MB as SLURM counts), "
                         f"but partition {name!r} allows at most MaxMemPerNode="
                         f"{part.max_mem_per_node} MB: ask for less memory, or another "
                         "partition.")
    node_list = slurm_commands.nodes(part.nodes)
    if not node_list:
        raise InputError(f"partition {name!r} has no nodes: choose another partition with "
                         "queue= ('sinfo' lists them).")
    max_cpus = max(n.cpus for n in node_list)
    max_mem = max(n.memory_mb for n in node_list)
    if cpus is not None and cpus > max_cpus:
        raise InputError(f"{what}={cpus} per job, but the nodes of partition {name!r} have at "
                         f"most {max_cpus} CPUs: ask for --cores {max_cpus} or less, or "
                         "another partition.")
    if mem_mb is not None and mem_mb > max_mem:
        raise InputError(f"memory={memory or job_mem!r} per job ({mem_mb} MB as SLURM counts), "
                         f"but the nodes of partition {name!r} have at most {max_mem} MB: ask "
                         f"for --memory {max_mem // 1024}GiB or less, or another partition.")
    if cpus is not None and mem_mb is not None and not any(
            n.cpus >= cpus and n.memory_mb >= mem_mb for n in node_list):
        raise InputError(f"no node of partition {name!r} has both {cpus} CPUs and {mem_mb} MB "
                         f"({what}={cpus}, memory={memory or job_mem!r}): ask for fewer cores "
                         "or less memory, or another partition.")
    log.debug("preflight of partition %r: %d node(s), up to %d CPUs and %d MB per node, "
              "MaxTime %s: request of %s CPUs, %s MB, walltime %s fits", name, len(node_list),
              max_cpus, max_mem, part.max_time, cpus, mem_mb, walltime)
    return part


_check_request = preflight  # SLURMCluster's parameter ``preflight`` shadows the function


def _has_option(args: list, option: str) -> bool:
    return any(str(a) == option or str(a).startswith(option + "=") for a in args)


class SLURMCluster(NodeLocalTLSMixin, dask_jobqueue.SLURMCluster):
    """dask-jobqueue's ``SLURMCluster`` with TLS, a loopback dashboard, walltime-aware workers,
    a preflight check and visible waiting by default.

    Every parameter of ``dask_jobqueue.SLURMCluster`` is accepted and means the same; only
    the defaults below differ (and the extra ``walltime_margin`` and ``preflight``).

    Parameters
    ----------
    security : distributed.Security, bool or None, default None
        None or True: a new certificate authority and certificate for this cluster
        (:attr:`tls`), TLS required by the scheduler, delivered to workers inside their job
        scripts (no shared filesystem). False: plain TCP, with an
        :class:`InsecureClusterWarning`. A ``distributed.Security``: used as given (keys held
        in memory are delivered through the job script too, never a shared directory).
    walltime_margin : float, str or None, default "auto"
        Seconds (or a SLURM time) before the job's walltime by which its workers have
        retired (see :func:`lifetime_for_walltime`). None or 0: no lifetime, workers run
        until SLURM ends the job. Ignored when ``worker_extra_args`` has ``--lifetime``.
    preflight : bool, default True
        Check the request against the partition (``scontrol``) before anything starts.
    job_name : str, default "dabc-worker"
        The SLURM job name (``squeue``, ``scancel --name``).
    scheduler_options : dict, optional
        As for dask-jobqueue; ``dashboard_address`` defaults to ``"127.0.0.1:0"`` (a free
        port on loopback) and must be a loopback address.
    **kwargs
        Everything else ``dask_jobqueue.SLURMCluster`` takes: ``queue``, ``account``,
        ``cores``, ``memory``, ``processes``, ``walltime``, ``job_extra_directives``,
        ``interface``, ``log_directory``, ``worker_extra_args``, ``job_script_prologue``,
        ``n_workers``, ... Workers get ``--preload dabc`` (they import dabc as they start,
        not inside the first generation) unless ``worker_extra_args`` has a ``--preload``.

    Raises
    ------
    dabc.InputError
        From the preflight (a request the partition cannot run, SLURM's commands missing), or
        for a dashboard address that is not on loopback.
    """

    def __init__(self, *args: Any, security: Any = None, walltime_margin: float | str | None =
                 "auto", preflight: bool = True, scheduler_options: dict | None = None,
                 **kwargs: Any) -> None:
        config_name = kwargs.get("config_name") or "slurm"
        if kwargs.get("job_name") is None and dask.config.get(
                f"jobqueue.{config_name}.name", "dask-worker") == "dask-worker":
            kwargs["job_name"] = DEFAULT_JOB_NAME
        walltime = _config(config_name, "walltime", kwargs)
        self._walltime = walltime  # for the start-up log line
        if preflight:
            _check_request(
                queue=_config(config_name, "queue", kwargs),
                cores=_config(config_name, "cores", kwargs),
                memory=_config(config_name, "memory", kwargs),
                walltime=walltime, job_cpu=_config(config_name, "job-cpu", kwargs),
                job_mem=_config(config_name, "job-mem", kwargs))

        # --- security -------------------------------------------------------------------
        self.tls: TLSMaterial | None = None
        prologue = list(_config(config_name, "job-script-prologue", kwargs) or [])
        delivery = None
        if security is None or security is True:
            self.tls = delivery = TLSMaterial.create()
            security = self.tls.security()
        elif security is False:
            security = None
            msg = ("SLURMCluster(security=False): the scheduler listens on plain TCP without "
                   "authentication: anyone who can reach its port (any user of the login and "
                   "compute nodes) can run code as you and read your files. Keep the default "
                   "(security=None, TLS with a per-cluster certificate) unless the network is "
                   "yours alone.")
            log.warning(msg)
            warnings.warn(msg, InsecureClusterWarning, stacklevel=2)
        else:
            conf = security.get_tls_config_for_role("worker")
            if any(v is not None and "\n" in str(v) for v in conf.values()):
                # in-memory keys: deliver through the job script, not a shared directory
                delivery = TLSMaterial(conf["ca_file"], conf["cert"], conf["key"])
        if delivery is not None:
            if not node_local_tls_supported():
                raise InputError(
                    "this version of dask-jobqueue no longer has the hook dabc uses to give "
                    "workers their TLS files through the job script "
                    "(JobQueueCluster._get_worker_security); install dask-jobqueue 0.9, or "
                    "pass a distributed.Security that names certificate files on a "
                    "filesystem the workers share.")
            self._dabc_worker_security = delivery.file_security()
            prologue = delivery.job_script_lines() + prologue
        kwargs["job_script_prologue"] = prologue

        # --- worker options: lifetime, loopback HTTP ------------------------------------
        extra = list(_config(config_name, "worker-extra-args", kwargs) or [])
        self.worker_lifetime: tuple[float, float] | None = None
        if not _has_option(extra, "--lifetime"):
            self.worker_lifetime = lifetime_for_walltime(walltime, walltime_margin)
            if self.worker_lifetime is not None:
                lifetime, stagger = self.worker_lifetime
                extra += ["--lifetime", f"{lifetime:.0f}s", "--lifetime-stagger",
                          f"{stagger:.0f}s"]
        if not _has_option(extra, "--dashboard-address"):
            extra += ["--dashboard-address", "127.0.0.1:0"]
        if not _has_option(extra, "--preload"):
            # import dabc when the worker starts, not inside the first generation's first
            # task (about 1.5 s of CPU per worker; 100 workers sharing 2 cores took 117 s)
            extra += ["--preload", "dabc"]
        kwargs["worker_extra_args"] = extra

        # --- scheduler: dashboard on loopback -------------------------------------------
        options = dict(scheduler_options if scheduler_options is not None else
                       dask.config.get(f"jobqueue.{config_name}.scheduler-options", {}) or {})
        options["dashboard_address"] = _loopback_dashboard(options.get("dashboard_address"))

        super().__init__(*args, security=security, scheduler_options=options, **kwargs)
        if not self.asynchronous:
            self._log_started()

    # --- dashboard ----------------------------------------------------------------------
    @property
    def dashboard_port(self) -> int | None:
        """The port of the scheduler's dashboard on 127.0.0.1, or None without one.

        Returns
        -------
        int or None
            The port.
        """
        port = (self.scheduler_info or {}).get("services", {}).get("dashboard")
        return int(port) if port else None

    @property
    def ssh_tunnel(self) -> str | None:
        """The ``ssh -L`` command that brings the dashboard to your own machine's port.

        Run it on your machine, then open ``http://localhost:<port>/status``.

        Returns
        -------
        str or None
            E.g. ``"ssh -N -L 8787:127.0.0.1:8787 login01"``, None without a dashboard.
        """
        port = self.dashboard_port
        if port is None:
            return None
        return f"ssh -N -L {port}:127.0.0.1:{port} {socket.gethostname()}"

    def _log_started(self) -> None:
        tunnel = self.ssh_tunnel
        log.info("SLURMCluster: scheduler at %s (%s)%s",
                 self.scheduler_address, "TLS" if self.security.require_encryption or
                 self.tls is not None else "plain TCP",
                 f"; dashboard on 127.0.0.1:{self.dashboard_port}, reach it with: {tunnel} "
                 f"then http://localhost:{self.dashboard_port}/status" if tunnel else "")
        if self.worker_lifetime is not None:
            lifetime, stagger = self.worker_lifetime
            log.info("workers retire %.0f-%.0f s after they start (walltime %s)",
                     lifetime - stagger, lifetime + stagger, self._walltime)

    # --- jobs ---------------------------------------------------------------------------
    def job_ids(self) -> dict[str, str]:
        """The SLURM job id of each worker job submitted and not yet closed.

        Returns
        -------
        dict
            Worker (job) name -> SLURM job id.
        """
        return {str(name): str(job.job_id) for name, job in list(self.workers.items())
                if getattr(job, "job_id", None)}

    def pending_reasons(self) -> dict[str, str]:
        """Why the cluster's pending jobs wait, as ``squeue`` says.

        Returns
        -------
        dict
            SLURM job id -> reason (``Resources``, ``Priority``, ``QOSMaxJobsPerUserLimit``,
            ...), for the jobs that are PENDING.

        Raises
        ------
        dabc.InputError
            When ``squeue`` is missing or fails.
        """
        states = _job_states(self.job_ids().values())
        return {j: reason for j, (state, reason) in states.items() if state == "PENDING"}

    def _connected_workers(self) -> int:
        return len((self.scheduler_info or {}).get("workers", {}))

    def _waiting_text(self, n: int, states: dict[str, tuple[str, str]]) -> str:
        have = self._connected_workers()
        pending = {j: r for j, (s, r) in states.items() if s == "PENDING"}
        running = [j for j, (s, _) in states.items() if s in ("RUNNING", "CONFIGURING")]
        parts = [f"{have}/{n} Dask workers connected"]
        if pending:
            reasons: dict[str, list[str]] = {}
            for j, r in pending.items():
                reasons.setdefault(slurm_commands.explain_reason(r), []).append(j)
            parts.append("; ".join(f"{len(js)} job(s) pending: {r} [{', '.join(sorted(js))}]"
                                   for r, js in reasons.items()))
        if running:
            parts.append(f"{len(running)} job(s) running, workers starting")
        return " | ".join(parts)

    def wait_for_workers(self, n_workers: int = 1, timeout: float | None = None,
                         progress: Callable[[str], Any] | None = None,
                         interval: float = 1.0) -> None:
        """Wait until ``n_workers`` Dask workers are connected, reporting why jobs pend.

        Whenever the state of the jobs changes (pending with SLURM's reason, running,
        workers connected), it is logged on ``dabc.cluster`` at INFO and passed to
        ``progress``; without ``progress`` a progress line is written when standard output
        is a terminal.

        Parameters
        ----------
        n_workers : int, default 1
            Workers to wait for (submit jobs first: ``scale`` or ``adapt``).
        timeout : float, optional
            Seconds to wait at most; None waits as long as it takes.
        progress : callable, optional
            Called with a one-line status text.
        interval : float, default 1.0
            Seconds between ``squeue`` calls.

        Raises
        ------
        dabc.WorkerError
            On timeout, naming what the jobs were waiting for.
        dabc.InputError
            When ``n_workers`` is not a positive count.
        """
        if not isinstance(n_workers, int) or n_workers < 1:
            raise InputError(f"n_workers={n_workers!r}: give the number of workers to wait for "
                             "(1 or more).")
        if self.asynchronous:
            return super().wait_for_workers(n_workers, timeout=timeout)
        tty = progress is None and sys.stdout.isatty()
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        last, states = None, {}
        while True:
            if self._connected_workers() >= n_workers:
                break
            try:
                states = _job_states(self.job_ids().values())
            except InputError as exc:  # squeue hiccup: report, keep waiting
                log.debug("squeue failed while waiting for workers: %s", exc)
            text = self._waiting_text(n_workers, states)
            if text != last:
                log.info("%s (%.0f s)", text, time.monotonic() - start)
                if progress is not None:
                    progress(text)
                last = text
            if tty:
                sys.stdout.write(f"\r\033[K{text} ({time.monotonic() - start:.0f} s)")
                sys.stdout.flush()
            if deadline is not None and time.monotonic() >= deadline:
                if tty:
                    sys.stdout.write("\n")
                submitted = len(self.job_ids())
                hint = ("" if submitted else " No job is submitted: call cluster.scale(jobs=N) "
                        "or cluster.adapt(...) first.")
                raise WorkerError(f"timed out after {timeout:g} s waiting for {n_workers} Dask "
                                  f"worker(s): {text}.{hint}")
            # squeue once per interval; the worker count (no SLURM call) every 0.1 s
            until = time.monotonic() + interval
            if deadline is not None:
                until = min(until, deadline)
            while time.monotonic() < until and self._connected_workers() < n_workers:
                time.sleep(max(0.0, min(0.1, until - time.monotonic())))
        text = (f"{self._connected_workers()} Dask worker(s) connected after "
                f"{time.monotonic() - start:.1f} s")
        log.info(text)
        if progress is not None:
            progress(text)
        if tty:
            sys.stdout.write(f"\r\033[K{text}\n")
            sys.stdout.flush()

