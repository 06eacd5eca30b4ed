"""Opening stored runs to read them, never creating anything.

:class:`~dabc.storage.History` creates a missing database and its tables, which is right
for a run that is about to write. A reader (``dabc info``, ``dabc export``, a notebook)
must instead be told that the file it named does not exist, is not SQLite, or holds no
dabc run — and must leave no empty database behind. :func:`open_history` checks exactly
that first (:func:`has_runs_table` probes for the tables read-only), then opens the
History.
"""

from __future__ import annotations

import os
import sqlite3

import pandas as pd
import sqlalchemy as sa

from ..errors import InputError
from .history import History, _id_list, sqlite_read_only_connect
from .urls import database_url, display_url, sqlite_path

__all__ = ["has_runs_table", "open_history"]


def has_runs_table(url: str) -> bool:
    """Whether the database at ``url`` holds dabc tables, without creating anything.

    A SQLite file is opened read-only (also on a read-only file system, see
    :func:`~dabc.storage.history.sqlite_read_only_connect`); a server database is inspected.

    Parameters
    ----------
    url : str
        A SQLAlchemy URL (see :func:`~dabc.storage.database_url`).

    Returns
    -------
    bool
        True when the ``dabc_runs`` table exists.

    Raises
    ------
    InputError
        When the file is not a SQLite database, the URL's driver is not installed, or the
        server cannot be reached or refuses the login.
    """
    path = sqlite_path(url)
    if path is not None:
        try:
            con = sqlite_read_only_connect(path)
            try:
                row = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                  "name='dabc_runs'").fetchone()
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path!r} is not a readable SQLite database: {exc}.") from exc
        return row is not None
    try:
        engine = sa.create_engine(url)
        try:
            return sa.inspect(engine).has_table("dabc_runs")
        finally:
            engine.dispose()
    except ModuleNotFoundError as exc:
        raise InputError(f"Cannot open database {display_url(url)!r}: its driver {exc.name!r} "
                         "is not installed. For PostgreSQL install dabc[postgres] and write "
                         "the URL as postgresql+psycopg2://user@host/database.") from exc
    except Exception as exc:  # server down, bad credentials, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"Cannot open database {display_url(url)!r}: {type(exc).__name__}: "
                         f"{first}. Check the URL and that the server is running.") from exc


def open_history(db: str | os.PathLike[str],
                 run: int | None = None) -> tuple[History, pd.DataFrame]:
    """The History of an existing dabc database; never creates a database or tables.

    Parameters
    ----------
    db : str or os.PathLike
        A SQLite file path or a database URL.
    run : int, optional
        The run to select; default the latest.

    Returns
    -------
    history : History
        Reading the selected run.
    runs : pandas.DataFrame
        Every stored run, as :meth:`History.all_runs` gives them.

    Raises
    ------
    InputError
        When the file does not exist or is a folder, the database is unreadable or holds
        no dabc table or no run, or ``run`` is not a stored run's id. The message names
        the stored runs.

    Examples
    --------
    >>> history, runs = open_history("dabc-demo.db")    # doctest: +SKIP
    >>> history.max_t                                   # doctest: +SKIP
    7
    """
    url = database_url(db)
    path = sqlite_path(url)
    if path is not None:
        if not os.path.exists(path):
            raise InputError(f"Database file {path!r} does not exist. Give the path of a "
                             "database written by dabc: runs are written by "
                             "ABCSMC.run(db=...) (or 'dabc demo'); reading never creates one.")
        if os.path.isdir(path):
            raise InputError(f"{path!r} is a folder, not a database file.")
    if not has_runs_table(url):
        raise InputError(f"{display_url(db)!r} is not a dabc database (it has no dabc_runs "
                         "table; nothing was created in it).")
    history = History(url)
    runs = history.all_runs()
    if not len(runs):
        raise InputError(f"No run stored in {display_url(db)!r}.")
    ids = [int(i) for i in runs["id"]]
    if run is not None:
        if run not in ids:
            raise InputError(f"No run with id {run} in {display_url(db)!r}; stored runs: "
                             f"{_id_list(ids)}.")
        history.id = run
    return history, runs
