"""Placeholder: filled in by the issue-11 work."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``dabc`` parser.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``dabc`` parser's subparsers.
    """
