"""One SQLite dialect and one compiled-statement cache for all of a process's SQLite files.

SQLAlchemy caches each statement's compiled SQL per :class:`~sqlalchemy.engine.Engine`,
keyed by the engine's dialect *instance*, and every SQLite file needs an engine of its own.
A process that runs many short analyses, each in a new file (a parameter sweep, a test
suite, the ``fast`` benchmark), therefore compiles the same dozen statements again for each
run: about 4 ms of a 35 ms run here. :func:`share_sqlite_compilation` gives every SQLite
engine made by dabc the same dialect instance and the same compiled cache, so a statement is
compiled once per process.

Relies on (private): ``Engine.dialect`` and ``Pool._dialect`` being plain attributes that
SQLAlchemy reads on each use, and ``Engine._compiled_cache`` being the mapping
``Connection._execute_clauseelement`` passes to ``_compile_w_cache`` (SQLAlchemy 2.0 and
2.1; checked on 2.1.9). Two engines may share a dialect when they come from the same dialect
class and driver with the same creation arguments, which dabc's engines do: the pysqlite
dialect holds no per-database state (its version flags come from the process's sqlite3
library, the same for every file). The dialect each engine was built with still initializes
that engine's first connection (SQLAlchemy captured it then), which is harmless.

Fallback: if an attribute is missing (another SQLAlchemy), the engine is left as it is: each
run compiles its statements again, as before. ``tests/test_compat.py`` checks that two
engines share the cache, compile a statement once and still keep their data apart.
"""

from __future__ import annotations

import threading

__all__ = ["share_sqlite_compilation"]

_lock = threading.Lock()
_dialects: dict = {}
_cache = None


def share_sqlite_compilation(engine):
    """Give a SQLite ``engine`` the process's shared SQLite dialect and compiled cache.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Made by ``sqlalchemy.create_engine`` for a SQLite URL, before its first use. Other
        databases (one server serves many runs through one engine) are left alone.

    Returns
    -------
    sqlalchemy.engine.Engine
        The same engine.
    """
    global _cache
    dialect = engine.dialect
    if dialect.name != "sqlite" or not all(
            hasattr(x, a) for x, a in ((engine, "_compiled_cache"), (engine.pool, "_dialect"))):
        return engine
    key = (type(dialect), dialect.driver, dialect.paramstyle, id(dialect.loaded_dbapi))
    with _lock:
        shared = _dialects.setdefault(key, dialect)
        if _cache is None:
            from sqlalchemy.util import LRUCache
            _cache = LRUCache(1000)
    if shared is not dialect:
        engine.dialect = shared
        engine.pool._dialect = shared
    engine._compiled_cache = _cache
    return engine
