"""``dabc redis-worker`` and ``dabc redis-manager``: run and inspect a Redis worker pool.

These subcommands are part of ``dabc`` (:func:`dabc.cli.main.build_parser` adds them) and
can also be run alone, as ``python -m dabc.cli.redis_cli``, which starts faster on a
worker node. Both ways go through :func:`dabc.cli.dispatch.dispatch` and exit alike: 0
success, 1 a ``DabcError`` such as a wrong password (one line
``dabc redis-worker: error: ...`` on stderr), 2 a usage error, 130 Ctrl-C. The work itself
is done by :mod:`dabc.samplers.redis` (``work_loop``, ``status``, ``manager``).

Connection settings come from the command line, a file or the environment (see
:data:`CONNECTION_HELP`), so that no password need appear in the process list. A worker
logs one line on stderr when it starts (the server, where the password came from, the
processes and the runtime; never the password) and one when it exits (why, and what it
did). ``redis-manager info`` prints a table for people and ``--json`` one JSON object for
scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from ..errors import DabcError
from ..samplers.redis import (
    URL_ENV,
    connect,
    load_secret,
    manager,
    password_source,
    redact,
    status,
    work_loop,
)
from .dispatch import dispatch

__all__ = ["CONNECTION_HELP", "add_parsers", "build_parser", "format_duration",
           "format_status", "main", "parse_duration", "run_manager", "run_worker"]

log = logging.getLogger("dabc.cli.redis")

CONNECTION_HELP = f"""\
connection settings (the first one found wins):
  server:   --url, else --host/--port, else ${URL_ENV}, else localhost:6379
  password: one inside the URL, else --password, else --password-file FILE, else
            $REDISCLI_AUTH, else $DABC_REDIS_PASSWORD
  --password (or a URL with a password) on the command line is visible to every user
  of the machine in `ps`: use --password-file (mode 0600; a file readable by group or
  others is refused) or one of the environment variables instead.
"""
_SECRET_HELP = """\
  The HMAC secret: --secret-file, else $DABC_REDIS_SECRET, else the file named by
  $DABC_REDIS_SECRET_FILE, else ~/.config/dabc/redis-secret (never the command line).
"""


def parse_duration(text: str) -> float:
    """A duration in seconds from ``'90'``, ``'90s'``, ``'15m'``, ``'2h'`` or ``'1d'``.

    Parameters
    ----------
    text : str
        A number, optionally followed by ``s``, ``m``, ``h`` or ``d``.

    Returns
    -------
    float
        Seconds.

    Raises
    ------
    argparse.ArgumentTypeError
        When ``text`` is not a duration (argparse turns it into a usage error).

    Examples
    --------
    >>> parse_duration("15m")
    900.0
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def format_duration(seconds: float) -> str:
    """A duration for people: ``'3 s'``, ``'2 min 5 s'``, ``'1 h 3 min'``, ``'2 d 4 h'``.

    Parameters
    ----------
    seconds : float
        The duration (negative counts as 0).

    Returns
    -------
    str
        Whole seconds below a minute, then the two largest units.

    Examples
    --------
    >>> format_duration(125.4)
    '2 min 5 s'
    """
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="the server (default localhost, or "
                   f"${URL_ENV} when neither --host nor --port is given)")
    p.add_argument("--port", type=int, default=None, help="default 6379")
    p.add_argument("--password", default=None,
                   help="the server's requirepass; visible to other users in the process "
                        "list: prefer --password-file, REDISCLI_AUTH or DABC_REDIS_PASSWORD")
    p.add_argument("--password-file", default=None, metavar="FILE",
                   help="file holding the password (mode 0600)")
    p.add_argument("--url", default=None, help=f"redis:// or rediss:// (TLS) URL (default "
                                               f"${URL_ENV})")
    p.add_argument("--insecure", action="store_true",
                   help="accept a server without a password that is not on loopback")


def _server(args: argparse.Namespace) -> tuple[str, int, str | None]:
    """``(host, port, url)`` by the rule of :data:`CONNECTION_HELP`."""
    url = args.url
    if url is None and args.host is None and args.port is None:
        url = os.environ.get(URL_ENV) or None
    return args.host or "localhost", 6379 if args.port is None else args.port, url


