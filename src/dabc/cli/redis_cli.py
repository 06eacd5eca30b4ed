"""``dabc redis-worker`` and ``dabc redis-manager``: run and inspect a Redis worker pool.

These subcommands are part of ``dabc`` (:func:`dabc.cli.main.build_parser` adds them) and
can also be run alone, as ``python -m dabc.cli.redis_cli``, which starts faster on a
worker node. Both ways go through :func:`dabc.cli.dispatch.dispatch` and exit alike: 0
success, 1 a ``DabcError`` such as a wrong password (one line
``dabc redis-worker: error: ...`` on stderr), 2 a usage error, 130 Ctrl-C. The work itself
is done by :mod:`dabc.samplers.redis` (``work_loop``, ``manager``).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..samplers.redis import connect, load_secret, manager, work_loop
from .dispatch import dispatch

__all__ = ["add_parsers", "build_parser", "main", "parse_duration", "run_manager",
           "run_worker"]


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


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--password", default=None,
                   help="the server's requirepass (visible to other users in the process list:"
                        " prefer --password-file, REDISCLI_AUTH or DABC_REDIS_PASSWORD)")
    p.add_argument("--password-file", default=None,
                   help="file holding the password (mode 0600)")
    p.add_argument("--url", default=None, help="redis:// or rediss:// (TLS) URL")
    p.add_argument("--insecure", action="store_true",
                   help="accept a server without a password that is not on loopback")


def add_parsers(sub: Any) -> None:
    """Register the ``redis-worker`` and ``redis-manager`` subcommands.

    Parameters
    ----------
    sub : argparse subparsers action
        What ``ArgumentParser.add_subparsers(dest="command")`` returned.
    """
    w = sub.add_parser("redis-worker", help="serve Redis analyses with worker processes")
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
    m = sub.add_parser("redis-manager", help="inspect or stop analyses on a Redis server")
    # dest "action": "command" is the subcommand's name (redis-manager), used in messages
    m.add_argument("action", metavar="{info,stop,reset}", choices=["info", "stop", "reset"],
                   help="info: list the analyses; stop: end them after this generation; "
                        "reset: delete every dabc key (emergencies only)")
    _connection_args(m)
    m.set_defaults(func=run_manager)


def _log_to_stderr() -> None:
    """Show dabc's warnings on stderr (refused work, lost connections) in a worker."""
    logger = logging.getLogger("dabc")
    if not any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(min(logger.getEffectiveLevel(), logging.WARNING))


def _serve(kwargs: dict) -> None:
    _log_to_stderr()
    stats = work_loop(**kwargs)
    sys.stdout.write(json.dumps(stats) + "\n")  # one write: lines of processes never interleave
    sys.stdout.flush()


def run_worker(args: argparse.Namespace) -> int:
    """``redis-worker``: serve analyses until ``--runtime`` passes or SIGTERM/SIGINT.

    Each worker process prints one JSON line of counts when it exits.

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
    """
    kwargs = {"host": args.host, "port": args.port, "password": args.password, "url": args.url,
              "runtime": args.runtime, "idle_sleep": args.idle_wait,
              "secret_file": args.secret_file, "password_file": args.password_file,
              "insecure": args.insecure, "reconnect_timeout": args.reconnect_timeout}
    _log_to_stderr()
    connect(args.host, args.port, args.password, args.url, args.insecure,
            args.password_file).close()  # fail fast, clearly
    load_secret(args.secret_file)
    if args.processes <= 1:
        _serve(kwargs)
        return 0
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_serve, args=(kwargs,)) for _ in range(args.processes)]
    for p in procs:
        p.start()

    def forward(signum, frame):
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each hands back its claim and exits

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return 0 if all(p.exitcode == 0 for p in procs) else 1


def run_manager(args: argparse.Namespace) -> int:
    """``redis-manager info|stop|reset``: print one JSON line per result row.

    Parameters
    ----------
    args : argparse.Namespace
        ``action`` and ``host``, ``port``, ``password``, ``password_file``, ``url``,
        ``insecure``.

    Returns
    -------
    int
        0.

    Raises
    ------
    InputError
        When the server cannot be reached or refuses the password.
    """
    for row in manager(args.action, args.host, args.port, args.password, args.url,
                       args.insecure, args.password_file):
        print(json.dumps(row))
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
