"""``dabc redis-worker`` and ``dabc redis-manager``: run and inspect a Redis worker pool."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import signal
import sys


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '1d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--password", default=None)
    p.add_argument("--url", default=None, help="redis:// or rediss:// (TLS) URL")


def add_parsers(sub) -> None:
    """Register the redis-worker and redis-manager subcommands."""
    w = sub.add_parser("redis-worker", help="serve Redis analyses with worker processes")
    _connection_args(w)
    w.add_argument("--runtime", type=parse_duration, default=None,
                   help="exit after this long, e.g. 2h (default: run until stopped)")
    w.add_argument("--processes", type=int, default=1, help="worker processes to run")
    w.add_argument("--idle-wait", type=parse_duration, default=0.5,
                   help="with nothing to do, look for work again after this long at the "
                        "latest (masters wake idle workers at once when they queue tasks)")
    w.set_defaults(func=run_worker)
    m = sub.add_parser("redis-manager", help="inspect or stop analyses on a Redis server")
    m.add_argument("command", choices=["info", "stop", "reset"])
    _connection_args(m)
    m.set_defaults(func=run_manager)


def _serve(kwargs) -> None:
    from ..samplers.redis import work_loop

    stats = work_loop(**kwargs)
    sys.stdout.write(json.dumps(stats) + "\n")  # one write: lines of processes never interleave
    sys.stdout.flush()


def run_worker(args) -> int:
    from ..samplers.redis import connect

    kwargs = {"host": args.host, "port": args.port, "password": args.password, "url": args.url,
              "runtime": args.runtime, "idle_sleep": args.idle_wait}
    connect(args.host, args.port, args.password, args.url).close()  # fail fast, clearly
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


def run_manager(args) -> int:
    from ..samplers.redis import manager

    for row in manager(args.command, args.host, args.port, args.password, args.url):
        print(json.dumps(row))
    sys.stdout.flush()
    return 0


def main(argv=None) -> int:
    """Entry point for the Redis subcommands alone (``python -m dabc.cli.redis_cli``)."""
    from ..errors import DabcError

    parser = argparse.ArgumentParser(prog="dabc")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DabcError as exc:
        print(f"dabc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
