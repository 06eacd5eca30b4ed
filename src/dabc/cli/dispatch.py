"""The one exit-code rule of every ``dabc`` command, shared by both entry points.

``dabc`` (:func:`dabc.cli.main.main`) and ``python -m dabc.cli.redis_cli``
(:func:`dabc.cli.redis_cli.main`) both end in :func:`dispatch`, so a command exits the same
way whichever way it was started:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success (and ``--help``, ``--version``)
1     a :class:`~dabc.DabcError`: one line ``dabc <command>: error: <message>`` on
      stderr, never a traceback; also a closed output pipe (``dabc export --out - |
      head``), quietly
2     a usage error, reported by argparse (or no command given: the help is printed)
130   interrupted by Ctrl-C
====  ==========================================================================

A command may itself return another code: ``redis-worker`` returns 1 when one of its
worker processes failed; ``resume`` returns 75 when ``--max-walltime`` stopped the run (run
it again to continue) and 143 when SIGTERM did (its results saved); ``cluster batch --wait``
returns the script's own exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import DabcError

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "dispatch"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run the chosen command under the exit-code rule.

    Each subcommand's parser sets ``func`` (called with the parsed arguments, returning
    an exit code or None for 0) through ``set_defaults``; the subparsers' ``dest`` must be
    ``"command"`` (it names the command in error messages).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command line's parser.
    argv : sequence of str, optional
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code (see the table in this module's docstring).
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)  # argparse leaves no attribute when no command given
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    name = f"{parser.prog} {args.command}"
    try:
        return int(func(args) or EXIT_OK)
    except DabcError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. 'dabc export ... --out - | head': stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
