"""``dabc cluster up|status|down|batch``: Dask (and Redis) clusters on SLURM.

Grab mode keeps a cluster up for interactive work: ``up`` submits a host job that runs the
scheduler inside the allocation and keeps the worker jobs, waits until the workers are
connected and exits; ``status`` shows workers, jobs, pending reasons and the time left;
``down`` cancels everything and removes the connection file. Batch mode (``batch``) submits
one job that runs a script with its own cluster and ends with it. The work is done by
:mod:`dabc.cluster.grab` and :mod:`dabc.cluster.batch`; this module parses and prints. Exit
codes follow :mod:`dabc.cli.dispatch` (1 and one line on stderr for a ``DabcError``); ``batch
--wait`` exits with the job's (the script's) exit code.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cluster import batch as batch_mode
from ..cluster import grab

__all__ = ["add_parsers", "cmd_batch", "cmd_down", "cmd_status", "cmd_up"]


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _resources(p: argparse.ArgumentParser, walltime_default: str) -> None:
    p.add_argument("--workers", type=int, required=True,
                   help="worker jobs (up) or worker tasks (batch)")
    p.add_argument("--walltime", default=walltime_default,
                   help=f"SLURM time limit, e.g. 30, 02:00:00, 1-0 (default {walltime_default})")
    p.add_argument("--cores", type=int, default=1, help="cores per worker (default 1)")
    p.add_argument("--memory", default=None,
                   help="memory per worker, e.g. 4GB (default: the partition's DefMemPerCPU)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: SLURM's)")
    p.add_argument("--account", default=None, help="SLURM account (default: yours)")


def add_parsers(sub: Any) -> None:
    """Register the ``cluster`` command and its subcommands.

    Parameters
    ----------
    sub : argparse subparsers action
        What ``ArgumentParser.add_subparsers(dest="command")`` returned.
    """
    c = sub.add_parser("cluster", help="Dask/Redis clusters on SLURM (grab and batch mode)",
                       description="Grab mode: 'up' starts a cluster that stays up, "
                       "'status' and 'down' follow and end it. Batch mode: 'batch' runs one "
                       "script with its own cluster in one job.")
    actions = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    u = actions.add_parser("up", help="start a cluster that stays up; exit when its workers "
                           "are connected")
    u.add_argument("name", nargs="?", default=grab.DEFAULT_NAME,
                   help=f"the cluster's name (default {grab.DEFAULT_NAME!r})")
    _resources(u, "1-0")
    u.add_argument("--worker-walltime", default=None,
                   help="time limit of each worker job (default --walltime); its workers "
                        "retire before it and a new job replaces each")
    u.add_argument("--interface", default=None,
                   help="network interface the workers listen on, e.g. ib0 (default: "
                        "Dask's choice)")
    u.add_argument("--processes", type=int, default=1,
                   help="Dask worker processes per worker job (default 1)")
    u.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for the workers (default 600; the jobs stay "
                        "submitted after it)")
    u.set_defaults(func=cmd_up)
    s = actions.add_parser("status", help="workers, jobs, pending reasons, time left")
    s.add_argument("name", nargs="?", default=None, help="the cluster (default: the only one)")
    s.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the scheduler to answer (default 10)")
    s.set_defaults(func=cmd_status)
    d = actions.add_parser("down", help="cancel a cluster's jobs and remove its connection file")
    d.add_argument("name", help="the cluster")
    d.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the jobs to end (default 120)")
    d.set_defaults(func=cmd_down)
    b = actions.add_parser("batch", help="run a script with its own cluster in one job")
    _resources(b, "01:00:00")
    b.add_argument("--backend", choices=batch_mode.BACKENDS, default="dask",
                   help="dask: a scheduler and Dask workers (the script calls "
                        "dabc.cluster.connect()); redis: redis-server and dabc redis-worker "
                        "(the script uses RedisEvalParallelSampler(), which reads "
                        "DABC_REDIS_URL)")
    b.add_argument("--output", default=None,
                   help="the job's output file (default dabc-batch-%%j.out here; %%j: job id)")
    b.add_argument("--job-name", default=None,
                   help="SLURM job name (default dabc-batch-<script name>)")
    b.add_argument("--wait", action="store_true",
                   help="wait until the job ends and exit with its (the script's) exit code")
    b.add_argument("script", help="the Python script to run")
    b.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments")
    b.set_defaults(func=cmd_batch)


def cmd_up(args: argparse.Namespace) -> int:
    """``dabc cluster up``: submit, wait for the workers, print how to reach the cluster.

    Parameters
    ----------
    args : argparse.Namespace
        ``name``, ``workers``, ``walltime``, ``worker_walltime``, ``cores``, ``memory``,
        ``partition``, ``account``, ``processes``, ``interface``, ``timeout``.

    Returns
    -------
    int
        0 once the workers are connected.

    Raises
    ------
    InputError
        For a request the partition cannot meet (before anything is submitted).
    WorkerError
        When the workers are not connected within ``--timeout`` seconds.
    """
    try:
        info = grab.up(args.name, workers=args.workers, walltime=args.walltime,
                       worker_walltime=args.worker_walltime, cores=args.cores,
                       memory=args.memory, partition=args.partition, account=args.account,
                       processes=args.processes, interface=args.interface,
                       timeout=args.timeout,
                       report=lambda line: _err(f"dabc cluster up: {line}"))
    except KeyboardInterrupt:
        if grab.connection_path(args.name).exists():
            _err(f"dabc cluster up: the jobs stay submitted: 'dabc cluster status {args.name}'"
                 f" to follow them, 'dabc cluster down {args.name}' to cancel them")
        raise
    n = info["workers"] * info["processes"]
    print(f"cluster {info['name']!r} is up: {n} worker{'s' if n != 1 else ''} connected "
          f"after {info['seconds']:.1f} s")
    print(f"  scheduler:  {info['address']} (TLS; node {info['node']})")
    if info.get("dashboard"):
        print(f"  dashboard:  {info['dashboard']} on node {info['node']}")
        print(f"  tunnel:     {info['ssh']}   (from the login node; from elsewhere add "
              "-J <login node>), then open "
              f"http://localhost:{grab.LOCAL_DASHBOARD_PORT}/status")
    print(f"  connect:    dabc.cluster.connect({info['name']!r})")
    print(f"  jobs:       host {info['host_job']}, workers "
          f"{', '.join(info['worker_jobs']) or '-'}; output {info['output']}")
    print(f"  file:       {grab.connection_path(info['name'])} (mode 0600)")
    print(f"  stop it:    dabc cluster down {info['name']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``dabc cluster status``: workers, threads, jobs, dashboard.

    Parameters
    ----------
    args : argparse.Namespace
        ``name`` (None: the only cluster), ``timeout``.

    Returns
    -------
    int
        0 when the scheduler answers, 1 when not (its jobs are still listed).

    Raises
    ------
    InputError
        When there is no such cluster.
    """
    st = grab.status(args.name, timeout=args.timeout)
    up = st["scheduler"] == "up"
    print(f"cluster {st['name']!r}: scheduler {st['address'] or '-'} "
          f"({'up' if up else 'NOT ANSWERING'})")
    if up:
        print(f"  workers:    {st['workers']} connected ({st['expected_workers']} kept), "
              f"{st['threads']} threads")
    else:
        print(f"  {st['scheduler']}")
    if st.get("dashboard"):
        print(f"  dashboard:  {st['dashboard']}; tunnel: {st['ssh']}")
    if st["jobs"]:
        rows = [["job", "name", "state", "reason", "time left", "node"]]
        for j in st["jobs"]:
            rows.append([j.job_id, j.name, j.state, j.reason if j.pending else "-",
                         j.time_left, j.nodes or "-"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    else:
        print("  jobs:       none queued or running (the cluster has ended: "
              f"'dabc cluster down {st['name']}' removes its file)")
    print(f"  output:     {st.get('output') or '-'}")
    return 0 if up else 1


def cmd_down(args: argparse.Namespace) -> int:
    """``dabc cluster down``: cancel the jobs, wait until they are gone, remove the file.

    Parameters
    ----------
    args : argparse.Namespace
        ``name``, ``timeout``.

    Returns
    -------
    int
        0.

    Raises
    ------
    InputError
        When there is no such cluster.
    WorkerError
        When jobs are still there after ``--timeout`` seconds.
    """
    path = grab.connection_path(args.name)
    ended = grab.down(args.name, timeout=args.timeout)
    print(f"cluster {args.name!r} is down: "
          + (f"cancelled job{'s' if len(ended) != 1 else ''} {', '.join(ended)}"
             if ended else "no job was left")
          + f"; removed {path}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """``dabc cluster batch``: submit one job running the script with its own cluster.

    Parameters
    ----------
    args : argparse.Namespace
        ``script``, ``script_args``, ``workers``, ``walltime``, ``backend``, ``cores``,
        ``memory``, ``partition``, ``account``, ``output``, ``job_name``, ``wait``.

    Returns
    -------
    int
        0 on submission; with ``--wait`` the job's exit code.

    Raises
    ------
    InputError
        When the script is missing or the request cannot be met by the partition.
    """
    job_id, output = batch_mode.submit_batch(
        args.script, args.script_args, workers=args.workers, walltime=args.walltime,
        backend=args.backend, cores=args.cores, memory=args.memory, partition=args.partition,
        account=args.account, output=args.output, job_name=args.job_name)
    print(f"submitted batch job {job_id} ({args.backend}, {args.workers} worker task"
          f"{'s' if args.workers != 1 else ''}); output {output}", flush=True)
    if not args.wait:
        return 0
    try:
        rc = batch_mode.wait_batch(job_id, output,
                                   report=lambda line: _err(f"dabc cluster batch: {line}"))
    except KeyboardInterrupt:
        _err(f"dabc cluster batch: job {job_id} keeps running (scancel {job_id} stops it)")
        raise
    print(f"job {job_id} ended with exit code {rc}", flush=True)
    return rc
