"""The ``dabc`` command line: ``demo``, ``info``, ``export``, ``resume`` (and the Redis worker
tools).

This module only parses arguments, calls library functions and prints. Reading and
exporting stored runs lives in :mod:`dabc.storage` (``open_history``, ``export_particles``,
``posterior_summary``), the Redis commands in :mod:`dabc.cli.redis_cli`, and the exit-code
rule every command follows in :mod:`dabc.cli.dispatch`: 0 success, 1 a ``DabcError``
reported as one line ``dabc <command>: error: <message>`` on stderr (never a traceback),
2 a usage error, 130 Ctrl-C. ``dabc resume`` adds 75 (stopped by ``--max-walltime``: run it
again to continue) and 143 (stopped by SIGTERM, its results saved), so that a batch job
can resubmit itself on 75 or 143 and stop on anything else.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._version import __version__
from ..engine import ABCSMC, RunInterrupted
from ..engine.smc import DEFAULT_MIN_EPS_DIFF
from ..errors import InputError
from ..samplers.multicore import MulticoreEvalParallelSampler, default_n_procs
from ..storage import (
    EXPORT_FORMATS,
    check_export_target,
    display_url,
    export_particles,
    open_history,
    posterior_summary,
)
from ..storage.export import export_inference_data
from . import cluster_cli, dashboard_cli, demo, redis_cli, report_cli, scaling_cli
from .argtypes import positive_int
from .dispatch import dispatch

#: ``dabc resume``'s exit code when ``--max-walltime`` stopped the run before it was done
#: (EX_TEMPFAIL: "try again"); after SIGTERM it is 143, after Ctrl-C 130.
EXIT_WALLTIME = 75


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
def _live_line(state: dict) -> str:
    """``dabc info``'s line on a running run: where, the generation in progress, elapsed
    time and the estimate of the time left."""
    from ..engine.progress import estimate_remaining, format_duration

    started = state["generation_started"]
    elapsed = (state["updated"] - started).total_seconds() if started is not None else None
    left = None if elapsed is None else estimate_remaining(state["accepted"], state["needed"],
                                                           elapsed)
    busy = (f", workers busy {state['worker_seconds'] / elapsed:.1f}"
            if elapsed and state["worker_seconds"] else "")
    return (f"running on {state['host']} (pid {state['pid']}): generation {state['t']}, "
            f"accepted {state['accepted']:,}/{state['needed']:,}, evaluations "
            f"{state['evaluations']:,}, {format_duration(elapsed)} elapsed, about "
            f"{format_duration(left)} left{busy}; last heartbeat "
            f"{state['updated']:%Y-%m-%d %H:%M:%S} UTC")


def cmd_info(args: argparse.Namespace) -> int:
    """``dabc info``: list the runs of a database and the generations of one.

    Every generation of the selected run is read back; one that cannot be (a damaged
    page or blob) is marked ``UNREADABLE`` in the table and named on stderr. A run whose
    master is alive gets a line with the generation in progress, its elapsed time and an
    estimate of the time left; a "running" run whose master stopped writing its heartbeat
    (see :mod:`dabc.storage.live`) is listed as "interrupted".

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
    saved = history.checkpoints()
    headers = ["id", "created", "status", "stop reason", "generations", "simulations"]
    rows = [[_Cell(str(int(r.id))), _when(r.created), r.status or "-", r.stop_reason or "-",
             _Cell(_int(r.generations)), _Cell(_int(r.simulations))]
            for r in runs.itertuples()]
    if saved:
        headers.append("saved results")
        for row, r in zip(rows, runs.itertuples(), strict=True):
            cp = saved.get(int(r.id))
            row.append("-" if cp is None else f"{cp['results']:,} of generation {cp['t']}")
    print(format_table(headers, rows))
    run = runs.loc[runs["id"] == history.id].iloc[0]
    names, params = history.model_names, history.param_names
    print()
    print(f"Run {history.id}: population {int(run.population_size)}, seed {history.seed}, "
          f"statistics {', '.join(history.stat_columns)}")
    for m, (name, ps) in enumerate(zip(names, params, strict=True)):
        print(f"  model {m} {name!r}: parameters {', '.join(ps)}")
    state = history.live_state()
    if state is not None and state["alive"]:
        print("  " + _live_line(state))
    cp = saved.get(int(history.id))
    if cp is not None:
        live = " (or still running)" if run.status == "running" else ""
        print(f"  {history.interruption()}{live}, last saved {_when(cp['written'])}; "
              f"'dabc resume {args.db} --run {history.id}' continues it")
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
    """``dabc export``: write one row per particle to CSV, Parquet or JSON, or one
    generation of one model as an ArviZ netCDF file.

    Parameters
    ----------
    args : argparse.Namespace
        ``db``, ``format``, ``generation``, ``out`` (``-``: stdout), ``run``, and for
        netcdf ``model`` and ``resample``.

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
        readable), or :func:`dabc.storage.export.export_inference_data` (netcdf).
    """
    to_stdout = args.out == "-"
    target = sys.stdout if to_stdout else args.out
    netcdf = args.format == "netcdf"
    if not netcdf and (args.model is not None or args.resample is not None):
        raise InputError("--model and --resample apply to --format netcdf (one model of one "
                         f"generation); a {args.format} export holds every model (column m).")
    check_export_target(target, args.format)  # before the database is even opened
    history, _ = open_history(args.db, args.run)
    if netcdf:
        idata = export_inference_data(history, target, args.generation, args.model or 0,
                                      args.resample)
        attrs = idata.posterior.attrs
        what = (f"{attrs['resample']:,} resampled draws" if attrs["resample"] else
                f"{attrs['n_particles']:,} weighted particles")
        print(f"wrote {what} of model {attrs['model_index']} ({attrs['model']}) of run "
              f"{history.id} (generation {attrs['generation']}) to {args.out}", file=sys.stderr)
        return 0
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


