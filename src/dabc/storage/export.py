"""Exporting stored particles as one flat table (CSV, Parquet or JSON), or as netCDF.

A History stores a generation as one binary block per model, which is fast but useless to
a spreadsheet, R or DuckDB. :func:`particles_frame` flattens generations into one row per
particle with fixed, documented columns; :func:`export_particles` writes that table in one
of :data:`EXPORT_FORMATS`. ``dabc export`` is these two functions plus argument parsing.

The columns are ``run``, ``t``, ``m`` (model index), ``model`` (its name), ``id``,
``weight`` (normalised to sum to 1 within each generation, over all models), ``distance``,
then ``par_<name>`` for every parameter of any model (NaN where a model lacks it) and
``stat_<name>`` for every summary statistic.

``netcdf`` is not a table: :func:`export_inference_data` writes one generation of one model
as an ArviZ ``InferenceData`` (see :mod:`dabc.storage.inference_data`), the file
``arviz.from_netcdf`` reads back.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from ..errors import InputError
from .history import CorruptGenerationError, History
from .inference_data import to_inference_data
from .urls import display_url

__all__ = ["EXPORT_FORMATS", "check_export_target", "export_inference_data", "export_particles",
           "particles_frame", "select_generations"]

logger = logging.getLogger("dabc.storage")

#: The formats ``dabc export`` writes: the tables of :func:`export_particles` and ``netcdf``
#: (:func:`export_inference_data`).
EXPORT_FORMATS = ("csv", "parquet", "json", "netcdf")


def select_generations(history: History, generation: str | int = "last") -> list[int]:
    """The stored generations that ``generation`` names.

    Parameters
    ----------
    history : History
        The run to look in.
    generation : str or int, default "last"
        ``"last"``, ``"all"`` or a generation number (an int, or its text).

    Returns
    -------
    list of int
        The generation indices, ascending.

    Raises
    ------
    InputError
        When the run has no stored generation, ``generation`` is none of the above, or the
        run has no such generation (the message gives the stored range).
    """
    stored = [int(t) for t in history.get_all_populations()["t"]]
    if not stored:
        raise InputError(f"Run {history.id} has no stored generation yet; nothing to export.")
    if generation == "last":
        return [stored[-1]]
    if generation == "all":
        return stored
    try:
        t = int(generation)
    except ValueError:
        raise InputError(f"The generation to export must be 'last', 'all' or a generation "
                         f"number, not {generation!r}.") from None
    if t not in stored:
        raise InputError(f"Run {history.id} has no generation {t}; stored generations are "
                         f"{stored[0]}..{stored[-1]}.")
    return [t]


def particles_frame(history: History, ts: list[int],
                    skip_unreadable: bool = False) -> pd.DataFrame:
    """One row per particle of generations ``ts`` of the history's run.

    Parameters
    ----------
    history : History
        The run to read.
    ts : list of int
        Stored generations (e.g. from :func:`select_generations`).
    skip_unreadable : bool, default False
        Leave out a generation that cannot be read back (a damaged database page or
        blob) and go on with the others, instead of raising. Each one left out is logged
        and listed in the result's ``attrs["unreadable"]``.

    Returns
    -------
    pandas.DataFrame
        The columns described in this module's docstring, generations in the order of
        ``ts`` and models in index order within each. ``attrs["unreadable"]`` maps each
        generation left out to the reason (empty when none was).

    Raises
    ------
    InputError
        When the run has no stored generation.
    CorruptGenerationError
        When a generation is unreadable and ``skip_unreadable`` is False.

    Examples
    --------
    >>> df = particles_frame(history, [history.max_t])   # doctest: +SKIP
    >>> df.groupby("t")["weight"].sum()                   # doctest: +SKIP
    """
    names, params, stats = history.model_names, history.param_names, history.stat_columns
    par_cols = list(dict.fromkeys(p for ps in params for p in ps))
    columns = (["run", "t", "m", "model", "id", "weight", "distance"]
               + [f"par_{p}" for p in par_cols] + [f"stat_{s}" for s in stats])
    parts = []
    unreadable: dict[int, str] = {}
    for t in ts:
        try:
            arrays = history.get_arrays(t)
        except CorruptGenerationError as exc:
            if not skip_unreadable:
                raise
            logger.info("generation %d of run %s in %s is unreadable (%s): skipped", t,
                           history.id, display_url(history.url), exc.reason)
            unreadable[t] = exc.reason
            continue
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
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    df.attrs["unreadable"] = unreadable
    return df


def check_export_target(target: str | os.PathLike[str] | TextIO, fmt: str) -> None:
    """Check, before reading anything, that ``fmt`` can be written to ``target``.

    Parameters
    ----------
    target : str, os.PathLike or text file
        The file to write, or an open text stream (such as ``sys.stdout``).
    fmt : str
        One of :data:`EXPORT_FORMATS`.

    Raises
    ------
    InputError
        When ``fmt`` is unknown, Parquet is asked for without pyarrow installed or for a
        text stream, netCDF without ArviZ and h5netcdf (or netCDF4) installed or for a text
        stream, or the target's folder does not exist or the target is a folder.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"Unknown export format {fmt!r}; choose one of "
                         f"{', '.join(EXPORT_FORMATS)}.")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (optional: the 'export' extra)
        except ImportError:
            raise InputError("Parquet export needs pyarrow, which is not installed. Install "
                             "it with: pip install 'dabc[export]' (or export as csv or "
                             "json).") from None
    if fmt == "netcdf":
        _check_netcdf_libraries()
    if not isinstance(target, str | os.PathLike):
        if fmt in ("parquet", "netcdf"):
            raise InputError(f"{fmt} cannot be written to stdout or another text stream; "
                             "give a file to write to.")
        return
    path = Path(target)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise InputError(f"Cannot write {str(target)!r}: folder {str(parent)!r} does not "
                         "exist.")
    if path.is_dir():
        raise InputError(f"Cannot write {str(target)!r}: it is a folder.")