def _warn_about_argv_password(args: argparse.Namespace) -> None:
    if args.password is not None or (args.url and urlparse(args.url).password):
        flag = "--password" if args.password is not None else "--url"
        log.warning("the password given with %s is visible to every user of this machine "
                    "in `ps`; use --password-file FILE (mode 0600), REDISCLI_AUTH or "
                    "DABC_REDIS_PASSWORD instead", flag)


def add_parsers(sub: Any) -> None:
    """Register the ``redis-worker`` and ``redis-manager`` subcommands.

    Parameters
    ----------
    sub : argparse subparsers action
        What ``ArgumentParser.add_subparsers(dest="command")`` returned.
    """
    w = sub.add_parser("redis-worker", help="serve Redis analyses with worker processes",
                       epilog=CONNECTION_HELP + _SECRET_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_args(w)
    w.add_argument("--runtime", type=parse_duration, default=None,
                   help="exit after this long, e.g. 2h (default: run until stopped)")
    w.add_argument("--processes", type=int, default=1, help="worker processes to run")
    w.add_argument("--idle-wait", type=parse_duration, default=0.5,
                   help="with nothing to do, look for work again after this long at the "
                        "latest (masters wake idle workers at once when they queue tasks)")
    w.add_argument("--secret-file", default=None,
                   help="file holding the HMAC secret shared with the masters (mode 0600; "
                        "default DABC_REDIS_SECRET, DABC_REDIS_SECRET_FILE or "
                        "~/.config/dabc/redis-secret)")
    w.add_argument("--reconnect-timeout", type=parse_duration, default=300.0,
                   help="give up after the server has been unreachable this long (default 5m)")
    w.set_defaults(func=run_worker)
    m = sub.add_parser("redis-manager", help="inspect or stop analyses on a Redis server",
                       epilog=CONNECTION_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    # dest "action": "command" is the subcommand's name (redis-manager), used in messages
    m.add_argument("action", metavar="{info,stop,reset}", choices=["info", "stop", "reset"],
                   help="info: the workers and the analyses; stop: end the analyses after "
                        "their current generation; reset: delete every dabc key "
                        "(emergencies only)")
    m.add_argument("--json", action="store_true",
                   help="print one JSON object (numbers as numbers, ISO 8601 UTC times) "
                        "instead of text")
    _connection_args(m)
    m.set_defaults(func=run_manager)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stderr() -> None:
    """Show dabc's warnings on stderr (refused work, lost connections) in a worker, and
    the worker's own start and exit lines (INFO)."""
    logger = logging.getLogger("dabc")
    if not any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(min(logger.getEffectiveLevel(), logging.WARNING))
    log.setLevel(logging.INFO)


def _serve(kwargs: dict, results: Any = None, stats: dict | None = None) -> None:
    """One worker process: serve, then print its counts as one JSON line on stdout (and
    hand them to the parent through ``results``, a queue, when there is one). ``stats``
    keeps the counts for the caller, also when serving raises."""
    _log_to_stderr()
    stats = {} if stats is None else stats
    try:
        work_loop(**kwargs, stats=stats)
    except DabcError as exc:
        if results is None:
            raise
        stats["stopped"], stats["error"] = "error", str(exc)
        results.put(stats)
        sys.stderr.write(f"dabc redis-worker: error: {exc}\n")
        sys.exit(1)
    sys.stdout.write(json.dumps(stats) + "\n")  # one write: lines of processes never interleave
    sys.stdout.flush()
    if results is not None:
        results.put(stats)


def _log_exit(why: str, stats: list[dict], processes: int, seconds: float,
              failed: int) -> None:
    tasks = sum(st.get("tasks", 0) for st in stats)
    evaluations = sum(st.get("evaluations", 0) for st in stats)
    refused = sum(st.get("refused", 0) for st in stats)
    what = "1 process" if processes == 1 else f"{processes} processes"
    tail = "" if not failed else (f"; {failed} of {processes} processes failed"
                                  if processes > 1 else "")
    log.info("redis-worker stopped (%s) after %s: %s did %d tasks (%d evaluations) and "
             "refused %d generations' work%s", why, format_duration(seconds), what, tasks,
             evaluations, refused, tail)


def run_worker(args: argparse.Namespace) -> int:
    """``redis-worker``: serve analyses until ``--runtime`` passes or SIGTERM/SIGINT.

    Logs one line on stderr when it starts and one when it exits; each worker process
    prints one JSON line of counts on stdout when it exits.

    Parameters
    ----------
    args : argparse.Namespace
        ``host``, ``port``, ``password``, ``password_file``, ``url``, ``insecure``,
        ``secret_file``, ``reconnect_timeout``, ``runtime``, ``processes``, ``idle_wait``.

    Returns
    -------
    int
        0, or 1 when a worker process of several did not exit cleanly.

    Raises
    ------
    InputError
        At once, when the server cannot be reached or refuses the password.

    Examples
    --------
    >>> main(["redis-worker", "--runtime", "2h", "--processes", "8"])  # doctest: +SKIP
    """
    host, port, url = _server(args)
    kwargs = {"host": host, "port": port, "password": args.password, "url": url,
              "runtime": args.runtime, "idle_sleep": args.idle_wait,
              "secret_file": args.secret_file, "password_file": args.password_file,
              "insecure": args.insecure, "reconnect_timeout": args.reconnect_timeout}
    _log_to_stderr()
    connect(host, port, args.password, url, args.insecure,
            args.password_file).close()  # fail fast, clearly
    _warn_about_argv_password(args)
    load_secret(args.secret_file)
    processes = max(args.processes, 1)
    log.info("redis-worker started: Redis at %s (password from %s), %s, %s, pid %d",
             redact(url) or f"{host}:{port}",
             password_source(args.password, args.password_file, url),
             "1 process" if processes == 1 else f"{processes} processes",
             "until stopped" if args.runtime is None
             else f"runtime {format_duration(args.runtime)}", os.getpid())
    t0 = time.monotonic()
    if processes == 1:
        st: dict = {}
        try:
            _serve(kwargs, stats=st)
        except BaseException:
            _log_exit(st.get("stopped", "error"), [st], 1, time.monotonic() - t0, 1)
            raise
        _log_exit(st.get("stopped", "?"), [st], 1, time.monotonic() - t0, 0)
        return 0
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=_serve, args=(kwargs, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    forwarded: list[str] = []

    def forward(signum, frame):
        forwarded.append(signal.Signals(signum).name)
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each hands back its claim and exits

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    stats = []
    while not results.empty():
        stats.append(results.get())
    # a process our SIGTERM reached before it had set up its handler stopped as asked
    stopped = {0, -signal.SIGTERM} if forwarded else {0}
    failed = sum(p.exitcode not in stopped for p in procs)
    why = forwarded[0] if forwarded else ", ".join(
        sorted({st.get("stopped", "?") for st in stats})) or "killed"
    _log_exit(why, stats, processes, time.monotonic() - t0, failed)
    return 0 if failed == 0 else 1


def format_status(info: dict) -> str:
    """The text ``redis-manager info`` prints: a table of workers and one of analyses.

    Parameters
    ----------
    info : dict
        What :func:`dabc.samplers.redis.status` returns.

    Returns
    -------
    str
        Lines for people: no epoch times, no JSON.

    Examples
    --------
    >>> print(format_status({"server": "127.0.0.1:6379", "time": "2026-01-01T00:00:00+00:00",
    ...                      "workers": [], "analyses": []}))
    Redis 127.0.0.1:6379 at 2026-01-01 00:00:00 UTC
    Workers: none alive (start them with `dabc redis-worker`)
    Analyses: none running
    """
    when = (info["time"] or "").replace("T", " ").replace("+00:00", " UTC")
    lines = [f"Redis {info['server']} at {when}"]
    workers, analyses = info["workers"], info["analyses"]
    if workers:
        busy = sum(w["state"] == "busy" for w in workers)
        lines.append(f"Workers: {len(workers)} alive ({busy} busy, {len(workers) - busy} "
                     "idle)")
        rows = [[w["host"], w["pid"], w["state"], w["analysis"] or "-", w["tasks"],
                 w["evaluations"],
                 "-" if w["started"] is None else format_duration(
                     _seconds_between(w["started"], info["time"])),
                 f"{format_duration(w['last_seen_seconds'])} ago"] for w in workers]
        lines += _table(["HOST", "PID", "STATE", "ANALYSIS", "TASKS", "EVALUATIONS", "UP",
                         "LAST SEEN"], rows)
    else:
        lines.append("Workers: none alive (start them with `dabc redis-worker`)")
    if analyses:
        lines.append(f"Analyses: {len(analyses)} running")
        rows = []
        for a in analyses:
            n, acc = a["n"], a["accepted"]
            progress = "-" if n is None or acc is None else (
                f"{acc}/{n} ({100 * acc / n:.0f}%)" if n else f"{acc}/{n}")
            rows.append([a["analysis"], a["master"] or "-", a["generation"], progress,
                         a["evaluations"], a["failures"],
                         "-" if a["generation_seconds"] is None
                         else format_duration(a["generation_seconds"]),
                         a["queued"], a["claimed"], a["results"], a["refused"],
                         "requested" if a["stop_requested"] else "-"])
        lines += _table(["ANALYSIS", "MASTER", "GENERATION", "ACCEPTED", "EVALUATIONS",
                         "FAILURES", "RUNNING FOR", "QUEUED", "CLAIMED", "RESULTS",
                         "REFUSED BY", "STOP"], rows)
    else:
        lines.append("Analyses: none running")
    return "\n".join(lines)


def _seconds_between(start_iso: str, end_iso: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end_iso) - datetime.fromisoformat(start_iso)).total_seconds()


def _table(header: list[str], rows: list[list]) -> list[str]:
    """Indented columns; numbers right-aligned, text left-aligned; None shown as ``-``."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
                   for row in rows) for i in range(len(header))]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def fmt(values):
        return "  " + "  ".join(v.rjust(w) if num else v.ljust(w)
                                for v, w, num in zip(values, widths, numeric,
                                                     strict=True)).rstrip()

    return [fmt(header), *(fmt(c) for c in cells)]


def run_manager(args: argparse.Namespace) -> int:
    """``redis-manager info|stop|reset``: print a table (``info``), a line per analysis
    (``stop``) or the number of deleted keys (``reset``); with ``--json`` one JSON object.

    Parameters
    ----------
    args : argparse.Namespace
        ``action``, ``json`` and ``host``, ``port``, ``password``, ``password_file``,
        ``url``, ``insecure``.

    Returns
    -------
    int
        0.

    Raises
    ------
    InputError
        When the server cannot be reached or refuses the password.

    Examples
    --------
    >>> main(["redis-manager", "info", "--json"])  # doctest: +SKIP
    """
    _log_to_stderr()
    host, port, url = _server(args)
    where = redact(url) or f"{host}:{port}"
    conn = (host, port, args.password, url, args.insecure, args.password_file)
    if args.action == "info":
        info = status(*conn)
        _warn_about_argv_password(args)
        print(json.dumps(info, indent=2) if args.json else format_status(info))
    elif args.action == "stop":
        rows = [r for r in manager("stop", *conn) if r.get("analysis")]
        _warn_about_argv_password(args)
        if args.json:
            print(json.dumps({"server": where, "stop_requested": rows}, indent=2))
        elif not rows:
            print(f"No analysis is running on Redis {where}.")
        for r in [] if args.json else rows:
            print(f"Asked analysis {r['analysis']} (generation {r.get('generation')}) to stop "
                  "after its current generation.")
    else:
        (row,) = manager("reset", *conn)
        _warn_about_argv_password(args)
        print(json.dumps({"server": where, **row}, indent=2) if args.json
              else f"Deleted {row['deleted_keys']} dabc keys on Redis {where}.")
    sys.stdout.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dabc.cli.redis_cli``: the Redis subcommands alone.

    Returns
    -------
    argparse.ArgumentParser
        With ``redis-worker`` and ``redis-manager``.
    """
    parser = argparse.ArgumentParser(prog="dabc", description="Run and inspect a Redis "
                                     "worker pool (the Redis subcommands of 'dabc').")
    add_parsers(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for the Redis subcommands alone (``python -m dabc.cli.redis_cli``).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code, by the rule of :mod:`dabc.cli.dispatch` (1 for a ``DabcError``,
        2 for a usage error).
    """
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