# --- resume ----------------------------------------------------------------------------
def _sampler(args: argparse.Namespace, stat: bool):
    """The sampler ``dabc resume`` was asked for (STAT when ``stat``)."""
    from .. import samplers

    name = args.sampler
    if name == "single":
        if stat:
            raise InputError("--sampler single is DYN only; use --sampler multicore --stat.")
        return samplers.SingleCoreSampler()
    if name == "multicore":
        cls = (samplers.MulticoreParticleParallelSampler if stat
               else samplers.MulticoreEvalParallelSampler)
        return cls(args.procs)
    if name == "redis":
        cls = samplers.RedisStaticSampler if stat else samplers.RedisEvalParallelSampler
        kwargs = {"url": args.redis_url} if args.redis_url else {
            "host": args.redis_host, "port": args.redis_port}
        return cls(**kwargs, wait_for_workers=args.wait_for_workers)
    if stat:
        raise InputError("--sampler dask is DYN only; use multicore or redis with --stat.")
    client = None
    if args.dask_scheduler:
        from distributed import Client

        client = Client(args.dask_scheduler)
    return samplers.DaskDistributedSampler(client)


def _import_hint(exc: InputError) -> InputError:
    """A load error caused by a missing module, with what ``dabc resume`` needs."""
    cause = exc.__cause__
    if isinstance(cause, ModuleNotFoundError):
        return InputError(f"{exc} dabc resume needs the run's model module {cause.name!r}: "
                          "run it from the folder that holds it, or pass --path FOLDER (or "
                          "set PYTHONPATH).")
    return exc