def export_particles(history: History, target: str | os.PathLike[str] | TextIO,
                     fmt: str = "csv", generation: str | int = "last",
                     skip_unreadable: bool = False) -> pd.DataFrame:
    """Write the particles of the history's run to a file or a text stream.

    Parameters
    ----------
    history : History
        The run to export.
    target : str, os.PathLike or text file
        The file to write (replaced if it exists), or an open text stream such as
        ``sys.stdout`` (CSV and JSON only).
    fmt : {"csv", "parquet", "json"}, default "csv"
        CSV with a header row, Parquet (needs pyarrow: ``dabc[export]``) or JSON (an array
        of records, full float precision; a newline follows it on a stream).
    generation : str or int, default "last"
        ``"last"``, ``"all"`` or a generation number.
    skip_unreadable : bool, default False
        Write the readable generations and leave out the unreadable ones (damaged pages
        or blobs), listed in the result's ``attrs["unreadable"]``; see
        :func:`particles_frame`.

    Returns
    -------
    pandas.DataFrame
        The table written (see :func:`particles_frame`).

    Raises
    ------
    InputError
        When the target cannot take the format (see :func:`check_export_target`), the
        generation is not stored (see :func:`select_generations`), or writing fails;
        when no selected generation is readable (nothing is written then).
    CorruptGenerationError
        When a selected generation is unreadable and ``skip_unreadable`` is False.
    BrokenPipeError
        When the stream's reader went away (e.g. ``dabc export ... --out - | head``).

    Examples
    --------
    >>> history, _ = open_history("dabc-demo.db")               # doctest: +SKIP
    >>> export_particles(history, "particles.csv", generation="all")   # doctest: +SKIP
    """
    if fmt == "netcdf":
        raise InputError("netcdf is not a table of particles: write it with "
                         "export_inference_data(history, target, generation, m, resample).")
    check_export_target(target, fmt)
    ts = select_generations(history, generation)
    df = particles_frame(history, ts, skip_unreadable)
    bad = df.attrs["unreadable"]
    if len(bad) == len(ts):
        what = "; ".join(f"generation {t}: {r}" for t, r in bad.items())
        raise InputError(f"Nothing exported: every selected generation of run {history.id} "
                         f"in {display_url(history.url)} is unreadable ({what}). The database "
                         "file is damaged: restore it from a backup.")
    is_stream = not isinstance(target, str | os.PathLike)
    try:
        if fmt == "csv":
            df.to_csv(target, index=False)
        elif fmt == "json":
            df.to_json(target, orient="records", double_precision=15)
            if is_stream:
                target.write("\n")
        else:
            df.to_parquet(target, index=False)
    except BrokenPipeError:
        raise
    except OSError as exc:
        where = "the output stream" if is_stream else repr(str(target))
        raise InputError(f"Cannot write {where}: {exc.strerror or exc}.") from exc
    return df


