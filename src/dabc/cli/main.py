"""The ``dabc`` command line: ``demo``, ``info``, ``export`` (and the Redis worker tools).

Every subcommand returns an exit code; user errors (a missing database, an unknown run, a
bad generation) are reported in one line on stderr with exit code 1, never as a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DabcError, InputError

EXPORT_FORMATS = ("csv", "parquet", "json")


# --- helpers ---------------------------------------------------------------------------
def _sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return url[len("sqlite:///"):].split("?", 1)[0]
    return None


def _has_runs_table(url: str) -> bool:
    """Whether the database at ``url`` holds dabc tables, without creating anything."""
    path = _sqlite_path(url)
    if path is not None:
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                  "name='dabc_runs'").fetchone()
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path!r} is not a readable SQLite database: {exc}.") from exc
        return row is not None
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        try:
            return sa.inspect(engine).has_table("dabc_runs")
        finally:
            engine.dispose()
    except ModuleNotFoundError as exc:
        raise InputError(f"Cannot open database {shown(url)!r}: its driver {exc.name!r} is not "
                         "installed. For PostgreSQL install dabc[postgres] and write the URL "
                         "as postgresql+psycopg2://user@host/database.") from exc
    except Exception as exc:  # server down, bad credentials, ...
        raise InputError(f"Cannot open database {shown(url)!r}: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. "
                         "Check the URL and that the server is running.") from exc


def shown(db: str) -> str:
    """A database for messages: the URL with its password hidden, or the path."""
    if "://" not in str(db):
        return str(db)
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(str(db)).render_as_string(hide_password=True)
    except Exception:
        return str(db)


def open_history(db: str, run: int | None = None):
    """The History of an existing dabc database; never creates a database or tables."""
    from ..storage import History, database_url

    url = database_url(db)
    path = _sqlite_path(url)
    if path is not None:
        if not os.path.exists(path):
            raise InputError(f"Database file {path!r} does not exist. Give the path of a "
                             "database written by dabc (e.g. by 'dabc demo').")
        if os.path.isdir(path):
            raise InputError(f"{path!r} is a folder, not a database file.")
    if not _has_runs_table(url):
        raise InputError(f"{shown(db)!r} is not a dabc database (it has no dabc_runs table).")
    history = History(url)
    runs = history.all_runs()
    if not len(runs):
        raise InputError(f"No run stored in {shown(db)!r}.")
    ids = [int(i) for i in runs["id"]]
    if run is not None:
        if run not in ids:
            raise InputError(f"No run with id {run} in {shown(db)!r}; stored runs: "
                             f"{_id_list(ids)}.")
        history.id = run
    return history, runs


def _id_list(ids: list[int]) -> str:
    if len(ids) > 10:
        return ", ".join(map(str, ids[:5])) + ", ..., " + ", ".join(map(str, ids[-3:]))
    return ", ".join(map(str, ids))


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """The q-quantile of ``x`` under weights ``w`` (interpolated weighted CDF)."""
    order = np.argsort(x, kind="stable")
    x, w = np.asarray(x, float)[order], np.asarray(w, float)[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return float(np.interp(q, cdf, x))


def posterior_summary(values: np.ndarray, weights: np.ndarray) -> dict:
    """Weighted mean, standard deviation and central 95% interval of one parameter."""
    w = np.asarray(weights, float) / np.sum(weights)
    mean = float(w @ values)
    sd = float(math.sqrt(max(w @ (values - mean) ** 2, 0.0)))
    return {"mean": mean, "sd": sd, "q025": weighted_quantile(values, w, 0.025),
            "q975": weighted_quantile(values, w, 0.975)}


def format_table(headers: list[str], rows: list[list], indent: str = "  ") -> str:
    """Rows as an aligned text table: text columns left-aligned, numbers right-aligned."""
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
def cmd_demo(args) -> int:
    from .. import ABCSMC, MulticoreEvalParallelSampler
    from ..samplers.multicore import default_n_procs
    from . import demo

    if args.population < 1:
        raise InputError(f"--population must be at least 1, got {args.population}.")
    if args.procs is not None and args.procs < 1:
        raise InputError(f"--procs must be at least 1, got {args.procs}.")
    if args.generations < 1:
        raise InputError(f"--generations must be at least 1, got {args.generations}.")
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
    print(f"stored in:     {shown(history.url)} (see: dabc info {db})")
    return 0


# --- info ------------------------------------------------------------------------------
def cmd_info(args) -> int:
    history, runs = open_history(args.db, args.run)
    print(f"Database {shown(history.url)}: {len(runs)} run{'s' if len(runs) != 1 else ''}")
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
    rows = []
    for g in gens.itertuples():
        row = [_Cell(str(int(g.t))), _Cell(_num(g.epsilon)), _Cell(_int(g.n_simulations)),
               _Cell(f"{g.acceptance_rate:.4f}"), _Cell(f"{g.ess:.1f}"),
               _Cell(f"{g.walltime_s:.2f}")]
        if probs is not None:
            row += [_Cell(f"{p:.3f}") for p in probs.loc[int(g.t)]]
        rows.append(row)
    print(format_table(headers, rows))
    return 0


# --- export ----------------------------------------------------------------------------
def _generations(history, spec: str) -> list[int]:
    stored = [int(t) for t in history.get_all_populations()["t"]]
    if not stored:
        raise InputError(f"Run {history.id} has no stored generation yet; nothing to export.")
    if spec == "last":
        return [stored[-1]]
    if spec == "all":
        return stored
    try:
        t = int(spec)
    except ValueError:
        raise InputError(f"--generation must be 'last', 'all' or a generation number, not "
                         f"{spec!r}.") from None
    if t not in stored:
        raise InputError(f"Run {history.id} has no generation {t}; stored generations are "
                         f"{stored[0]}..{stored[-1]}.")
    return [t]


def particles_frame(history, ts: list[int]) -> pd.DataFrame:
    """One row per particle of generations ``ts``: run, t, m, model, id, weight (normalised
    within the generation), distance, ``par_<name>`` and ``stat_<name>`` columns."""
    names, params, stats = history.model_names, history.param_names, history.stat_columns
    par_cols = list(dict.fromkeys(p for ps in params for p in ps))
    columns = (["run", "t", "m", "model", "id", "weight", "distance"]
               + [f"par_{p}" for p in par_cols] + [f"stat_{s}" for s in stats])
    parts = []
    for t in ts:
        arrays = history.get_arrays(t)
        total = sum(float(a["weight"].sum()) for a in arrays.values())
        for m, a in sorted(arrays.items()):
            n = len(a["weight"])
            data = {"run": np.full(n, history.id, dtype=np.int64),
                    "t": np.full(n, t, dtype=np.int64), "m": np.full(n, m, dtype=np.int64),
                    "model": [names[m]] * n,
                    "id": np.asarray(a["id"], dtype=np.int64) if "id" in a
                    else np.arange(n, dtype=np.int64),
                    "weight": a["weight"] / total, "distance": a["distance"]}
            theta = a["theta"]
            for p in par_cols:
                j = params[m].index(p) if p in params[m] else None
                data[f"par_{p}"] = theta[:, j] if j is not None else np.full(n, np.nan)
            for j, s in enumerate(stats):
                data[f"stat_{s}"] = a["stats"][:, j]
            parts.append(pd.DataFrame(data, columns=columns))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)


def cmd_export(args) -> int:
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("--format parquet needs pyarrow, which is not installed. Install "
                             "it with: pip install 'dabc[export]' (or use --format csv or "
                             "json).") from None
    to_stdout = args.out == "-"
    if to_stdout and args.format == "parquet":
        raise InputError("parquet cannot be written to stdout; give a file with --out.")
    if not to_stdout:
        parent = Path(args.out).resolve().parent
        if not parent.is_dir():
            raise InputError(f"Cannot write {args.out!r}: folder {str(parent)!r} does not "
                             "exist.")
        if Path(args.out).is_dir():
            raise InputError(f"Cannot write {args.out!r}: it is a folder.")
    history, _ = open_history(args.db, args.run)
    df = particles_frame(history, _generations(history, args.generation))
    target = sys.stdout if to_stdout else args.out
    try:
        if args.format == "csv":
            df.to_csv(target, index=False)
        elif args.format == "json":
            df.to_json(target, orient="records", double_precision=15)
            if to_stdout:
                sys.stdout.write("\n")
        else:
            df.to_parquet(target, index=False)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise InputError(f"Cannot write {args.out!r}: {exc.strerror or exc}.") from exc
    if not to_stdout:
        print(f"wrote {len(df):,} particles of run {history.id} "
              f"({df['t'].nunique()} generation{'s' if df['t'].nunique() != 1 else ''}) "
              f"to {args.out}", file=sys.stderr)
    return 0


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
    from .. import __version__

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
                       "generations of the selected (default: last) run.")
    i.add_argument("db", metavar="DB", help="SQLite file or database URL")
    i.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("export", help="write particles to CSV, Parquet or JSON",
                       description="Write one row per particle: run, t, m, model, id, weight "
                       "(normalised within the generation), distance, par_<parameter> and "
                       "stat_<statistic> columns.")
    e.add_argument("db", metavar="DB", help="SQLite file or database URL")
    e.add_argument("--format", choices=EXPORT_FORMATS, default="csv",
                   help="csv (default), parquet (needs pyarrow: dabc[export]) or json "
                   "(an array of records)")
    e.add_argument("--generation", default="last",
                   help="'last' (default), 'all' or a generation number")
    e.add_argument("--out", required=True, help="output file ('-' for stdout, csv/json only)")
    e.add_argument("--run", type=_run_id, default=None, help="run id (default: the last run)")
    e.set_defaults(func=cmd_export)

    try:
        from . import redis_cli
    except ImportError:
        redis_cli = None
    if redis_cli is not None and hasattr(redis_cli, "add_parsers"):
        redis_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 error, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DabcError as exc:
        print(f"dabc {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dabc {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. 'dabc export ... --out - | head': stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