def cmd_resume(args: argparse.Namespace) -> int:
    """``dabc resume``: continue a stored run, inside its interrupted generation if any.

    Parameters
    ----------
    args : argparse.Namespace
        ``db``, ``run``, ``path``, the sampler options (``sampler``, ``stat``, ``procs``,
        ``redis_url``, ``redis_host``, ``redis_port``, ``wait_for_workers``,
        ``dask_scheduler``), the stopping rules (``max_generations``, ``minimum_epsilon``,
        ``max_total_simulations``, ``max_walltime``, ``min_acceptance_rate``,
        ``min_eps_diff``),
        ``no_checkpoint`` and ``discard_checkpoint``.

    Returns
    -------
    int
        0 when a stopping rule ended the run, 75 when ``--max-walltime`` did (run again to
        continue), 143 after SIGTERM and 130 after Ctrl-C (results saved).

    Raises
    ------
    InputError
        When the database or run cannot be opened, or the model module is not importable.
    """
    for folder in reversed([os.getcwd(), *args.path]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    history, _ = open_history(args.db, args.run)
    if args.discard_checkpoint:
        n = history.delete_checkpoint()
        print(f"discarded {n} saved batch{'es' if n != 1 else ''} of run {history.id}'s "
              "unfinished generation", file=sys.stderr)
    cp = history.checkpoint_summary()
    stat = args.stat
    if stat is None:  # follow the saved results' contract, else DYN
        kinds = {row["kind"] for row in history.load_checkpoint(cp["t"])} if cp else set()
        stat = kinds == {"slots"}
    try:
        abc = ABCSMC.load(args.db, args.run if args.run is not None else history.id,
                          sampler=_sampler(args, stat))
    except InputError as exc:
        raise _import_hint(exc) from exc.__cause__
    where = f"{cp['results']:,} saved results of generation {cp['t']}" if cp else (
        f"generation {abc.history.max_t + 1}")
    print(f"dabc resume: run {abc.history.id} of {display_url(abc.history.url)} from {where}, "
          f"sampler {type(abc.sampler).__name__}", file=sys.stderr, flush=True)
    try:
        h = abc.run(max_generations=args.max_generations, minimum_epsilon=args.minimum_epsilon,
                    max_total_simulations=args.max_total_simulations,
                    max_walltime=args.max_walltime,
                    min_acceptance_rate=args.min_acceptance_rate,
                    min_eps_diff=args.min_eps_diff, checkpoint=not args.no_checkpoint)
    except RunInterrupted as exc:
        return int(exc.code)  # the run wrote how to resume on stderr
    row = h.all_runs().set_index("id").loc[h.id]
    print(f"run {h.id}: {row.status} after generation {h.max_t} ({row.stop_reason})")
    return EXIT_WALLTIME if abc.stopped_by_walltime else 0


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                       r"(?:(\d+(?:\.\d+)?)s?)?")


def parse_walltime(text: str) -> float:
    """Seconds from ``"3600"``, ``"90s"``, ``"50m"``, ``"3h50m"``, ``"1d2h"`` or SLURM's
    ``"[D-]HH:MM:SS"`` / ``"MM:SS"``.

    Parameters
    ----------
    text : str
        The duration.

    Returns
    -------
    float
        Seconds (positive).

    Raises
    ------
    argparse.ArgumentTypeError
        When ``text`` is not a positive duration.

    Examples
    --------
    >>> parse_walltime("3h50m"), parse_walltime("1-00:30:00")
    (13800.0, 88200.0)
    """
    t = text.strip().lower()
    seconds = None
    if ":" in t:
        days, _, clock = t.rpartition("-")
        parts = clock.split(":")
        try:
            nums = [float(x) for x in parts]
            if len(nums) in (2, 3):
                h, m, sec = ([0.0] + nums)[-3:]
                seconds = (float(days) if days else 0.0) * 86400 + h * 3600 + m * 60 + sec
        except ValueError:
            seconds = None
    else:
        match = _DURATION.fullmatch(t)
        if match and any(match.groups()):
            d, h, m, sec = (float(x) if x else 0.0 for x in match.groups())
            seconds = d * 86400 + h * 3600 + m * 60 + sec
    if seconds is None or not seconds > 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (use e.g. 3600, "
                                         "50m, 3h50m or 03:50:00)")
    return seconds


# --- parser ----------------------------------------------------------------------------
def _run_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a run id is a whole number, not {text!r}") from None


