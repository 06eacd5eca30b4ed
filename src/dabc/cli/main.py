"""The ``dabc`` command line: ``demo``, ``info``, ``export`` (and the Redis worker tools).

This module only parses arguments, calls library functions and prints. Reading and
exporting stored runs lives in :mod:`dabc.storage` (``open_history``, ``export_particles``,
``posterior_summary``), the Redis commands in :mod:`dabc.cli.redis_cli`, and the exit-code
rule every command follows in :mod:`dabc.cli.dispatch`: 0 success, 1 a ``DabcError``
reported as one line ``dabc <command>: error: <message>`` on stderr (never a traceback),
2 a usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._version import __version__
from ..engine import ABCSMC
from ..samplers.multicore import MulticoreEvalParallelSampler, default_n_procs
from ..storage import (
    EXPORT_FORMATS,
    check_export_target,
    display_url,
    export_particles,
    open_history,
    posterior_summary,
)
from . import cluster_cli, demo, redis_cli, scaling_cli
from .dispatch import dispatch


# --- printing --------------------------------------------------------------------------
def format_table(headers: list[str], rows: list[list], indent: str = "  ") -> str:
    """Rows as an aligned text table: text columns left-aligned, numbers right-aligned.

    Parameters
    ----------
    headers : list of str
        The column titles.
    rows : list of list
        The cells; a column is right-aligned when all its cells are numbers (or
        pre-formatted numbers, ``_Cell``).
    indent : str, default "  "
        Put before every line.

    Returns
    -------
    str
        The table, lines joined by newlines, trailing spaces stripped.
    """
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], _Cell | int | float | np.number)
                                  for r in rows) for i in range(len(headers))]

    def line(items):
        out = [s.rjust(wd) if num else s.ljust(wd)
               for s, wd, num in zip(items, widths, numeric, strict=True)]
        return (indent + "  ".join(out)).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in cells])


def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def _int(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "0"
    return f"{int(x):,}"


def _when(x) -> str:
    if x is None or x is pd.NaT or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return pd.Timestamp(x).strftime("%Y-%m-%d %H:%M:%S")


class _Cell(str):
    """A pre-formatted number: right-aligned by format_table."""


# --- demo ------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """``dabc demo``: run the conjugate normal demo and compare with the exact posterior.

    Parameters
    ----------
    args : argparse.Namespace
        ``db``, ``population``, ``procs``, ``seed``, ``generations`` (the parser has
        checked that the counts are at least 1).

    Returns
    -------
    int
        0.

    Raises
    ------
    InputError
        When the database cannot be written.
    """
    n_procs = args.procs if args.procs is not None else default_n_procs()
    obs = demo.observed()
    db = args.db
    print("dabc demo: conjugate normal model, mu ~ N(0, 1), "
          f"{demo.N_OBS} observations y | mu ~ N(mu, 1) summarised by their mean "
          f"ybar = {obs['ybar']:.4g}", flush=True)
    print(f"population {args.population}, MulticoreEvalParallelSampler with {n_procs} "
          f"worker process{'es' if n_procs != 1 else ''}, seed {args.seed}, "
          f"up to {args.generations} generations, database {db}", flush=True)
    abc = ABCSMC(demo.model, demo.prior(), population_size=args.population,
                 model_names=["normal_mean"],
                 sampler=MulticoreEvalParallelSampler(n_procs), seed=args.seed)
    tic = time.perf_counter()
    history = abc.run(obs, db=db, max_generations=args.generations)
    wall = time.perf_counter() - tic
    gens = history.get_all_populations()
    runs = history.all_runs()
    stop = runs.loc[runs["id"] == history.id, "stop_reason"].iloc[0]
    params, weights = history.get_distribution(0)
    exact = demo.exact_posterior()
    rows = []
    for name in params.columns:
        s = posterior_summary(params[name].to_numpy(), weights)
        mean, sd = exact[name]
        rows.append([name, _Cell(f"{s['mean']:.4f}"), _Cell(f"{s['sd']:.4f}"),
                     f"[{s['q025']:.3f}, {s['q975']:.3f}]", _Cell(f"{mean:.4f}"),
                     _Cell(f"{sd:.4f}"), f"[{mean - 1.959964 * sd:.3f}, "
                     f"{mean + 1.959964 * sd:.3f}]"])
    print()
    print(f"Posterior (run {history.id}, generation {history.max_t}):")
    print(format_table(["parameter", "ABC mean", "ABC sd", "ABC 95% interval", "exact mean",
                        "exact sd", "exact 95% interval"], rows))
    print()
    print(f"generations:   {len(gens)}")
    print(f"simulations:   {history.total_simulations:,}")
    print(f"final epsilon: {gens['epsilon'].iloc[-1]:.4g}")
    print(f"wall time:     {wall:.1f} s")
    print(f"stop reason:   {stop}")
    print(f"stored in:     {display_url(history.url)} (see: dabc info {db})")
    return 0


# --- info ------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    """``dabc info``: list the runs of a database and the generations of one.

    Every generation of the selected run is read back; one that cannot be (a damaged
    page or blob) is marked ``UNREADABLE`` in the table and named on stderr.

    Parameters
    ----------
    args : argparse.Namespace
        ``db`` and ``run`` (None: the latest).

    Returns
    -------
    int
        0, or 1 when a generation of the run is unreadable.

    Raises
    ------
    InputError
        From :func:`dabc.storage.open_history`: no such database, run, ...
    """
    history, runs = open_history(args.db, args.run)
    print(f"Database {display_url(history.url)}: {len(runs)} run{'s' if len(runs) != 1 else ''}")
    rows = [[_Cell(str(int(r.id))), _when(r.created), r.status or "-", r.stop_reason or "-",
             _Cell(_int(r.generations)), _Cell(_int(r.simulations))]
            for r in runs.itertuples()]
    print(format_table(["id", "created", "status", "stop reason", "generations",
                        "simulations"], rows))
    run = runs.loc[runs["id"] == history.id].iloc[0]
    names, params = history.model_names, history.param_names
    print()
    print(f"Run {history.id}: population {int(run.population_size)}, seed {history.seed}, "
          f"statistics {', '.join(history.stat_columns)}")
    for m, (name, ps) in enumerate(zip(names, params, strict=True)):
        print(f"  model {m} {name!r}: parameters {', '.join(ps)}")
    gens = history.get_all_populations()
    if not len(gens):
        print("  no generation stored yet")
        return 0
    headers = ["t", "epsilon", "simulations", "acceptance rate", "ESS", "wall time (s)"]
    probs = history.get_model_probabilities() if len(names) > 1 else None
    if probs is not None:
        headers += [f"p({n})" for n in names]
    unreadable = history.unreadable_generations()
    if unreadable:
        headers.append("particles")
    rows = []
    for g in gens.itertuples():
        row = [_Cell(str(int(g.t))), _Cell(_num(g.epsilon)), _Cell(_int(g.n_simulations)),
               _Cell(f"{g.acceptance_rate:.4f}"), _Cell(f"{g.ess:.1f}"),
               _Cell(f"{g.walltime_s:.2f}")]
        if probs is not None:
            row += [_Cell(f"{p:.3f}") for p in probs.loc[int(g.t)]]
        if unreadable:
            row.append("UNREADABLE" if int(g.t) in unreadable else "ok")
        rows.append(row)
    print(format_table(headers, rows))
    for t, reason in unreadable.items():
        print(f"dabc info: generation {t} of run {history.id} is unreadable ({reason}); "
              "restore the database from a backup", file=sys.stderr)
    return 1 if unreadable else 0


# --- export ----------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    """``dabc export``: write one row per particle to CSV, Parquet or JSON.

    Parameters
    ----------
    args : argparse.Namespace
        ``db``, ``format``, ``generation``, ``out`` (``-``: stdout) and ``run``.

    Returns
    -------
    int
        0, or 1 when an unreadable generation (a damaged page or blob) was skipped: the
        readable ones are written and each skipped one is named on stderr.

    Raises
    ------
    InputError
        From :func:`dabc.storage.check_export_target`, :func:`dabc.storage.open_history`
        or :func:`dabc.storage.export_particles` (also when no selected generation is
        readable).
    """
    to_stdout = args.out == "-"
    target = sys.stdout if to_stdout else args.out
    check_export_target(target, args.format)  # before the database is even opened
    history, _ = open_history(args.db, args.run)
    df = export_particles(history, target, args.format, args.generation, skip_unreadable=True)
    skipped = df.attrs.get("unreadable", {})
    for t, reason in skipped.items():
        print(f"dabc export: generation {t} of run {history.id} is unreadable ({reason}): "
              "skipped", file=sys.stderr)
    if not to_stdout:
        n_gens = df["t"].nunique()
        print(f"wrote {len(df):,} particles of run {history.id} "
              f"({n_gens} generation{'s' if n_gens != 1 else ''}) to {args.out}",
              file=sys.stderr)
    return 1 if skipped else 0


# --- parser ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a run id is a whole number, not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``dabc`` command line, the Redis subcommands included.

    Returns
    -------
    argparse.ArgumentParser
        Each subcommand sets ``func``, the function :func:`dabc.cli.dispatch.dispatch`
        calls.
    """
    parser = argparse.ArgumentParser(
        prog="dabc", description="Approximate Bayesian computation (ABC-SMC): run the demo, "
        "inspect and export stored runs.")
    parser.add_argument("--version", action="version", version=f"dabc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="run a small inference with a known exact posterior",
                       description="Infer the mean of a normal model (prior N(0, 1), five "
                       "observations) on all cores, store it in SQLite and compare the ABC "
                       "posterior with the exact one.")
    d.add_argument("--db", default="dabc-demo.db",
                   help="SQLite file or database URL (default: ./dabc-demo.db)")
    d.add_argument("--population", type=_positive_int, default=1000,
                   help="particles per generation (default: 1000)")
    d.add_argument("--procs", type=_positive_int, default=None,
                   help="worker processes (default: $DABC_NUM_PROCS or all usable CPUs)")
    d.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    d.add_argument("--generations", type=_positive_int, default=8,
                   help="maximum number of generations (default: 8)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="list the runs of a database and the generations of one",
                       description="List the runs stored in a database, then the "
                       "generations of the selected (default: last) run. Every generation is "
                       "read back; an unreadable one (a damaged database page or blob) is "
                       "marked UNREADABLE and named on stderr, and the exit code is then 1. "
                       "A read-only database (read-only file system) is read as it is.")
    i.add_argument("db", metavar="DB", help="SQLite file or database URL")
    i.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("export", help="write particles to CSV, Parquet or JSON",
                       description="Write one row per particle: run, t, m, model, id, weight "
                       "(normalised within the generation), distance, par_<parameter> and "
                       "stat_<statistic> columns. A generation that cannot be read back (a "
                       "damaged database page or blob) is skipped with one line on stderr; "
                       "the others are written, and the exit code is then 1 (0 when "
                       "everything was exported).")
    e.add_argument("db", metavar="DB", help="SQLite file or database URL")
    e.add_argument("--format", choices=EXPORT_FORMATS, default="csv",
                   help="csv (default), parquet (needs pyarrow: dabc[export]) or json "
                   "(an array of records)")
    e.add_argument("--generation", default="last",
                   help="'last' (default), 'all' or a generation number")
    e.add_argument("--out", required=True, help="output file ('-' for stdout, csv/json only)")
    e.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    e.set_defaults(func=cmd_export)

    redis_cli.add_parsers(sub)
    cluster_cli.add_parsers(sub)
    scaling_cli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dabc`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 success, 1 a ``DabcError`` (one line on stderr), 2 a usage error,
        130 Ctrl-C (see :mod:`dabc.cli.dispatch`).

    Examples
    --------
    >>> main(["info", "dabc-demo.db"])     # doctest: +SKIP
    0
    """
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
