"""``dabc report``: one self-contained HTML file (or a PDF) showing a stored run.

The command opens an existing database (never creating one), selects a run (default: the
latest) and writes :func:`dabc.viz.report.write_report`'s file: every plot of the run
embedded as an image, its configuration (no password of the database URL), its generation
table and its posterior summary. The HTML file needs no network and no other file to be
opened. It exits like every ``dabc`` command (:mod:`dabc.cli.dispatch`): 0 success, 1 a
``DabcError`` (one line on stderr: no such database or run, a run without a stored
generation, matplotlib not installed, an output folder that does not exist, an ``--out``
whose suffix names no format and no ``--format``), 2 a usage error (a run id that is not a
number, an unknown ``--format``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..storage import open_history

__all__ = ["add_parsers", "cmd_report", "report_format"]

_SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def report_format(out: str, given: str | None) -> str:
    """The report's format: ``given``, else the one ``out``'s suffix names.

    Parameters
    ----------
    out : str
        The output file.
    given : str or None
        ``--format`` (None when not given).

    Returns
    -------
    str
        ``"html"`` or ``"pdf"``.

    Raises
    ------
    InputError
        When no format is given and the suffix names none.

    Examples
    --------
    >>> report_format("run.pdf", None), report_format("run.html", "pdf")
    ('pdf', 'pdf')
    """
    if given is not None:
        return given
    fmt = _SUFFIXES.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(f"Cannot tell the report's format from {out!r}: name the file "
                         "*.html or *.pdf, or give --format html or --format pdf.")
    return fmt


def cmd_report(args: argparse.Namespace) -> int:
    """``dabc report``: write the report of one run.

    Parameters
    ----------
    args : argparse.Namespace
        ``db``, ``run`` (None: the latest), ``out`` and ``format`` (None: from ``out``).

    Returns
    -------
    int
        0.

    Raises
    ------
    InputError
        From :func:`dabc.storage.open_history` (no such database or run) or
        :func:`dabc.viz.report.write_report` (no stored generation, matplotlib missing,
        a bad output path).
    """
    if Path(args.out).is_dir():
        raise InputError(f"--out {args.out!r} is a folder; give a file name such as "
                         f"{str(Path(args.out) / 'report.html')!r}.")
    fmt = report_format(args.out, args.format)
    history, _ = open_history(args.db, args.run)  # never creates a database
    from ..viz.report import write_report

    path = write_report(history, args.out, fmt=fmt)
    print(f"wrote the {fmt.upper()} report of run {history.id} ({history.n_populations} "
          f"generation{'s' if history.n_populations != 1 else ''}) to {path}", file=sys.stderr)
    return 0


def _run_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a run id is a whole number, not {text!r}") from None


def add_parsers(sub: Any) -> None:
    """Register the ``report`` subcommand on the ``dabc`` parser's subparsers ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``dabc`` parser's subparsers.
    """
    r = sub.add_parser(
        "report", help="write one self-contained HTML (or PDF) report of a stored run",
        description="Write every plot of a stored run (epsilon, simulations, acceptance rate, "
        "ESS, wall time, model probabilities, distance weights, posterior densities and "
        "credible intervals), its configuration, its generation table and its posterior "
        "summary into one file. The HTML file embeds its images and refers to no other file "
        "or server, so it opens offline; --format pdf writes a multi-page PDF. Needs "
        "matplotlib (pip install \"dabc[viz]\"). The database is only read.")
    r.add_argument("db", metavar="DB", help="SQLite file or database URL")
    r.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    r.add_argument("--out", required=True, metavar="FILE",
                   help="the report file (replaced if it exists), e.g. report.html")
    r.add_argument("--format", choices=["html", "pdf"], default=None,
                   help="html or pdf (default: from the --out suffix, .html/.htm or .pdf)")
    r.set_defaults(func=cmd_report)