def _model_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a model index is a whole number >= 0, not {text!r}")
    return value


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
    d.add_argument("--population", type=positive_int, default=1000,
                   help="particles per generation (default: 1000)")
    d.add_argument("--procs", type=positive_int, default=None,
                   help="worker processes (default: $DABC_NUM_PROCS or all usable CPUs)")
    d.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    d.add_argument("--generations", type=positive_int, default=8,
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

    e = sub.add_parser("export", help="write particles to CSV, Parquet, JSON or netCDF",
                       description="Write one row per particle: run, t, m, model, id, weight "
                       "(normalised within the generation), distance, par_<parameter> and "
                       "stat_<statistic> columns. A generation that cannot be read back (a "
                       "damaged database page or blob) is skipped with one line on stderr; "
                       "the others are written, and the exit code is then 1 (0 when "
                       "everything was exported). --format netcdf writes one generation of one "
                       "model (--model) as an ArviZ InferenceData file (arviz.from_netcdf reads "
                       "it): the weighted particles with their weights in sample_stats (ArviZ's "
                       "summaries of them are unweighted), or with --resample K, K equally "
                       "weighted draws by systematic resampling, seeded from the run's seed.")
    e.add_argument("db", metavar="DB", help="SQLite file or database URL")
    e.add_argument("--format", choices=EXPORT_FORMATS, default="csv",
                   help="csv (default), parquet (needs pyarrow: dabc[export]), json "
                   "(an array of records) or netcdf (ArviZ InferenceData; needs dabc[viz])")
    e.add_argument("--generation", default="last",
                   help="'last' (default), 'all' (not for netcdf) or a generation number")
    e.add_argument("--model", type=_model_index, default=None, metavar="M",
                   help="netcdf: the model index (default: 0)")
    e.add_argument("--resample", type=positive_int, default=None, metavar="K",
                   help="netcdf: K equally weighted draws by systematic resampling instead "
                   "of the weighted particles")
    e.add_argument("--out", required=True, help="output file ('-' for stdout, csv/json only)")
    e.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser(
        "resume", help="continue a stored run, inside its interrupted generation",
        description="Continue a stored run from the command line: results of a generation "
        "that was interrupted (SIGTERM, Ctrl-C, --max-walltime, even SIGKILL) are not "
        "simulated again, and the populations are those of a run that was never stopped. "
        "The run's model functions are unpickled: the module that defined them must be "
        "importable (the current folder and --path are searched). Exit codes: 0 a stopping "
        "rule ended the run; 75 --max-walltime stopped it (run again to continue); 143 "
        "SIGTERM and 130 Ctrl-C stopped it, its results saved; 1 an error; 2 a usage error.")
    r.add_argument("db", metavar="DB", help="SQLite file or database URL")
    r.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    r.add_argument("--path", action="append", default=[], metavar="FOLDER",
                   help="a folder to import the model module from (repeatable)")
    r.add_argument("--sampler", choices=["multicore", "redis", "dask", "single"],
                   default="multicore", help="where the simulations run (default: multicore)")
    r.add_argument("--stat", action="store_true", default=None,
                   help="use the STAT variant (multicore, redis); default: the contract of "
                   "the saved results, else DYN")
    r.add_argument("--dyn", action="store_false", dest="stat",
                   help="use the DYN variant even if the saved results are STAT")
    r.add_argument("--procs", type=positive_int, default=None,
                   help="multicore: worker processes (default: $DABC_NUM_PROCS or all CPUs)")
    r.add_argument("--redis-url", default=None, help="redis: a redis:// or rediss:// URL")
    r.add_argument("--redis-host", default="localhost", help="redis: host (default localhost)")
    r.add_argument("--redis-port", type=int, default=6379, help="redis: port (default 6379)")
    r.add_argument("--wait-for-workers", action="store_true",
                   help="redis: wait for workers instead of failing after a minute")
    r.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="dask: the scheduler's address (default: a local cluster)")
    r.add_argument("--max-generations", type=positive_int, default=10,
                   help="stop once this many generations are stored (default: 10)")
    r.add_argument("--minimum-epsilon", type=float, default=0.0,
                   help="stop after a generation with epsilon at or below this (default: 0)")
    r.add_argument("--max-total-simulations", type=positive_int, default=None,
                   help="stop once the run's simulations reach this number")
    r.add_argument("--max-walltime", type=parse_walltime, default=None, metavar="DURATION",
                   help="stop after this long, even mid-generation, saving its results "
                   "(e.g. 3h50m or 03:50:00); exit code 75")
    r.add_argument("--min-acceptance-rate", type=float, default=0.0,
                   help="stop after a generation with a lower acceptance rate (default: 0)")
    r.add_argument("--min-eps-diff", type=float, default=DEFAULT_MIN_EPS_DIFF, metavar="FRACTION",
                   help="stop when epsilon would decrease by less than this fraction "
                   f"(default: {DEFAULT_MIN_EPS_DIFF:g}; 0: never)")
    r.add_argument("--no-checkpoint", action="store_true",
                   help="save no results within generations (and use none saved before)")
    r.add_argument("--discard-checkpoint", action="store_true",
                   help="delete the saved results of the unfinished generation first (e.g. "
                   "after fixing the model)")
    r.set_defaults(func=cmd_resume)

    redis_cli.add_parsers(sub)
    cluster_cli.add_parsers(sub)
    scaling_cli.add_parsers(sub)
    report_cli.add_parsers(sub)
    dashboard_cli.add_parsers(sub)
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
