"""``dabc scaling``: how many workers are worth it, measured with a built-in workload.

The command runs :func:`dabc.cluster.scaling.scaling_study` on a local Dask cluster of
one-thread worker processes (loopback only), writes ``DIR/scaling.csv`` and
``DIR/scaling.png``, and prints the table and the knee. Progress (each run's wall time and
speed-up) goes to stderr, the table to stdout. It exits like every ``dabc`` command
(:mod:`dabc.cli.dispatch`): 0 success, 1 a ``DabcError`` (one line on stderr) or runs whose
populations differ between worker counts (the determinism contract is broken: the table
says where), 2 a usage error (a worker count that is not a whole number of at least 1, a
threshold outside (0, 1]), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..cluster.scaling import WORKLOADS, parse_workers, scaling_study
from ..errors import InputError
from .argtypes import positive_int

__all__ = ["add_parsers", "run_scaling"]


def _workers(text: str) -> list[int]:
    try:
        return parse_workers(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"an efficiency above 0 and at most 1, got {text}")
    return value


def add_parsers(sub: Any) -> None:
    """Add the ``scaling`` subcommand to the ``dabc`` parser.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``dabc`` parser's subparsers.
    """
    described = "; ".join(f"{w.name}: {w.description} (population {w.population_size}, "
                          f"{w.generations} generations)" for w in WORKLOADS.values())
    s = sub.add_parser(
        "scaling", help="measure wall time, speed-up and efficiency at several worker counts",
        description="Run a built-in ABC workload on a local Dask cluster scaled to each worker "
        "count in turn; write DIR/scaling.csv (workers, wall time, speed-up, efficiency, "
        "core-hours, simulations/s, whether the populations were identical) and "
        "DIR/scaling.png (runtime, speed-up and efficiency against workers), and name the "
        "knee: the largest count up to which efficiency stays at or above the threshold. "
        f"Workloads: {described}.")
    s.add_argument("--workload", choices=sorted(WORKLOADS), default="sleep100",
                   help="the analysis to run (default: sleep100)")
    s.add_argument("--workers", type=_workers, default=[1, 2, 4, 8],
                   help="worker counts, comma-separated (default: 1,2,4,8)")
    s.add_argument("--population", type=positive_int, default=None,
                   help="particles per generation (default: the workload's)")
    s.add_argument("--generations", type=positive_int, default=None,
                   help="generations per run (default: the workload's)")
    s.add_argument("--repeats", type=positive_int, default=1,
                   help="runs per worker count; the median wall time counts (default: 1)")
    s.add_argument("--threshold", type=_threshold, default=0.7,
                   help="the efficiency the knee must keep (default: 0.7)")
    s.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    s.add_argument("--db", default=None,
                   help="store every run in this database (default: temporary files)")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="folder for scaling.csv and scaling.png (created if missing; its "
                   "parent must exist)")
    s.set_defaults(func=run_scaling)


def _out_dir(text: str) -> Path:
    """The output folder, made if missing; checked before the study takes minutes."""
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {text}: this is a file, not a folder; give a folder for "
                         "scaling.csv and scaling.png.")
    if not out.exists():
        parent = out.absolute().parent
        if not parent.is_dir():
            raise InputError(f"--out {text}: the folder {str(parent)!r} does not exist; "
                             "create it first or give another --out.")
        try:
            out.mkdir()
        except OSError as exc:
            raise InputError(f"--out {text}: cannot create the folder: "
                             f"{exc.strerror or exc}.") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {text}: the folder is not writable; give another --out.")
    return out


def run_scaling(args: argparse.Namespace) -> int:
    """``dabc scaling``: run the study, write the CSV and the figure, print the table.

    Parameters
    ----------
    args : argparse.Namespace
        ``workload``, ``workers``, ``population``, ``generations``, ``repeats``,
        ``threshold``, ``seed``, ``db`` and ``out``.

    Returns
    -------
    int
        0, or 1 when the populations differed between worker counts.

    Raises
    ------
    InputError
        When the output folder cannot be used, or matplotlib is missing.
    WorkerError
        When the local cluster's workers fail.
    """
    out = _out_dir(args.out)
    try:
        import matplotlib  # noqa: F401 - fail before the study, not after it
    except ImportError:
        raise InputError("dabc scaling draws a figure and needs matplotlib: pip install "
                         "'dabc[viz]' (or pip install matplotlib).") from None
    workload = WORKLOADS[args.workload]
    pop = args.population or workload.population_size
    gens = args.generations or workload.generations
    print(f"dabc scaling: workload {workload.name} ({workload.description}), population "
          f"{pop}, {gens} generations, seed {args.seed}, workers "
          f"{','.join(map(str, args.workers))}, {args.repeats} repeat"
          f"{'s' if args.repeats != 1 else ''}, on a local Dask cluster", flush=True)
    logger = logging.getLogger("dabc.cluster")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = scaling_study(workers=args.workers, workload=workload.name,
                               population_size=pop, seed=args.seed, repeats=args.repeats,
                               threshold=args.threshold, db=args.db, max_generations=gens)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    csv = result.to_csv(out / "scaling.csv")
    png = out / "scaling.png"
    result.plot(png)
    print()
    print(result.to_string())
    print()
    print(f"knee: {result.knee if result.knee is not None else 'none'} "
          f"(threshold {result.threshold:g}): {result.summary}")
    print(f"wrote {csv} and {png}")
    if not result.identical:
        print("dabc scaling: the populations differ between worker counts (see the "
              "'same population' column): please report this", file=sys.stderr)
        return 1
    return 0
