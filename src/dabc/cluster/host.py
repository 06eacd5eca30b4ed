"""The processes that run inside the allocation for grab mode and batch mode.

``python -m dabc.cluster.host`` is started by the job scripts of :mod:`dabc.cluster.grab`
and :mod:`dabc.cluster.batch`, never by hand:

- ``grab``: the host job of ``dabc cluster up``. It reads the cluster's TLS material from
  the node-local ``$DABC_TLS_DIR`` (written by its job script, removed when the job ends),
  runs the scheduler on the node's address and the chosen port, and a
  :class:`~dabc.cluster.SLURMCluster` that submits the worker jobs and keeps their number
  (``adapt(minimum_jobs=N, maximum_jobs=N)`` replaces jobs that retire before their
  walltime). It runs until the job is cancelled (``dabc cluster down``) or its walltime,
  and then cancels its worker jobs.
- ``batch``: the first task of a ``dabc cluster batch`` job. It makes the TLS material,
  starts the Dask scheduler or a ``redis-server``, the worker tasks (``srun``, the material
  on their standard input), runs the user's script, stops everything when the script ends
  and exits with its exit code.
- ``batch-worker``: one worker task of a batch job (a Dask nanny and worker, with the
  material in memory; or ``dabc redis-worker`` with the material in a node-local 0600
  folder removed when the task ends).

Lines starting ``dabc batch:`` / ``dabc grab:`` are this process' report in the job's output
file (the address, the dashboard and the ``ssh -L`` command that reaches it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from ..errors import DabcError, InputError
from . import slurm_commands
from .tls import TLS_DIR_VARIABLE, TLSMaterial

__all__ = ["main", "node_address", "redis_url"]

log = logging.getLogger("dabc.cluster.host")

LOCAL_DASHBOARD_PORT = 8787
_PEMS = (("ca.pem", "ca_pem"), ("cert.pem", "cert_pem"), ("key.pem", "key_pem"))


def _say(prefix: str, text: str) -> None:
    sys.stdout.write(f"{prefix}: {text}\n")  # the job's output file is the report
    sys.stdout.flush()


class _Stop(SystemExit):
    """Raised in the main thread by SIGTERM (scancel, walltime) or SIGINT."""


def _stop_on_signals() -> None:
    def handler(signum, frame):
        raise _Stop(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def node_address(node: str | None = None) -> str:
    """The address other nodes reach this node by: its SLURM ``NodeAddr``.

    Parameters
    ----------
    node : str, optional
        The node name; default ``$SLURMD_NODENAME`` (set in SLURM jobs), else the host name.

    Returns
    -------
    str
        ``NodeAddr``, or the host name's address when ``scontrol`` does not know the node.
    """
    node = node or os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    try:
        return slurm_commands.node_address(node)
    except InputError:
        return socket.gethostbyname(node)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _private_dir() -> Path:
    """``$DABC_TLS_DIR`` (made by the job script) or a fresh 0700 folder under ``$TMPDIR``."""
    given = os.environ.get(TLS_DIR_VARIABLE)
    if given and os.path.isdir(given):
        os.chmod(given, 0o700)
        return Path(given)
    return Path(tempfile.mkdtemp(prefix="dabc-tls-"))


def _write_material(directory: Path, material: TLSMaterial) -> None:
    for filename, attr in _PEMS:
        fd = os.open(directory / filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(getattr(material, attr))


def _read_material(directory: str | os.PathLike) -> TLSMaterial:
    texts = []
    for filename, _ in _PEMS:
        with open(os.path.join(directory, filename)) as f:
            texts.append(f.read())
    return TLSMaterial(*texts)


def _ssh_hint(node: str, port: int) -> str:
    return (f"ssh -N -L {LOCAL_DASHBOARD_PORT}:127.0.0.1:{port} {node} (from the login node; "
            f"from elsewhere add -J <login node>), then open "
            f"http://localhost:{LOCAL_DASHBOARD_PORT}/status")


def redis_url(host: str, port: int, tls_dir: str | os.PathLike | None) -> str:
    """The ``DABC_REDIS_URL`` of a batch job's server: ``rediss://`` with the certificate
    files in ``tls_dir``, or ``redis://`` without TLS; never the password.

    Parameters
    ----------
    host : str
        The server's address.
    port : int
        Its port.
    tls_dir : path, optional
        Folder of ``ca.pem``, ``cert.pem``, ``key.pem`` (None: no TLS).

    Returns
    -------
    str
        The URL (redis-py's ``from_url`` reads the certificate options from its query).
    """
    if tls_dir is None:
        return f"redis://{host}:{port}/0"
    d = str(tls_dir)
    query = urlencode({"ssl_ca_certs": f"{d}/ca.pem", "ssl_certfile": f"{d}/cert.pem",
                       "ssl_keyfile": f"{d}/key.pem", "ssl_cert_reqs": "required",
                       # the certificate names no host: the cluster's private CA and the
                       # client certificate the server requires authenticate both ends
                       "ssl_check_hostname": "false"}, quote_via=quote)
    return f"rediss://{host}:{port}/0?{query}"


# --- batch: the first task -------------------------------------------------------------
def _start_workers(args: argparse.Namespace, conf: dict) -> subprocess.Popen:
    cmd = ["srun", "--input=all", f"--ntasks={args.workers}", f"--cpus-per-task={args.cores}",
           "--kill-on-bad-exit=0", f"--job-name={os.environ.get('SLURM_JOB_NAME', 'dabc')}",
           sys.executable, "-u", "-m", "dabc.cluster.host", "batch-worker"]
    exe = shutil.which("srun")
    if exe is None:
        raise InputError("srun not found on PATH inside the job: batch mode needs SLURM's "
                         "srun on the compute nodes.")
    proc = subprocess.Popen([exe, *cmd[1:]], stdin=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(conf) + "\n")  # the material: on stdin, never argv or a file
    proc.stdin.flush()  # stdin stays open: its end tells the tasks to stop (_stop_workers)
    return proc


def _stop_workers(proc: subprocess.Popen | None, grace: float = 30.0) -> None:
    """End the worker tasks: close their standard input (each then stops cleanly and removes
    its files); only if they are not gone after ``grace`` seconds, SIGTERM srun (which
    SIGKILLs the step)."""
    if proc is None:
        return
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _stop_process(proc, 15)


def _stop_process(proc: subprocess.Popen | None, grace: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _on_stdin_end(callback) -> None:
    """Call ``callback`` (in a thread) when standard input ends: the first task closed it."""
    def watch():
        try:
            sys.stdin.read()
        except (OSError, ValueError):
            pass
        callback()

    threading.Thread(target=watch, name="dabc-stdin-watch", daemon=True).start()


def _run_script(args: argparse.Namespace, env: dict) -> int:
    tic = time.monotonic()
    _say("dabc batch", f"running {' '.join([args.script, *args.script_args])}")
    proc = subprocess.Popen([sys.executable, args.script, *args.script_args],
                            env={**os.environ, **env})
    try:
        rc = proc.wait()
    except _Stop:
        _stop_process(proc, 10)
        raise
    rc = 128 - rc if rc < 0 else rc
    _say("dabc batch", f"the script took {time.monotonic() - tic:.1f} s")
    return rc


def _batch_dask(args: argparse.Namespace, addr: str, node: str, tls_dir: Path,
                material: TLSMaterial) -> int:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=0, host=addr, scheduler_port=0, protocol="tls://",
                           security=material.security(), dashboard_address="127.0.0.1:0")
    workers = client = None
    try:
        address = cluster.scheduler_address
        dport = cluster.scheduler.services["dashboard"].port
        _say("dabc batch", f"scheduler {address} on node {node} (TLS; the job's certificate "
                           "is required)")
        _say("dabc batch", f"dashboard http://127.0.0.1:{dport}/status on node {node}; "
                           f"reach it with {_ssh_hint(node, dport)}")
        conf = {"backend": "dask", "address": address, "tls": json.loads(material.to_json()),
                "nthreads": args.cores, "memory": args.memory}
        tic = time.monotonic()
        workers = _start_workers(args, conf)
        client = Client(cluster, security=material.security(), set_as_default=False)
        while len(client.scheduler_info(n_workers=-1)["workers"]) < args.workers:
            if workers.poll() is not None:
                raise InputError(f"the worker tasks ended (srun exit {workers.returncode}) "
                                 "before connecting; see their messages above")
            time.sleep(0.2)
        _say("dabc batch", f"{args.workers} workers connected in {time.monotonic() - tic:.1f} s")
        env = {"DABC_CLUSTER_ADDRESS": address, TLS_DIR_VARIABLE: str(tls_dir),
               "DABC_DASHBOARD": f"http://127.0.0.1:{dport}/status"}
        return _run_script(args, env)
    finally:
        if client is not None:
            try:  # close the workers and their nannies: the worker tasks end by themselves
                client.retire_workers(close_workers=True, remove=True)
            except Exception as exc:  # noqa: BLE001 (best effort; srun is stopped below)
                log.info("retiring the workers failed: %s", exc)
            client.close()
        _stop_workers(workers)
        cluster.close()


class _RedisDidNotStart(Exception):
    """redis-server exited or did not answer; ``args[0]`` is the end of its log."""


def _start_redis(addr: str, tls_dir: Path, password: str, tls: bool,
                 attempts: int = 3) -> tuple[subprocess.Popen, str, int]:
    """Start ``redis-server`` on ``addr`` and a free port; return it, its URL and port."""
    exe = os.environ.get("DABC_REDIS_SERVER") or shutil.which("redis-server")
    if exe is None:
        raise InputError("redis-server not found on PATH on the job's node: install Redis "
                         "there (or set DABC_REDIS_SERVER to its path), or use --backend dask")
    import redis

    log_path = tls_dir / "redis.log"
    for _attempt in range(attempts):  # another process may take the free port first
        port = _free_port(addr)
        conf = [f"bind {addr}", "protected-mode yes", f"requirepass {password}", 'save ""',
                "appendonly no", f"dir {tls_dir}", "daemonize no"]
        if tls:
            conf += ["port 0", f"tls-port {port}", f"tls-cert-file {tls_dir}/cert.pem",
                     f"tls-key-file {tls_dir}/key.pem", f"tls-ca-cert-file {tls_dir}/ca.pem",
                     "tls-auth-clients yes"]
        else:
            conf.append(f"port {port}")
        with open(log_path, "ab") as log_file:
            # the configuration (and so the password) on stdin: not in the process list
            proc = subprocess.Popen([exe, "-"], stdin=subprocess.PIPE, stdout=log_file,
                                    stderr=subprocess.STDOUT)
        proc.stdin.write(("\n".join(conf) + "\n").encode())
        proc.stdin.close()
        url = redis_url(addr, port, tls_dir if tls else None)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with redis.Redis.from_url(url, password=password,
                                          socket_connect_timeout=1) as r:
                    r.ping()
                return proc, url, port
            except redis.RedisError:
                time.sleep(0.1)
        _stop_process(proc, 5)
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        if "Address already in use" not in tail:
            break
    raise _RedisDidNotStart(tail)


def _await_redis_workers(url: str, password: str, want: int,
                         workers: subprocess.Popen) -> None:
    import redis

    from ..samplers.redis import live_workers

    with redis.Redis.from_url(url, password=password) as r:
        while len(live_workers(r)) < want:
            if workers.poll() is not None:
                raise InputError(f"the worker tasks ended (srun exit {workers.returncode}) "
                                 "before connecting; see their messages above")
            time.sleep(0.2)


def _batch_redis(args: argparse.Namespace, addr: str, node: str, tls_dir: Path,
                 material: TLSMaterial) -> int:
    password, secret = secrets.token_urlsafe(32), secrets.token_hex(32)
    tls = True
    try:
        server, url, port = _start_redis(addr, tls_dir, password, tls=True)
    except _RedisDidNotStart as exc:
        if "tls" not in str(exc).lower():
            raise InputError(f"redis-server did not start on {node}; it said: {exc}") from None
        _say("dabc batch", "WARNING: this redis-server has no TLS support (its message: "
                           f"{(str(exc).strip().splitlines() or ['?'])[-1]}): its traffic is not "
                           "encrypted, and clients authenticate by password only")
        tls = False
        try:
            server, url, port = _start_redis(addr, tls_dir, password, tls=False)
        except _RedisDidNotStart as exc2:
            raise InputError(f"redis-server did not start on {node}; it said: {exc2}") from None
    workers = None
    try:
        _say("dabc batch", f"redis-server {url.split('?')[0]} on node {node} ("
                           + ("TLS with client certificates and " if tls else "")
                           + "a random password)")
        conf = {"backend": "redis", "host": addr, "port": port,
                "tls": json.loads(material.to_json()) if tls else None, "password": password,
                "secret": secret, "processes": args.cores}
        tic = time.monotonic()
        workers = _start_workers(args, conf)
        _await_redis_workers(url, password, args.workers * args.cores, workers)
        _say("dabc batch", f"{args.workers * args.cores} Redis worker processes ready in "
                           f"{time.monotonic() - tic:.1f} s")
        env = {"DABC_REDIS_URL": url, "DABC_REDIS_PASSWORD": password,
               "DABC_REDIS_SECRET": secret}
        return _run_script(args, env)
    finally:
        _stop_workers(workers)  # each worker hands back its claim and exits
        _stop_process(server, 10)


def run_batch(args: argparse.Namespace) -> int:
    """The first task of a batch job: cluster, workers, the script; its exit code.

    Parameters
    ----------
    args : argparse.Namespace
        ``backend``, ``workers``, ``cores``, ``memory``, ``script``, ``script_args``.

    Returns
    -------
    int
        The script's exit code.
    """
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    addr = node_address(node)
    tls_dir = _private_dir()
    _say("dabc batch", f"job {os.environ.get('SLURM_JOB_ID', '?')}: {args.backend} backend, "
                       f"{args.workers} worker task(s) of {args.cores} core(s)")
    material = TLSMaterial.create()  # made here: the key never leaves the allocation
    _write_material(tls_dir, material)
    rc = 1
    try:
        run = _batch_dask if args.backend == "dask" else _batch_redis
        rc = run(args, addr, node, tls_dir, material)
    except _Stop as stop:  # scancel or the walltime: the script was stopped
        rc = int(stop.code)
        raise
    finally:
        shutil.rmtree(tls_dir, ignore_errors=True)
        _say("dabc batch", f"the script exited with code {rc}")
    return rc


# --- batch: a worker task --------------------------------------------------------------
async def _dask_worker(conf: dict, addr: str, name: str) -> None:
    from distributed import Nanny

    security = TLSMaterial.from_json(conf["tls"]).security()
    kwargs = {"memory_limit": conf["memory"]} if conf.get("memory") else {}
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    _on_stdin_end(lambda: loop.call_soon_threadsafe(ended.set))
    async with Nanny(conf["address"], nthreads=int(conf["nthreads"]), security=security,
                     host=addr, name=name, death_timeout=60, **kwargs) as nanny:
        done = asyncio.ensure_future(nanny.finished())
        told = asyncio.ensure_future(ended.wait())
        await asyncio.wait([done, told], return_when=asyncio.FIRST_COMPLETED)
        told.cancel()


def _redis_worker(conf: dict, addr: str) -> int:
    directory = None
    child = None
    try:
        if conf.get("tls"):
            directory = Path(tempfile.mkdtemp(prefix="dabc-tls-"))  # 0700, under $TMPDIR
            _write_material(directory, TLSMaterial.from_json(conf["tls"]))
        url = redis_url(conf["host"], conf["port"], directory)
        env = {**os.environ, "DABC_REDIS_PASSWORD": conf["password"],
               "DABC_REDIS_SECRET": conf["secret"]}
        env.pop("REDISCLI_AUTH", None)
        env.pop("DABC_REDIS_SECRET_FILE", None)
        child = subprocess.Popen([sys.executable, "-m", "dabc.cli.redis_cli", "redis-worker",
                                  "--url", url, "--processes", str(conf.get("processes", 1)),
                                  "--reconnect-timeout", "60"], env=env)
        _on_stdin_end(child.terminate)  # SIGTERM: it hands back its claim and exits
        return child.wait()
    finally:
        _stop_process(child, 20)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def run_batch_worker(args: argparse.Namespace) -> int:
    """One worker task of a batch job; its configuration comes on standard input.

    Parameters
    ----------
    args : argparse.Namespace
        No options (everything is on standard input).

    Returns
    -------
    int
        0 when the worker was closed by the first task.
    """
    conf = json.loads(sys.stdin.readline())
    addr = node_address()
    if conf["backend"] == "dask":
        name = f"{os.environ.get('SLURM_JOB_ID', 'job')}.{os.environ.get('SLURM_PROCID', 0)}"
        asyncio.run(_dask_worker(conf, addr, name))
        return 0
    return _redis_worker(conf, addr)


# --- grab: the host job ----------------------------------------------------------------
def run_grab(args: argparse.Namespace) -> int:
    """The host job of a grab-mode cluster: scheduler and worker jobs until cancelled.

    Parameters
    ----------
    args : argparse.Namespace
        ``name``, ``port``, ``workers``, ``walltime``, ``cores``, ``memory``,
        ``processes``, ``partition``, ``account``, ``interface``, ``log_directory``.

    Returns
    -------
    int
        143 after SIGTERM (``dabc cluster down``, walltime), having cancelled the workers.
    """
    from .grab import job_names
    from .slurm import SLURMCluster

    tls_dir = os.environ.get(TLS_DIR_VARIABLE)
    if not tls_dir or not os.path.isdir(tls_dir):
        raise InputError(f"{TLS_DIR_VARIABLE} is not set: this runs in the job script "
                         "'dabc cluster up' writes")
    material = _read_material(tls_dir)
    for filename, _ in _PEMS:  # in memory from here on
        os.unlink(os.path.join(tls_dir, filename))
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    addr = node_address(node)
    _, worker_name = job_names(args.name)
    kwargs = {"cores": args.cores, "processes": args.processes, "walltime": args.walltime,
              "job_name": worker_name, "security": material.security(),
              "scheduler_options": {"host": addr, "port": args.port,
                                    "dashboard_address": "127.0.0.1:0"}}
    if args.memory:
        kwargs["memory"] = args.memory
    if args.partition:
        kwargs["queue"] = args.partition
    if args.account:
        kwargs["account"] = args.account
    if args.interface:
        kwargs["interface"] = args.interface
    # the worker jobs' output beside the host job's, not in the folder 'up' ran in
    logs = Path(args.log_directory or Path.cwd())
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    kwargs["log_directory"] = str(logs)
    cluster = SLURMCluster(**kwargs)
    try:
        dport = cluster.scheduler.services["dashboard"].port
        _say("dabc grab", f"cluster {args.name!r}: scheduler {cluster.scheduler_address} on "
                          f"node {node}")
        _say("dabc grab", f"dashboard http://127.0.0.1:{dport}/status; reach it with "
                          f"{_ssh_hint(node, dport)}")
        cluster.adapt(minimum_jobs=args.workers, maximum_jobs=args.workers)
        _say("dabc grab", f"keeping {args.workers} worker job(s) ({worker_name})")
        while True:
            time.sleep(3600)
    finally:
        _say("dabc grab", "stopping: cancelling the worker jobs")
        cluster.close()


# --- command line ----------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dabc.cluster.host``.

    Returns
    -------
    argparse.ArgumentParser
        With the subcommands ``grab``, ``batch`` and ``batch-worker``.
    """
    parser = argparse.ArgumentParser(prog="python -m dabc.cluster.host",
                                     description="Processes inside a grab- or batch-mode "
                                     "job (started by their job scripts).")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grab")
    g.add_argument("--name", required=True)
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--workers", type=int, required=True)
    g.add_argument("--walltime", required=True)
    g.add_argument("--cores", type=int, default=1)
    g.add_argument("--memory", default=None)
    g.add_argument("--processes", type=int, default=1)
    g.add_argument("--partition", default=None)
    g.add_argument("--account", default=None)
    g.add_argument("--interface", default=None)
    g.add_argument("--log-directory", default=None)
    g.set_defaults(func=run_grab)
    b = sub.add_parser("batch")
    b.add_argument("--backend", choices=["dask", "redis"], default="dask")
    b.add_argument("--workers", type=int, required=True)
    b.add_argument("--cores", type=int, default=1)
    b.add_argument("--memory", default=None)
    b.add_argument("script")
    b.add_argument("script_args", nargs=argparse.REMAINDER)
    b.set_defaults(func=run_batch)
    w = sub.add_parser("batch-worker")
    w.set_defaults(func=run_batch_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one of the in-job processes; SIGTERM and SIGINT end it cleanly.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Its exit code (1 after a ``DabcError``, printed as one line).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s "
                        "%(name)s: %(message)s")
    logging.getLogger("dabc").setLevel(logging.INFO)  # SLURMCluster's progress, in the output
    _stop_on_signals()
    try:
        return int(args.func(args) or 0)
    except _Stop as stop:
        return int(stop.code)
    except DabcError as exc:
        _say(f"dabc {args.command}", f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
