"""``argparse`` value types that more than one subcommand uses.

A count given on the command line is checked by the parser, so a bad one is a usage error
(exit 2) that reads the same in ``dabc demo``, ``dabc resume`` and ``dabc scaling``.
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
    """A whole number of at least 1, for ``type=`` of an ``argparse`` option.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    int
        The number.

    Raises
    ------
    argparse.ArgumentTypeError
        When ``text`` is not a whole number or is less than 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
