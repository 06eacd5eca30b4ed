"""History: every generation of every run, stored in one SQL database.

A generation's particles of one model are stored as one row holding a columnar binary
block (parameters, weights, distances, summary statistics), not one row per value: a
100,000-particle generation is written and read in a fraction of a second.

``History(db)`` opens an existing dabc database and never creates one: a missing file, or
a database without the dabc tables, is an :class:`~dabc.InputError` that names it. Only a
writer creates: ``History(db, create=True)`` (what :meth:`dabc.ABCSMC.run` uses) creates the
database and its tables when missing, and the first write through any History adds the
tables a database of an older dabc lacks. :func:`dabc.storage.open_history` also lists the
stored runs. Events are logged on ``logging.getLogger("dabc.storage")``:
a database opened or its tables created (INFO), each generation stored with its size and
the time the write took (DEBUG), a failed write (ERROR).

An existing SQLite file that this process may not write (a read-only file system, an
immutable file or folder) is opened read-only: everything reads, and only the writers raise
"Cannot write the database". Creating the tables is safe when many processes start on one
new database at once (a lost race is retried, logged at INFO). A generation whose pages or
blob are damaged raises :class:`CorruptGenerationError` (an InputError) and leaves the
other generations readable.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable, sort_tables_and_constraints

from .._compat.sqlalchemy import share_sqlite_compilation
from ..errors import InputError
from . import live as _live
from .npz import pack as _pack
from .npz import unpack as _unpack
from .schema import _meta, checkpoints, generations, particles, runs
from .schema import live as live_table
from .urls import database_url, display_url, sqlite_path

logger = logging.getLogger("dabc.storage")


class CorruptGenerationError(InputError):
    """A stored generation cannot be read back: its database pages or its blob are damaged.

    The other generations of the run usually still read fine (``dabc export --generation
    all`` writes them and names the damaged ones).

    Parameters
    ----------
    db : str
        The database, as shown in messages.
    run_id : int
        The run.
    t : int
        The damaged generation.
    reason : str
        What failed, e.g. ``"database disk image is malformed"`` or ``"bad npz blob of
        model 0: BadZipFile: Bad CRC-32"``.

    Attributes
    ----------
    run_id, t, reason
        As given.
    """

    def __init__(self, db: str, run_id: int, t: int, reason: str):
        self.run_id, self.t, self.reason = run_id, t, reason
        super().__init__(
            f"Generation {t} of run {run_id} in {db} is unreadable ({reason}): the database "
            "file is damaged. Restore it from a backup; the other generations can still be "
            f"read ('dabc export {db} --generation all' writes them and skips this one), and "
            "a run resumes only from a readable last generation.")


#: Errors met while two processes create the tables at once; the loser retries. SQLite:
#: "table ... already exists", "database is locked"; PostgreSQL: DuplicateTable (42P07),
#: UniqueViolation on pg_type (23505) and deadlocks (40P01).
_RACE_TEXT = ("already exists", "database is locked", "database table is locked",
              "duplicate key value violates unique constraint")
_RACE_PGCODES = ("42P07", "23505", "40P01")
_CREATE_ATTEMPTS = 30


def _is_creation_race(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return code in _RACE_PGCODES or any(t in str(orig or exc).lower() for t in _RACE_TEXT)


def _create_tables(engine: sa.Engine, url: str) -> None:
    """Create the missing dabc tables; safe when many processes start on one new database.

    ``create_all`` checks for each table and then creates it; another process may create it
    between the two (SQLite: "table dabc_runs already exists", PostgreSQL: a unique
    violation on ``pg_type``) or hold the lock. Such an error is retried after a short,
    growing, random pause: the retry then finds the tables.
    """
    delay = 0.02
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            _meta.create_all(engine, checkfirst=True)
            return
        except sa.exc.SQLAlchemyError as exc:
            if attempt == _CREATE_ATTEMPTS or not _is_creation_race(exc):
                raise
            pause = delay * random.uniform(0.5, 1.5)
            logger.info("creating the dabc tables in %s raced with another process (%s); "
                        "retry %d in %.2f s", display_url(url),
                        str(getattr(exc, "orig", None) or exc).splitlines()[0], attempt, pause)
            time.sleep(pause)
            delay = min(delay * 2, 0.5)


_DDL: dict[str, list[str]] = {}


def _sqlite_ddl(dialect: sa.Dialect) -> list[str]:
    """Every dabc table and index as SQLite statements (``IF NOT EXISTS``, which SQLite
    leaves out of the stored schema), compiled once per process."""
    statements = _DDL.get(dialect.name)
    if statements is None:
        statements = []
        # the tables, constraints and order of create_all (so the same sqlite_master)
        for table, fkcs in sort_tables_and_constraints(list(_meta.tables.values())):
            if table is None:
                continue
            statements.append(str(CreateTable(table, include_foreign_key_constraints=fkcs,
                                              if_not_exists=True).compile(dialect=dialect)))
            for index in sorted(table.indexes, key=lambda ix: ix.name or ""):
                statements.append(str(CreateIndex(index, if_not_exists=True)
                                      .compile(dialect=dialect)))
        statements = _DDL[dialect.name] = [s.strip() for s in statements]
    return statements


def _create_tables_in_new_file(engine: sa.Engine, url: str) -> bool:
    """Create the tables of a SQLite file that did not exist before this engine, in one
    write transaction, without create_all's per-table existence checks and statement
    compilation (about 3 ms of a run's start).

    The connection is the file's first: it was turned to WAL without fsyncs (``_engine``),
    and the tables are created without them too; a crash of the machine meanwhile can only
    lose a file that holds no run. It syncs as every connection does afterwards.

    True when this call created them (the file then holds no run). False, with nothing
    changed, when another process had created the tables first (processes starting on one
    new file are serialized by its lock), when that failed, or when the driver is not the
    standard library's sqlite3: create_all then takes over.
    """
    if engine.dialect.driver != "pysqlite":
        return False
    try:
        with engine.connect() as c:
            con = c.connection.driver_connection
            try:
                con.execute("BEGIN IMMEDIATE")
                if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    con.execute("ROLLBACK")
                    return False
                for statement in _sqlite_ddl(engine.dialect):
                    con.execute(statement)
                con.execute("COMMIT")
            finally:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                # the first connection of a new file started without syncs (see _engine);
                # from here on it syncs as every other connection does
                con.execute("PRAGMA synchronous=NORMAL")
    except (sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
        logger.debug("creating the dabc tables in the new file %s at once failed (%s); "
                     "creating them one by one", display_url(url), exc)
        return False
    logger.info("created the dabc tables in %s", display_url(str(engine.url)))
    return True


def _read_only_reason(path: str) -> str | None:
    """Why this process cannot write the existing SQLite file ``path``, or None."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    for target, what in ((path, "the file"), (parent, "its folder")):
        if not os.access(target, os.W_OK):
            try:
                read_only_fs = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
            except OSError:
                read_only_fs = False
            if read_only_fs:
                return "it is on a read-only file system"
            return f"{what} is not writable (permission denied or immutable)"
    return None


def sqlite_read_only_connect(path: str, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the existing SQLite file ``path`` read-only, even on a read-only file system.

    ``mode=ro`` reads a database together with its write-ahead log. It needs the ``-shm``
    file, or a folder where SQLite may create it; when neither is there (a WAL database
    copied without its ``-wal``/``-shm`` files onto a read-only medium) the file is opened
    ``immutable=1``, which reads the main file alone and takes no lock.

    Parameters
    ----------
    path : str
        The database file.
    timeout : float, default 30.0
        Seconds to wait for a lock held by a writer.

    Returns
    -------
    sqlite3.Connection
        A connection on which every write fails with "attempt to write a readonly
        database".

    Raises
    ------
    sqlite3.DatabaseError
        When the file is not a readable SQLite database.
    """
    base = "file:" + urllib.parse.quote(os.path.abspath(path))
    try:
        con = sqlite3.connect(f"{base}?mode=ro", uri=True, timeout=timeout,
                              check_same_thread=False)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError as exc:  # no -shm and no right to create it
        first = exc
    con = sqlite3.connect(f"{base}?immutable=1", uri=True, timeout=timeout,
                          check_same_thread=False)
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        logger.warning("%s is read-only and was opened without its write-ahead log %s (%s): "
                       "generations stored only in that log are not seen; copy both files "
                       "to a writable folder to read them", path, wal, first)
    return con


_WHERE_RUNS_COME_FROM = ("Check the path (runs are written by ABCSMC.run(db=...); "
                         "reading never creates a database).")


def _check_dabc_tables(engine: sa.Engine, url: str, path: str | None) -> set[str]:
    """The tables of the existing database at ``url``; an InputError when it has no dabc
    tables.

    A SQLite file is probed on a read-only connection of its own (the engine's connections
    would switch a foreign file to WAL mode).
    """
    shown = path if path is not None else display_url(url)
    try:
        if path is not None:
            con = sqlite_read_only_connect(path)
            try:
                tables = {r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                con.close()
        else:
            tables = set(sa.inspect(engine).get_table_names())
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path!r} is not a readable SQLite database ({exc}). "
                         + _WHERE_RUNS_COME_FROM) from exc
    except ModuleNotFoundError as exc:
        raise InputError(f"Cannot open database {shown!r}: its driver {exc.name!r} is not "
                         "installed. For PostgreSQL install dabc[postgres].") from exc
    except sa.exc.SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        first = str(detail).strip().splitlines()[0] if str(detail).strip() else ""
        raise InputError(f"Cannot open database {shown!r}: {type(detail).__name__}: {first}. "
                         "Check the URL, that the server is running and that you may log "
                         "in.") from exc
    if runs.name not in tables:
        raise InputError(f"{shown!r} is not a dabc database: it has no {runs.name} table "
                         "(nothing was created in it). " + _WHERE_RUNS_COME_FROM)
    return tables


def _engine(url: str, create: bool = False
            ) -> tuple[sa.Engine, str | None, set[str] | None, bool]:
    """An engine for ``url``; when it can only be read, why (else None); without
    ``create``, the names of its tables (None with ``create``: they are all there); and
    whether it created a new SQLite file (then it holds the dabc tables and no run).

    With ``create``, a writable database gets the dabc tables created if missing (SQLite:
    WAL mode), and a missing SQLite file is created. Without, the database must exist and
    hold the dabc tables; nothing is created. An existing SQLite file that this process
    cannot write (read-only file system, folder or file) is opened read-only, without
    touching it.
    """
    path = sqlite_path(url)
    read_only = None
    new_file = False
    if path is not None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            what = (f"{parent!r} is not a folder" if os.path.exists(parent)
                    else f"folder {parent!r} does not exist")
            if not create:
                raise InputError(f"Database file {path!r} does not exist ({what}). "
                                 + _WHERE_RUNS_COME_FROM)
            raise InputError(f"Cannot create the database {path!r}: {what}. Create the "
                             "folder or choose another path for db=.")
        if os.path.isdir(path):
            if create:
                raise InputError(f"Cannot create the database {path!r}: it is a folder. Give "
                                 "db= a file path, e.g. "
                                 f"{os.path.join(path, 'runs.db')!r}.")
            raise InputError(f"{path!r} is a folder, not a database file. "
                             + _WHERE_RUNS_COME_FROM)
        if os.path.isfile(path):
            read_only = _read_only_reason(path)
        elif not create:
            raise InputError(f"Database file {path!r} does not exist (in "
                             f"{os.path.dirname(os.path.abspath(path))!r}). "
                             + _WHERE_RUNS_COME_FROM)
        elif not os.access(parent, os.W_OK):
            raise InputError(f"Cannot write the database {path!r}: permission denied. Choose a "
                             "writable location for db=.")
        else:
            new_file = True
    try:
        if read_only is not None:
            engine = sa.create_engine(url, creator=lambda: sqlite_read_only_connect(path))
        elif path is not None and "timeout" not in url.partition("?")[2]:
            engine = sa.create_engine(url, connect_args={"timeout": 30.0})
        else:
            engine = sa.create_engine(url)
    except Exception as exc:
        raise InputError(f"Cannot open database {display_url(url)!r}: {exc}") from exc
    share_sqlite_compilation(engine)  # a statement compiles once per process, not per file
    tables = None if create else _check_dabc_tables(engine, url, path)
    if read_only is not None:
        logger.info("opened database %s read-only: %s", display_url(url), read_only)
        return engine, read_only, tables, False
    # a file this call creates holds nothing until its run row: its first connection turns
    # it to WAL and creates the tables without waiting for the disk (4 of the 7 fsyncs of
    # a run's start, about 1.3 ms here), then syncs as every connection does (see
    # _create_tables_in_new_file)
    unsynced_start = [create and new_file and engine.dialect.driver == "pysqlite"]
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(conn, _):
            cur = conn.cursor()
            # synchronous first: switching a new file to WAL then syncs once less
            cur.execute("PRAGMA synchronous=OFF" if unsynced_start[0] else
                        "PRAGMA synchronous=NORMAL")
            unsynced_start[0] = False
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()
    fresh = create and new_file and _create_tables_in_new_file(engine, url)
    unsynced_start[0] = False  # whatever happened: later connections sync
    if create and not fresh:
        _ensure_tables(engine, url)
    logger.info("opened database %s", display_url(url))
    return engine, None, tables, fresh


def _ensure_tables(engine: sa.Engine, url: str) -> None:
    """Create the dabc tables that are missing, as an InputError when that fails."""
    try:
        _create_tables(engine, url)
    except sa.exc.SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        raise InputError(f"Cannot open or create tables in database {display_url(url)!r}: "
                         f"{type(detail).__name__}: {detail}. Check the URL, that the server "
                         "is running and that you may write.") from exc


_GENERATION_COLUMNS = frozenset(generations.c.keys())


def _id_list(ids: list[int]) -> str:
    if len(ids) > 10:
        return ", ".join(map(str, ids[:5])) + ", ..., " + ", ".join(map(str, ids[-3:]))
    return ", ".join(map(str, ids))


class History:
    """Read and write the runs stored in a database.

    Every run of :class:`~dabc.ABCSMC` writes its generations through a History; reading one
    back gives the posterior of any stored generation. ``History(db)`` opens an existing
    dabc database and never creates anything; only ``create=True`` (what a run uses)
    creates a missing database and its tables.

    Parameters
    ----------
    db : str or os.PathLike, default "sqlite:///dabc.db"
        A SQLite file path or any SQLAlchemy URL (``postgresql://`` gets a driver, see
        :func:`~dabc.storage.database_url`).
    run_id : int, optional
        The run to read; default: the latest run stored (None when there is none).
    create : bool, default False
        Create the database (a SQLite file) and the dabc tables when they are missing, as
        a new run does. Without it, a missing file or a database without dabc tables is an
        error and nothing is created.

    Attributes
    ----------
    url : str
        The SQLAlchemy URL of the database.
    engine : sqlalchemy.Engine
        The engine (call ``engine.dispose()`` to close its connections).
    id : int or None
        The run this History reads and writes.

    Raises
    ------
    InputError
        When the database cannot be opened (a mistyped URL, a missing file or one that is
        not a dabc database, an unreachable server, a missing driver) or, with
        ``create=True``, created (missing or unwritable folder); when ``run_id`` is not a
        stored run (the message lists those stored).

    Examples
    --------
    >>> h = History("runs.db")                       # doctest: +SKIP
    >>> params, weights = h.get_distribution(m=0)     # doctest: +SKIP
    """

    def __init__(self, db: str | os.PathLike[str] = "sqlite:///dabc.db",
                 run_id: int | None = None, *, create: bool = False):
        self.url = database_url(db)
        self.engine, self.read_only_reason, tables, fresh = _engine(self.url, create)
        self._tables_ready = create and self.read_only_reason is None
        self._cache: dict = {}
        if tables is not None:
            self._cache["live_tables"] = live_table.name in tables
        if run_id is None:
            self.id = None if fresh else self._latest_run()  # a file just created has none
        else:
            self.id = run_id
            self._check_run_id(run_id)

    def _shown(self) -> str:
        """The database as messages name it: the SQLite file's path, else the URL."""
        return sqlite_path(self.url) or display_url(self.url)

    def _check_run_id(self, run_id) -> None:
        ids = [int(r["id"]) for r in self._read(sa.select(runs.c.id).order_by(runs.c.id))]
        if run_id in ids:
            return
        there = (f"runs there: {_id_list(ids)}" if ids else "it holds no run yet")
        raise InputError(f"No run with id {run_id} in {self._shown()}; {there} (see "
                         f"'dabc info {self._shown()}').")

    @property
    def read_only(self) -> bool:
        """Whether this History can only read (an existing SQLite file it may not write).

        Its writers (:meth:`create_run`, :meth:`append_generation`, :meth:`set_status`)
        then raise :class:`~dabc.InputError`; :attr:`read_only_reason` says why.
        """
        return self.read_only_reason is not None

    def _check_writable(self, what: str) -> None:
        if self.read_only_reason is not None:
            path = sqlite_path(self.url)
            raise InputError(f"Cannot write the database {path!r} ({what}): "
                             f"{self.read_only_reason}. It can be read but not written; "
                             "choose a writable location for db= or copy the file to one.")
        if not self._tables_ready:  # opened to read: add the tables an older dabc lacked
            _ensure_tables(self.engine, self.url)
            self._tables_ready = True
            self._cache.pop("live_tables", None)

    def _read(self, query):
        """Run a read query; a damaged file or a missing table becomes an InputError."""
        try:
            with self.engine.connect() as c:
                return c.execute(query).mappings().all()
        except sa.exc.DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
            if "no such table" in detail:
                ro = ", and it is read-only, so none can be created" if self.read_only else ""
                raise InputError(f"{display_url(self.url)!r} is not a dabc database (it has "
                                 f"no dabc tables{ro}).") from exc
            raise InputError(f"Cannot read database {display_url(self.url)!r}: "
                             f"{type(exc.orig).__name__}: {detail}. If the file is damaged, "
                             "restore it from a backup.") from exc

    # -- runs ---------------------------------------------------------------------------
    def _latest_run(self) -> int | None:
        rows = self._read(sa.select(sa.func.max(runs.c.id).label("id")))
        return rows[0]["id"] if rows else None

    def create_run(self, *, seed: int, population_size: int, model_names: list[str],
                   param_names: list[list[str]], stat_columns: list[str], observed: bytes,
                   config: bytes, version: str) -> int:
        """Register a new run (status ``running``) and make it this History's run.

        Parameters
        ----------
        seed : int
            The run's random seed.
        population_size : int
            Particles per generation.
        model_names : list of str
            One name per model.
        param_names : list of list of str
            Each model's parameter names.
        stat_columns : list of str
            The names of the flattened summary statistics.
        observed : bytes
            The pickled observed statistics.
        config : bytes
            The pickled engine configuration (what :meth:`dabc.ABCSMC.load` rebuilds from).
        version : str
            The dabc version that writes the run.

        Returns
        -------
        int
            The new run's id (also stored in :attr:`id`).
        """
        self._check_writable("creating a run")
        with self.engine.begin() as c:
            self.id = c.execute(runs.insert().values(
                created=datetime.now(UTC).replace(tzinfo=None), seed=int(seed),
                population_size=population_size, model_names=json.dumps(model_names),
                param_names=json.dumps(param_names), stat_columns=json.dumps(stat_columns),
                observed=observed, config=config, status="running", version=version,
            )).inserted_primary_key[0]
        self._cache.clear()
        self._cache["max_t"] = (self.id, -1)  # no generation yet: max_t needs no query
        self._cache["created"] = self.id  # the run row exists: _run_id needs no query
        logger.info("run %s created in %s", self.id, display_url(self.url))
        return self.id

    def _run_id(self) -> int:
        """This History's run id, checked to be stored (no query when it created the run)."""
        if self.id is not None and self._cache.get("created") == self.id:
            return self.id
        return self._run_row()["id"]

    def _run_row(self):
        if self.id is None:
            raise InputError(f"No run stored in {display_url(self.url)}.")
        if "run" not in self._cache:
            rows = self._read(sa.select(runs).where(runs.c.id == self.id))
            row = rows[0] if rows else None
            if row is None:
                raise InputError(f"No run with id {self.id} in {display_url(self.url)}.")
            self._cache["run"] = dict(row)
        return self._cache["run"]

    def set_status(self, status: str, stop_reason: str | None = None) -> None:
        """Record how the run ended.

        Parameters
        ----------
        status : str
            ``"done"``, ``"failed"``, ``"interrupted"``, ...
        stop_reason : str, optional
            Why it ended, in words (shown by ``dabc info``).
        """
        self._check_writable(f"recording the status {status!r}")
        with self.engine.begin() as c:
            c.execute(runs.update().where(runs.c.id == self.id)
                      .values(status=status, stop_reason=stop_reason))
        self._cache.pop("run", None)

    def all_runs(self) -> pd.DataFrame:
        """Every run in the database, with its master's liveness.

        A run whose status is ``"running"`` but whose master's heartbeat is older than
        :data:`~dabc.storage.live.LIVE_TIMEOUT` seconds is shown as ``"interrupted"``, with
        the stop reason "master stopped responding at <time> (no heartbeat for N s)" (the
        stored status is left alone: a master that comes back shows as running again).

        Returns
        -------
        pandas.DataFrame
            One row per run, ordered by id: ``id``, ``created``, ``status``,
            ``stop_reason``, ``population_size``, ``model_names`` (JSON), ``generations``
            (stored), ``simulations`` (over the stored generations), ``last_epsilon``,
            ``updated`` (the master's last heartbeat, naive UTC, None when it wrote none)
            and ``alive`` (running, heartbeat within the timeout). Empty (no columns) when no
            run is stored.

        Examples
        --------
        >>> dabc.History("sqlite:///results.db").all_runs()[["id", "status", "stop_reason"]]
        ... # doctest: +SKIP
           id status                      stop_reason
        0   1   done  max_generations=8 reached
        """
        with_live = self._has_live_tables()
        frame = pd.DataFrame(self._read(_live.runs_query(generations, with_live)))
        if not len(frame):
            return frame
        if not with_live:
            frame["updated"] = None
        return _live.runs_with_liveness(frame)

    def _has_live_tables(self) -> bool:
        """Whether the database has the live tables (one written by an older dabc has not
        until something writes through a History)."""
        if "live_tables" not in self._cache:
            has = True
            if not self._tables_ready:
                try:
                    has = sa.inspect(self.engine).has_table("dabc_live")
                except sa.exc.SQLAlchemyError:
                    has = False
            self._cache["live_tables"] = has
        return self._cache["live_tables"]

    # -- live state and steering ----------------------------------------------------------
    def live_state(self, run_id: int | None = None) -> dict | None:
        """The master's latest snapshot of a running (or ended) run, or None.

        Parameters
        ----------
        run_id : int, optional
            The run; default this History's.

        Returns
        -------
        dict or None
            None when the run's master never wrote one. Else: ``run_id``, ``t`` (the
            generation in progress), ``epsilon``, ``accepted``, ``needed``,
            ``evaluations``, ``worker_seconds`` (summed over the generation's finished
            tasks), ``generation_started``, ``updated`` (the heartbeat; both naive UTC),
            ``host``, ``pid``, ``rules`` (dict: ``max_generations``, ``minimum_epsilon``,
            ``max_total_simulations``, ``max_walltime``, ``min_acceptance_rate``, as in
            force now), ``steerable`` (whether the rules may be changed from outside) and
            ``alive`` (the heartbeat is at most :func:`~dabc.storage.live.live_timeout`
            seconds old and the run's stored status is ``"running"``); also ``status``, the
            stored status.

        Examples
        --------
        >>> state = History("runs.db").live_state()              # doctest: +SKIP
        >>> state["accepted"], state["needed"], state["alive"]    # doctest: +SKIP
        (412, 1000, True)
        """
        rid = self.id if run_id is None else run_id
        if rid is None or not self._has_live_tables():
            return None
        return _live.states_from_rows(self._read(_live.live_query(rid))).get(int(rid))

    def live_states(self) -> dict[int, dict]:
        """The live state of every run that has one, in one query.

        Returns
        -------
        dict of int to dict
            Run id to the dict :meth:`live_state` gives.

        Examples
        --------
        >>> alive = [r for r, s in History("runs.db").live_states().items()
        ...          if s["alive"]]                                   # doctest: +SKIP
        """
        if not self._has_live_tables():
            return {}
        return _live.states_from_rows(self._read(_live.live_query()))

    def write_live(self, snapshot: dict) -> None:
        """Replace this run's live row (the master's heartbeat; used by the engine).

        Parameters
        ----------
        snapshot : dict
            Column values of ``dabc_live`` (see :meth:`live_state`; ``rules`` a dict);
            ``updated`` defaults to now.
        """
        self._check_writable("recording the live state")
        _live.write_live(self.engine, self._run_id(), snapshot)

    def request_control(self, action: str, value=None, source: str = "",
                        run_id: int | None = None) -> int:
        """Ask the run's master to stop or to change a stopping rule.

        The master reads the request after the generation in progress is stored, applies it
        (or refuses a rule change when the run was started with ``steering=False``) and
        records when and with what outcome in :meth:`events`. It logs who changed what on
        ``logging.getLogger("dabc.engine")``.

        Parameters
        ----------
        action : {"stop", "max_generations", "minimum_epsilon", "max_total_simulations"}
            ``"stop"``: end the run after the generation in progress (status "done", reason
            "stopped from <source> after generation t"). The others replace that rule's
            value; lowering ``max_generations`` below the generations stored already stops
            the run after the generation in progress.
        value : int, float or None
            The rule's new value (whole number >= 1 for ``max_generations``, number >= 0
            for ``minimum_epsilon``, whole number >= 1 or None for
            ``max_total_simulations``); None for ``"stop"``.
        source : str, optional
            Who asks (e.g. ``"dashboard 127.0.0.1"``), shown in the log and stop reason.
        run_id : int, optional
            The run; default this History's.

        Returns
        -------
        int
            The request's id in :meth:`events`.

        Raises
        ------
        InputError
            When the action is unknown, the value is of the wrong type or out of range,
            the run is not running (ended, or its master stopped responding), or a rule
            change is asked of a run started with ``steering=False``.

        Examples
        --------
        >>> h = History("runs.db")                                  # doctest: +SKIP
        >>> h.request_control("max_generations", 5, source="notebook")  # doctest: +SKIP
        1
        >>> h.request_control("stop", source="notebook")            # doctest: +SKIP
        2
        """
        value = _live.validate_control(action, value)
        self._check_writable(f"requesting {action!r}")
        rid = self.id if run_id is None else run_id
        rows = self._read(sa.select(runs).where(runs.c.id == rid)) if rid is not None else []
        if not rows:
            raise InputError(f"No run with id {rid} in {display_url(self.url)}.")
        _live.check_steerable(dict(rows[0]), self.live_state(rid), action,
                              display_url(self.url))
        event = _live.insert_event(self.engine, int(rid), action, value, source)
        logger.info("run %s: %s%s requested by %s (request %d)", rid, action,
                    "" if action == "stop" else f" = {value}", source or "(unnamed)", event)
        return event

    def events(self, run_id: int | None = None) -> pd.DataFrame:
        """The run's steering log: every request and what the master did with it.

        Parameters
        ----------
        run_id : int, optional
            The run; default this History's.

        Returns
        -------
        pandas.DataFrame
            One row per request, oldest first: ``id``, ``time`` (requested), ``source``,
            ``action``, ``value``, ``applied`` (when the master handled it; None while
            pending) and ``outcome`` (e.g. "max_generations 10 -> 5", "refused: ...").

        Examples
        --------
        >>> history.events()[["action", "value", "outcome"]]  # doctest: +SKIP
        """
        rid = self.id if run_id is None else run_id
        if rid is None or not self._has_live_tables():
            return _live.events_frame([])
        return _live.events_frame(self._read(_live.events_query(int(rid))))

    def pending_controls(self) -> list[dict]:
        """This run's requests not handled yet, oldest first (read by the master).

        Returns
        -------
        list of dict
            ``id``, ``time``, ``source``, ``action``, ``value`` per request.
        """
        return _live.pending_controls(self.engine, self._run_id())

    def mark_applied(self, event_id: int, outcome: str) -> None:
        """Record that request ``event_id`` was handled, and how.

        Parameters
        ----------
        event_id : int
            The request's id.
        outcome : str
            What the master did, in words ("max_generations 10 -> 5", "refused: ...").
        """
        self._check_writable("recording a steering outcome")
        _live.mark_applied(self.engine, event_id, outcome)

    @property
    def config(self) -> bytes:
        """The pickled engine configuration of this run (for resuming).

        Returns
        -------
        bytes
            The stored configuration; :func:`dabc.engine.config.read_config` shows its plain
            fields without running code, :meth:`dabc.ABCSMC.load` rebuilds the engine.

        Raises
        ------
        InputError
            When no run is stored, or the run :attr:`id` does not exist (likewise for the
            other run properties).

        Examples
        --------
        >>> from dabc.engine.config import read_config
        >>> read_config(history.config)  # doctest: +SKIP
        """
        return self._run_row()["config"]

    @property
    def observed(self) -> bytes:
        """The pickled observed summary statistics of this run.

        Returns
        -------
        bytes
            The observed data as given to :meth:`dabc.ABCSMC.run`, pickled (numbers and
            arrays only; :func:`dabc.engine.config.load_observed` reads it back).

        Examples
        --------
        >>> from dabc.engine.config import load_observed
        >>> load_observed(history.observed, trust=False)  # doctest: +SKIP
        {'mean': 1.03}
        """
        return self._run_row()["observed"]

    @property
    def seed(self) -> int:
        """The random seed of this run.

        Returns
        -------
        int
            The seed given to :class:`~dabc.ABCSMC`, or the one drawn for it.

        Examples
        --------
        >>> history.seed  # doctest: +SKIP
        42
        """
        return int(self._run_row()["seed"])

    @property
    def model_names(self) -> list[str]:
        """The names of this run's models, in model index order.

        Returns
        -------
        list of str
            One name per model (``model_names=`` or each function's ``__name__``).

        Examples
        --------
        >>> history.model_names  # doctest: +SKIP
        ['narrow', 'wide']
        """
        return json.loads(self._run_row()["model_names"])

    @property
    def param_names(self) -> list[list[str]]:
        """Each model's parameter names, in model index order.

        Returns
        -------
        list of list of str
            For each model, the names of its prior's parameters.

        Examples
        --------
        >>> history.param_names  # doctest: +SKIP
        [['mu']]
        """
        return json.loads(self._run_row()["param_names"])

    @property
    def stat_columns(self) -> list[str]:
        """The names of the flattened summary statistics.

        Returns
        -------
        list of str
            One name per number: a scalar statistic keeps its key, an array's elements are
            ``key[0]``, ``key[1]``, ... in flattened (row-major) order.

        Examples
        --------
        >>> history.stat_columns  # doctest: +SKIP
        ['mean']
        """
        return json.loads(self._run_row()["stat_columns"])

    # -- writing -------------------------------------------------------------------------
    def append_generation(self, t: int, info: dict, per_model: dict[int, dict],
                          state: bytes) -> None:
        """Store generation ``t`` atomically: its summary row and each model's particles.

        The generation's checkpoint rows (:meth:`save_checkpoint`) are deleted in the same
        transaction.

        Parameters
        ----------
        t : int
            The generation index.
        info : dict
            The summary row: ``epsilon``, ``n_simulations``, ``n_evaluated``,
            ``n_accepted``, ``acceptance_rate``, ``ess``, ``walltime_s``, ``started``,
            ``finished`` and ``model_probabilities`` (one per model).
        per_model : dict of int to dict
            Per model index, its arrays: ``theta`` (particles x parameters), ``weight``,
            ``distance``, ``stats`` (particles x statistics) and optionally ``id``.
        state : bytes
            The pickled engine state after this generation (what a resume starts from).

        Raises
        ------
        InputError
            When the database refuses the write (disk full, locked, server gone); nothing
            of generation ``t`` is stored and the run can be resumed from generation t-1.
        """
        self._check_writable(f"storing generation {t}")
        row = {k: v.item() if isinstance(v, np.generic) else v for k, v in info.items()}
        row.update(run_id=self.id, t=t, state=state,
                   model_probabilities=json.dumps([float(p) for p in info["model_probabilities"]]))
        unknown = row.keys() - _GENERATION_COLUMNS
        if unknown:  # what .values(**row) said: executing with parameters would drop them
            raise sa.exc.CompileError(f"Unconsumed column names: {', '.join(sorted(unknown))}")
        tic = time.perf_counter()
        # a run this History created has checkpoint rows of t only if it saved some
        may_have_checkpoint = (self._cache.get("created") != self.id
                               or (self.id, int(t)) in self._cache.get("checkpointed", ()))
        blobs = [{"run_id": self.id, "t": t, "m": int(m), "n": len(a["weight"]),
                  "data": _pack(a)} for m, a in per_model.items()]
        try:
            with self.engine.begin() as c:
                c.execute(generations.insert(), row)
                if blobs:
                    c.execute(particles.insert(), blobs)
                if may_have_checkpoint:
                    c.execute(checkpoints.delete().where(
                        (checkpoints.c.run_id == self.id) & (checkpoints.c.t == t)))
        except sa.exc.OperationalError as exc:
            logger.error("could not store generation %d of run %s in %s: %s", t, self.id,
                         display_url(self.url), exc.orig)
            raise InputError(f"Could not store generation {t} in {display_url(self.url)}: "
                             f"{exc.orig}. Free disk space or choose another database; the "
                             "run can be resumed from the last stored generation.") from exc
        self._cache.pop("gens", None)
        known = self._cache.get("max_t")
        if known is not None and known[0] == self.id:  # this History writes the run: no query
            self._cache["max_t"] = (self.id, max(known[1], int(t)))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("stored generation %d of run %s: %d particles, %d bytes in %.3f s",
                         t, self.id, sum(b["n"] for b in blobs),
                         sum(len(b["data"]) for b in blobs) + len(state or b""),
                         time.perf_counter() - tic)

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, t: int, seq: int, kind: str, arrays: dict[str, np.ndarray],
                        n_tasks: int, n_rows: int, first_failure: str | None = None) -> float:
        """Save one batch of results of the running generation ``t``, in one transaction.

        Parameters
        ----------
        t : int
            The generation that is running (not stored yet).
        seq : int
            The batch's number within the generation (0, 1, ...; see
            :meth:`next_checkpoint_seq`).
        kind : str
            ``"ids"`` (DYN) or ``"slots"`` (STAT).
        arrays : dict of str to numpy.ndarray
            The columns, stored as one npz blob (no pickles).
        n_tasks, n_rows : int
            How many tasks and result rows the batch holds.
        first_failure : str, optional
            The traceback of the first failed evaluation among them.

        Returns
        -------
        float
            The seconds the write took.

        Raises
        ------
        InputError
            When the database refuses the write (nothing of the batch is then stored).
        """
        self._check_writable(f"saving a checkpoint of generation {t}")
        tic = time.perf_counter()
        row = {"run_id": self.id, "t": int(t), "seq": int(seq), "kind": kind,
               "n_tasks": int(n_tasks), "n_rows": int(n_rows), "first_failure": first_failure,
               "written": datetime.now(UTC).replace(tzinfo=None), "data": _pack(arrays)}
        self._cache.setdefault("checkpointed", set()).add((self.id, int(t)))
        try:
            with self.engine.begin() as c:
                c.execute(checkpoints.insert().values(**row))
        except sa.exc.OperationalError as exc:
            logger.error("could not save a checkpoint of generation %d of run %s in %s: %s", t,
                         self.id, display_url(self.url), exc.orig)
            raise InputError(f"Could not save a checkpoint of generation {t} in "
                             f"{display_url(self.url)}: {exc.orig}. Free disk space or choose "
                             "another database.") from exc
        return time.perf_counter() - tic

    def _checkpoint_rows(self, query) -> list:
        """``query`` on the checkpoint table; none when the table does not exist (a
        database of dabc 0.1 opened read-only)."""
        try:
            with self.engine.connect() as c:
                return c.execute(query).mappings().all()
        except sa.exc.OperationalError as exc:
            if "no such table" in str(exc.orig) or "does not exist" in str(exc.orig):
                return []
            raise
        except sa.exc.ProgrammingError as exc:  # PostgreSQL: UndefinedTable
            if "does not exist" in str(exc.orig):
                return []
            raise

    def next_checkpoint_seq(self, t: int) -> int:
        """The number the next checkpoint batch of generation ``t`` gets.

        Parameters
        ----------
        t : int
            The running generation.

        Returns
        -------
        int
            One more than the highest stored, 0 when none is stored.
        """
        rows = self._checkpoint_rows(sa.select(sa.func.max(checkpoints.c.seq).label("s")).where(
            (checkpoints.c.run_id == self.id) & (checkpoints.c.t == int(t))))
        return 0 if not rows or rows[0]["s"] is None else int(rows[0]["s"]) + 1

    def load_checkpoint(self, t: int) -> list[dict]:
        """The saved checkpoint batches of generation ``t``, in the order written.

        Parameters
        ----------
        t : int
            The generation that was running.

        Returns
        -------
        list of dict
            Per batch: ``seq``, ``kind``, ``n_tasks``, ``n_rows``, ``first_failure`` and
            ``arrays`` (the columns given to :meth:`save_checkpoint`). A batch whose blob
            is damaged is left out (logged at WARNING): its results are simply computed
            again.

        Examples
        --------
        >>> batches = history.load_checkpoint(4)  # doctest: +SKIP
        >>> sum(b["n_rows"] for b in batches)  # doctest: +SKIP
        812
        """
        rows = self._checkpoint_rows(sa.select(checkpoints).where(
            (checkpoints.c.run_id == self.id) & (checkpoints.c.t == int(t)))
            .order_by(checkpoints.c.seq))
        out = []
        for r in rows:
            try:
                arrays = _unpack(r["data"])
            except Exception as exc:  # damaged bytes: recompute those results
                logger.warning("checkpoint batch %d of generation %d of run %s is unreadable "
                               "(%s: %s); its results will be computed again", r["seq"], t,
                               self.id, type(exc).__name__, exc)
                continue
            out.append({k: r[k] for k in ("seq", "kind", "n_tasks", "n_rows",
                                          "first_failure")} | {"arrays": arrays})
        return out

    def checkpoint_summary(self) -> dict | None:
        """What the checkpoint of this run holds, or None when it has none.

        Returns
        -------
        dict or None
            ``t`` (the generation that was running), ``results`` (evaluations saved),
            ``batches`` and ``written`` (when the last batch was saved).

        Examples
        --------
        >>> history.checkpoint_summary()  # doctest: +SKIP
        {'t': 4, 'results': 812, 'batches': 9, 'written': datetime.datetime(...)}
        """
        if self.id is None:
            return None
        return self.checkpoints().get(int(self.id))

    def checkpoints(self) -> dict[int, dict]:
        """The checkpoint of every run that has one.

        Returns
        -------
        dict of int to dict
            Run id to ``t``, ``results``, ``batches`` and ``written`` (as in
            :meth:`checkpoint_summary`).

        Examples
        --------
        >>> sorted(history.checkpoints())  # runs with a checkpoint  # doctest: +SKIP
        [3]
        """
        c = checkpoints
        rows = self._checkpoint_rows(
            sa.select(c.c.run_id, c.c.t, sa.func.sum(c.c.n_rows).label("results"),
                      sa.func.count(c.c.seq).label("batches"),
                      sa.func.max(c.c.written).label("written"))
            .group_by(c.c.run_id, c.c.t).order_by(c.c.run_id, c.c.t))
        return {int(r["run_id"]): {"t": int(r["t"]), "results": int(r["results"] or 0),
                                   "batches": int(r["batches"]), "written": r["written"]}
                for r in rows}

    def interruption(self) -> str | None:
        """``"interrupted in generation t, r results saved"`` when this run has a
        checkpoint (a generation that was running when the run stopped), else None.

        Returns
        -------
        str or None
            The description.

        Examples
        --------
        >>> history.interruption()  # doctest: +SKIP
        'interrupted in generation 4, 812 results saved'
        """
        cp = self.checkpoint_summary()
        if cp is None:
            return None
        return f"interrupted in generation {cp['t']}, {cp['results']:,} results saved"

    def delete_checkpoint(self) -> int:
        """Delete this run's checkpoint rows (its unfinished generation then starts over).

        Returns
        -------
        int
            The number of batches deleted.
        """
        self._check_writable("deleting a checkpoint")
        with self.engine.begin() as c:
            res = c.execute(checkpoints.delete().where(checkpoints.c.run_id == self.id))
        return int(res.rowcount or 0)

    # -- reading -------------------------------------------------------------------------
    def _generations(self) -> pd.DataFrame:
        if "gens" not in self._cache:
            # without the engine states: only a resume reads one (state()), and a damaged
            # state blob must not hide the run's table of generations
            cols = [col for col in generations.columns if col.name != "state"]
            q = sa.select(*cols).where(generations.c.run_id == self.id) \
                .order_by(generations.c.t)
            df = pd.DataFrame(self._read(q), columns=[col.name for col in cols])
            self._cache["gens"] = df
        return self._cache["gens"]

    @property
    def max_t(self) -> int:
        """Index of the last stored generation (-1 when none).

        Returns
        -------
        int
            Generations are numbered from 0 (the prior generation).

        Examples
        --------
        >>> history = dabc.History("sqlite:///results.db")  # doctest: +SKIP
        >>> history.max_t  # doctest: +SKIP
        7
        """
        known = self._cache.get("max_t")
        if known is not None and known[0] == self.id:
            return known[1]
        g = self._generations()
        value = int(g.t.max()) if len(g) else -1
        self._cache["max_t"] = (self.id, value)
        return value

    @property
    def n_populations(self) -> int:
        """Number of stored generations.

        Returns
        -------
        int
            ``max_t + 1``.

        Examples
        --------
        >>> history.n_populations  # doctest: +SKIP
        8
        """
        return len(self._generations())

    @property
    def total_simulations(self) -> int:
        """Simulations counted over all stored generations.

        Returns
        -------
        int
            The sum of the generations' ``n_simulations`` (a generation that was not
            finished is not counted).

        Examples
        --------
        >>> history.total_simulations  # doctest: +SKIP
        23587
        """
        return int(self._generations().n_simulations.sum())

    def get_all_populations(self) -> pd.DataFrame:
        """The summary of every stored generation.

        Returns
        -------
        pandas.DataFrame
            One row per generation, ordered by ``t``: ``t``, ``epsilon``,
            ``n_simulations``, ``n_evaluated``, ``n_accepted``, ``acceptance_rate``,
            ``ess``, ``walltime_s``, ``started``, ``finished``.

        Examples
        --------
        >>> history.get_all_populations()[["t", "epsilon", "n_simulations"]]  # doctest: +SKIP
        """
        g = self._generations()
        return g.drop(columns=["run_id", "model_probabilities"]).reset_index(drop=True)

    def get_model_probabilities(self) -> pd.DataFrame:
        """Model probabilities per generation.

        Returns
        -------
        pandas.DataFrame
            Index ``t``, one column per model, in model index order, named by the run's
            :attr:`model_names` (a name given to several models gets `` [m]`` appended, e.g.
            ``"<lambda> [1]"``). By model index ``m``: ``probs.iloc[:, m]``.

        Examples
        --------
        >>> probs = History("runs.db").get_model_probabilities()   # doctest: +SKIP
        >>> probs["narrow"].iloc[-1], probs.iloc[-1, 0]             # doctest: +SKIP
        (0.83, 0.83)
        """
        g = self._generations()
        probs = [json.loads(p) for p in g.model_probabilities]
        names = self.model_names
        n_models = len(names)
        data = [[p[m] if m < len(p) else 0.0 for m in range(n_models)] for p in probs]
        columns = [n if names.count(n) == 1 else f"{n} [{m}]" for m, n in enumerate(names)]
        df = pd.DataFrame(data, index=pd.Index(g.t.to_list(), name="t"), columns=columns)
        df.columns.name = "model"
        return df

    def _check_m(self, m) -> int:
        """``m`` as a model index of this run, else an InputError naming the models."""
        names = self.model_names
        if isinstance(m, int | np.integer) and not isinstance(m, bool) and 0 <= m < len(names):
            return int(m)
        models = ", ".join(f"m={i} ({n!r})" for i, n in enumerate(names))
        valid = "m=0" if len(names) == 1 else f"m in 0..{len(names) - 1}"
        raise InputError(f"m={m!r} is not a model of run {self.id} in {self._shown()}: it has "
                         f"{len(names)} model{'s' if len(names) != 1 else ''}, {models}; give "
                         f"{valid}.")

    def _resolve_t(self, t: int | None) -> int:
        if self.id is None:
            raise InputError(f"No run stored in {self._shown()} yet: runs are written by "
                             "ABCSMC.run(db=...).")
        if self.max_t < 0:
            raise InputError(f"Run {self.id} in {display_url(self.url)} has no stored "
                             "generation yet.")
        return self.max_t if t is None else (self.max_t + 1 + t if t < 0 else int(t))

    def get_arrays(self, t: int | None = None, m: int | None = None) -> dict[int, dict]:
        """The raw arrays of generation ``t``, per model.

        Parameters
        ----------
        t : int, optional
            The generation; default the last, negative counts from the end.
        m : int, optional
            Only this model; default all models with particles in generation ``t``.

        Returns
        -------
        dict of int to dict
            Per model index: ``theta`` (particles x parameters), ``weight`` (as stored,
            not normalised), ``distance``, ``stats`` (particles x statistics) and, when
            stored, ``id``.

        Raises
        ------
        InputError
            When the run has no stored generation.
        CorruptGenerationError
            (an InputError) When generation ``t`` is stored but cannot be read back: a
            damaged page of the database file, or a damaged particle blob.

        Examples
        --------
        >>> arrays = history.get_arrays()  # doctest: +SKIP
        >>> arrays[0]["theta"].shape  # (particles, parameters) of model 0  # doctest: +SKIP
        (1000, 1)
        """
        t = self._resolve_t(t)
        if m is not None:
            m = self._check_m(m)
        q = sa.select(particles.c.m, particles.c.data).where(
            (particles.c.run_id == self.id) & (particles.c.t == t))
        if m is not None:
            q = q.where(particles.c.m == m)
        try:
            with self.engine.connect() as c:
                rows = c.execute(q).all()
        except sa.exc.OperationalError:  # locked, server gone, ...: not damage
            raise
        except sa.exc.DatabaseError as exc:  # SQLite: "database disk image is malformed"
            raise self._unreadable(t, str(exc.orig).strip()) from exc
        out = {}
        for r in rows:
            try:
                arrays = _unpack(r.data)
                missing = {"theta", "weight", "distance", "stats"} - set(arrays)
                if missing:
                    raise ValueError(f"no {', '.join(sorted(missing))} array")
            except Exception as exc:  # any damage of the bytes: zip, CRC, npy header, ...
                raise self._unreadable(t, f"bad npz blob of model {int(r.m)}: "
                                       f"{type(exc).__name__}: {exc}") from exc
            out[int(r.m)] = arrays
        return out

    def _unreadable(self, t: int, reason: str) -> CorruptGenerationError:
        logger.warning("generation %d of run %s in %s is unreadable: %s", t, self.id,
                       display_url(self.url), reason)
        return CorruptGenerationError(sqlite_path(self.url) or display_url(self.url), self.id,
                                      t, reason)

    def check_generation(self, t: int) -> str | None:
        """Whether generation ``t``'s particles read back: None when they do, else why not.

        Parameters
        ----------
        t : int
            A stored generation.

        Returns
        -------
        str or None
            The reason it is unreadable (as in :class:`CorruptGenerationError`), or None.

        Examples
        --------
        >>> history.check_generation(0) is None  # doctest: +SKIP
        True
        """
        try:
            self.get_arrays(t)
        except CorruptGenerationError as exc:
            return exc.reason
        return None

    def unreadable_generations(self) -> dict[int, str]:
        """The stored generations of this run whose particles cannot be read back.

        Every generation is read in full (for a large run this takes a while: about as
        long as exporting them all).

        Returns
        -------
        dict of int to str
            Generation to reason; empty when every generation reads.

        Examples
        --------
        >>> history.unreadable_generations()  # doctest: +SKIP
        {}
        """
        reasons = {int(t): self.check_generation(int(t)) for t in self._generations().t}
        return {t: r for t, r in reasons.items() if r is not None}

    def get_distribution(self, m: int = 0, t: int | None = None) -> tuple[pd.DataFrame,
                                                                          np.ndarray]:
        """The posterior sample of model ``m`` at generation ``t``.

        Parameters
        ----------
        m : int, default 0
            The model index.
        t : int, optional
            The generation; default the last.

        Returns
        -------
        params : pandas.DataFrame
            One row per particle, one column per parameter (empty when the model has no
            particle in that generation).
        weights : numpy.ndarray
            The particles' weights, normalised to sum to 1 within the model.

        Raises
        ------
        InputError
            When the run has no stored generation, or ``m`` is not one of its models (the
            message names them).

        Examples
        --------
        >>> params, w = History("runs.db").get_distribution()   # doctest: +SKIP
        >>> float(w @ params["mu"])                              # doctest: +SKIP
        0.73
        """
        m = self._check_m(m)
        arrays = self.get_arrays(t, m).get(m)
        names = self.param_names[m]
        if arrays is None:  # the model has no particles in that generation
            return pd.DataFrame(columns=names, dtype=float), np.zeros(0)
        df = pd.DataFrame(arrays["theta"][:, :len(names)], columns=names)
        df.columns.name = "name"
        w = arrays["weight"]
        return df, w / w.sum()

    def get_statistics(self, m: int = 0, t: int | None = None) -> tuple[pd.DataFrame,
                                                                        np.ndarray]:
        """The summary statistics of the accepted particles of model ``m`` at generation ``t``.

        Parameters
        ----------
        m : int, default 0
            The model index.
        t : int, optional
            The generation; default the last.

        Returns
        -------
        stats : pandas.DataFrame
            One row per particle, one column per statistic.
        weights : numpy.ndarray
            The particles' weights, normalised to sum to 1 within the model.

        Raises
        ------
        InputError
            When the run has no stored generation.

        Examples
        --------
        >>> stats, weights = history.get_statistics()  # doctest: +SKIP
        >>> (stats["mean"] * weights).sum()  # weighted mean of a statistic  # doctest: +SKIP
        """
        m = self._check_m(m)
        arrays = self.get_arrays(t, m).get(m)
        if arrays is None:
            return pd.DataFrame(columns=self.stat_columns, dtype=float), np.zeros(0)
        w = arrays["weight"]
        return pd.DataFrame(arrays["stats"], columns=self.stat_columns), w / w.sum()

    def get_weighted_distances(self, t: int | None = None) -> pd.DataFrame:
        """The distance and weight of every particle of generation ``t``.

        Parameters
        ----------
        t : int, optional
            The generation; default the last.

        Returns
        -------
        pandas.DataFrame
            Columns ``m`` (model index), ``distance`` and ``w`` (the stored weight).

        Raises
        ------
        InputError
            When the run has no stored generation.

        Examples
        --------
        >>> d = history.get_weighted_distances()  # doctest: +SKIP
        >>> float(d["distance"].max())  # at most the last generation's epsilon  # doctest: +SKIP
        """
        parts = [pd.DataFrame({"m": m, "distance": a["distance"], "w": a["weight"]})
                 for m, a in sorted(self.get_arrays(t).items())]
        return pd.concat(parts, ignore_index=True)

    def to_inference_data(self, t: int | None = None, m: int = 0,
                          resample: int | None = None) -> Any:
        """Generation ``t`` of model ``m`` as an ``arviz.InferenceData`` (needs ``dabc[viz]``).

        Groups: ``posterior`` (the particles, one chain), ``sample_stats`` (``weight``,
        ``distance``, ``particle``), ``observed_data`` and ``prior``; see
        :func:`dabc.storage.inference_data.to_inference_data`. Without ``resample`` the
        posterior holds the *weighted* particles and ArviZ's summaries of it are unweighted
        (``attrs["weighted"] == 1``); ``resample=k`` gives ``k`` equally weighted draws by
        systematic resampling, seeded from the run's seed.

        Parameters
        ----------
        t : int, optional
            The generation; default the last, negative counts from the end.
        m : int, default 0
            The model index.
        resample : int, optional
            The number of equally weighted draws; default None: the weighted particles.

        Returns
        -------
        arviz.InferenceData

        Raises
        ------
        InputError
            When ArviZ is missing, there is no generation ``t``, model ``m`` has no particles
            in it, or ``resample`` < 1.

        Examples
        --------
        >>> import arviz as az                                          # doctest: +SKIP
        >>> idata = History("runs.db").to_inference_data(resample=4000)  # doctest: +SKIP
        >>> az.summary(idata, kind="stats")                             # doctest: +SKIP
        """
        from .inference_data import to_inference_data

        return to_inference_data(self, t=t, m=m, resample=resample)

    def state(self, t: int) -> bytes:
        """The engine state stored after generation ``t`` (what a resume starts from).

        Parameters
        ----------
        t : int
            A stored generation.

        Returns
        -------
        bytes
            The pickled state.

        Raises
        ------
        CorruptGenerationError
            When the state's database pages are damaged.

        Examples
        --------
        >>> from dabc.engine.config import load_state  # doctest: +SKIP
        >>> distance, epsilon, next_eps = load_state(history.state(history.max_t), layout)
        ... # doctest: +SKIP
        """
        q = sa.select(generations.c.state).where(
            (generations.c.run_id == self.id) & (generations.c.t == int(t)))
        try:
            with self.engine.connect() as c:
                rows = c.execute(q).all()
        except sa.exc.OperationalError:
            raise
        except sa.exc.DatabaseError as exc:
            raise self._unreadable(int(t), f"its engine state: {str(exc.orig).strip()}") from exc
        if not rows:
            raise InputError(f"Run {self.id} in {display_url(self.url)} has no generation "
                             f"{t}.")
        return rows[0][0]

    def __repr__(self) -> str:
        return f"History({display_url(self.url)!r}, run_id={self.id})"
