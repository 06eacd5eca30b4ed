"""``dabc dashboard DB``: the live web dashboard of a database (the ``dashboard`` extra).

Serves :mod:`dabc.viz.dashboard` on 127.0.0.1:8050 by default until Ctrl-C. Every request
needs a token: by default a random one, written once to stderr inside the address to open;
or the user's, from ``--token-file`` or ``$DABC_DASHBOARD_TOKEN`` (never from an argument,
which other users see in ``ps``). ``--no-token`` is allowed only on a loopback address. The
database must exist (it is never created). Exits like every ``dabc`` command
(:mod:`dabc.cli.dispatch`): 1 with one line on stderr for a missing database or run, a
port in use, ``--no-token`` on another address; 130 never (Ctrl-C ends it normally, 0).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..viz.dashboard import TOKEN_ENV, serve
from .argtypes import positive_int

__all__ = ["add_parsers", "cmd_dashboard"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def add_parsers(sub: Any) -> None:
    """Register the ``dashboard`` subcommand on the ``dabc`` parser's subparsers ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``dabc`` parser's subparsers.
    """
    d = sub.add_parser(
        "dashboard", help="a live web page of a database's runs, to watch and steer them",
        allow_abbrev=False,  # no --token (argv is public): not even as --token-file's prefix
        description="Serve a web page listing the runs of DB and, per run, the generation in "
        "progress, its plots and the steering controls (stop after this generation, new "
        "stopping rules). It reads only the database, so it can run on a login node or a "
        "laptop (SSH tunnel: ssh -L 8050:127.0.0.1:8050 login-node, then open the printed "
        "address). Every request needs the token: a random one is printed once, or give "
        f"yours in --token-file or ${TOKEN_ENV}.")
    d.add_argument("db", metavar="DB", help="an existing database (SQLite file or URL)")
    d.add_argument("--run", type=positive_int, default=None, metavar="ID",
                   help="open this run's page first (default: the list of runs)")
    d.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default: 127.0.0.1, this machine only; "
                   "another address needs a token)")
    d.add_argument("--port", type=_port, default=8050, help="the port (default: 8050)")
    d.add_argument("--token-file", default=None, metavar="FILE",
                   help=f"read the token from the first line of FILE (else ${TOKEN_ENV}, "
                   "else a random one)")
    d.add_argument("--no-token", action="store_true",
                   help="serve without a token (only on a loopback address; every local "
                   "user can then read and stop the runs)")
    d.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Run ``dabc dashboard`` with the parsed arguments; returns the exit code.

    Parameters
    ----------
    args : argparse.Namespace
        From the ``dashboard`` parser.

    Returns
    -------
    int
        0 after Ctrl-C.
    """
    dabc_log = logging.getLogger("dabc")
    if not any(not isinstance(h, logging.NullHandler) for h in dabc_log.handlers) and \
            not logging.getLogger().handlers:  # warnings (e.g. --no-token) on stderr
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("dabc dashboard: %(levelname)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        dabc_log.addHandler(handler)
    serve(args.db, host=args.host, port=args.port, token_file=args.token_file,
          no_token=args.no_token, run=args.run)
    return 0