def _check_netcdf_libraries() -> None:
    """ArviZ and a netCDF writer (h5netcdf or netCDF4) are importable, else an InputError."""
    missing = [name for name, mods in (("arviz", ("arviz",)),
                                       ("h5netcdf", ("h5netcdf", "netCDF4")))
               if not any(importlib.util.find_spec(mod) for mod in mods)]
    if missing:
        raise InputError(f"netCDF export needs {' and '.join(missing)}, not installed. Install "
                         'it with: pip install "dabc[viz]" (or export as csv or json).')


def export_inference_data(history: History, target: str | os.PathLike[str],
                          generation: str | int = "last", m: int = 0,
                          resample: int | None = None) -> Any:
    """Write one generation of one model as an ArviZ ``InferenceData`` netCDF file.

    The file holds what :func:`~dabc.storage.inference_data.to_inference_data` returns
    (posterior, sample_stats with the weights, observed_data, prior) and is read back with
    ``arviz.from_netcdf``. Without ``resample`` the posterior holds the weighted particles:
    ArviZ's summaries of it are unweighted (its ``attrs["weighted"]`` is 1).

    Parameters
    ----------
    history : History
        The run to export.
    target : str or os.PathLike
        The file to write (replaced if it exists).
    generation : str or int, default "last"
        ``"last"`` or a generation number (a netCDF file holds one generation, so not
        ``"all"``).
    m : int, default 0
        The model index.
    resample : int, optional
        Write this many equally weighted draws (systematic resampling, seeded from the run's
        seed) instead of the weighted particles.

    Returns
    -------
    arviz.InferenceData
        What was written.

    Raises
    ------
    InputError
        When ArviZ or h5netcdf/netCDF4 is missing, the target is not a writable file, the
        generation is ``"all"`` or not stored, ``m`` has no particles there, ``resample`` <
        1, or writing fails.
    CorruptGenerationError
        When the generation is stored but cannot be read back.

    Examples
    --------
    >>> history, _ = open_history("dabc-demo.db")                       # doctest: +SKIP
    >>> export_inference_data(history, "posterior.nc", resample=4000)   # doctest: +SKIP
    """
    check_export_target(target, "netcdf")
    if generation == "all":
        raise InputError("A netCDF export holds one generation of one model; give a "
                         "generation ('last' or a number), not 'all'.")
    t = select_generations(history, generation)[0]
    idata = to_inference_data(history, t=t, m=m, resample=resample)
    engine = "h5netcdf" if importlib.util.find_spec("h5netcdf") else "netcdf4"
    try:
        idata.to_netcdf(str(target), engine=engine)
    except OSError as exc:
        raise InputError(f"Cannot write {str(target)!r}: {exc.strerror or exc}.") from exc
    except ValueError as exc:  # e.g. a parameter named "a/b": netCDF forbids "/" in names
        raise InputError(f"Cannot write {str(target)!r} as netCDF: {exc} Export as csv or json "
                         "instead, or rename in Python before writing: history."
                         "to_inference_data(...).rename({'a/b': 'a_b'}).to_netcdf(path).") from exc
    logger.info("run %s generation %d model %d written as netCDF to %s", history.id, t, m,
                target)
    return idata
