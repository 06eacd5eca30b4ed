"""``dabc report``: (being written)."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` subcommand on the ``dabc`` parser's subparsers ``sub``."""
