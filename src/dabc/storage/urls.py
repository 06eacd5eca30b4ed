"""Database addresses: the one place that turns what a user typed into a database URL.

A user names a database by a plain file path (taken as SQLite) or by a SQLAlchemy URL.
Three questions are asked of that text in several places — which driver to use, which file
a SQLite URL points at, and how to show the URL in a message without its password — and
each is answered here only, so :class:`~dabc.storage.History` (which creates databases) and
:func:`~dabc.storage.open_history` (which never does) cannot drift apart.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re

import sqlalchemy as sa

from ..errors import InputError

__all__ = ["database_url", "display_url", "sqlite_path"]

_SQLITE_PREFIX = "sqlite:///"
_SQLITE_MEMORY = "sqlite:///:memory:"
#: The database types SQLAlchemy ships with (what a mistyped one is compared with).
_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
_FORMS = ("Write a SQLite file as 'sqlite:///runs.db' (relative path, three slashes), "
          "'sqlite:////home/me/runs.db' (absolute path, four) or just the path 'runs.db'; a "
          "PostgreSQL database as 'postgresql://user@host/database'.")
#: A path that starts like a URL but lacks its "://": "sqlite:runs.db", "sqlite:/runs.db".
_HALF_URL = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(\+[A-Za-z0-9_]+)?:/{0,1}(?!/)")


def _check_url(db: str) -> None:
    """Raise an InputError naming what is wrong with the form of ``db``, if anything is."""
    if "://" not in db:
        m = _HALF_URL.match(db)
        if m and m.group(1).lower() in (*_DIALECTS, "postgres") and len(m.group(1)) > 1:
            raise InputError(f"{db!r} is not a database URL: it lacks the '://' after "
                             f"{m.group(1)!r} (it would be taken as a file of that name). "
                             + _FORMS)
        return
    scheme, rest = db.split("://", 1)
    dialect, _, driver = scheme.partition("+")
    dialect = dialect.lower()
    if dialect == "sqlite":
        if rest and not rest.startswith("/"):
            path = rest.split("?", 1)[0]
            raise InputError(f"{db!r} is not a valid SQLite URL: it needs three slashes "
                             "before a relative path and four before an absolute one. Did you "
                             f"mean 'sqlite:///{path}'? (A plain path such as {path!r} works "
                             "too.)")
        return
    if dialect == "postgres":
        dialect = "postgresql"
    try:
        sa.dialects.registry.load(dialect)
    except sa.exc.NoSuchModuleError:
        close = difflib.get_close_matches(dialect, _DIALECTS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"{db!r}: unknown database type {scheme.partition('+')[0]!r} (the part "
                         f"before '://').{hint} " + _FORMS) from None
    if driver:
        try:
            sa.dialects.registry.load(f"{dialect}.{driver}")
        except sa.exc.NoSuchModuleError:
            raise InputError(f"{db!r}: SQLAlchemy knows no driver {driver!r} for {dialect} (the "
                             f"part after '+'). Leave it out ('{dialect}://...'), or name an "
                             "installed one, e.g. 'postgresql+psycopg2://user@host/database'."
                             ) from None


def database_url(db: str | os.PathLike[str]) -> str:
    """A SQLAlchemy URL from a URL or a plain file path (taken as SQLite).

    ``postgresql://`` (or ``postgres://``) URLs that name no driver get one: psycopg 3 when
    it is installed, else psycopg2 (the ``postgres`` extra). Other URLs are returned as they
    are.

    Parameters
    ----------
    db : str or os.PathLike
        A file path such as ``"runs.db"`` or a URL such as
        ``"postgresql://user@host/database"``.

    Returns
    -------
    str
        The URL to give to SQLAlchemy.

    Raises
    ------
    InputError
        When ``db`` is a mistyped URL, naming the right form: two slashes in a SQLite URL
        (``"sqlite://runs.db"``), a missing ``://`` (``"sqlite:runs.db"``), a database type
        or driver SQLAlchemy does not know (``"sqlit:///runs.db"``).

    Examples
    --------
    >>> database_url("runs.db")
    'sqlite:///runs.db'
    >>> database_url("sqlite:////tmp/runs.db")
    'sqlite:////tmp/runs.db'
    """
    db = os.fspath(db)
    _check_url(db)
    if "://" not in db:
        return f"{_SQLITE_PREFIX}{db}"
    scheme, rest = db.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
        return f"postgresql+{driver}://{rest}"
    return db


def sqlite_path(url: str) -> str | None:
    """The file behind a ``sqlite:///`` URL.

    Parameters
    ----------
    url : str
        A database URL (as returned by :func:`database_url`).

    Returns
    -------
    str or None
        The file path, without the URL's query string; None for other databases and for
        in-memory SQLite.

    Examples
    --------
    >>> sqlite_path("sqlite:///runs.db?timeout=30")
    'runs.db'
    >>> sqlite_path("sqlite:///:memory:") is None
    True
    """
    if url.startswith(_SQLITE_PREFIX) and url != _SQLITE_MEMORY:
        return url[len(_SQLITE_PREFIX):].split("?", 1)[0]
    return None


def display_url(db: str | os.PathLike[str]) -> str:
    """A database fit for messages and logs: the URL with its password hidden, or the path.

    Parameters
    ----------
    db : str or os.PathLike
        A file path or a database URL.

    Returns
    -------
    str
        ``db`` with any password replaced by ``***``; ``db`` unchanged when it is a path or
        not a URL SQLAlchemy can parse.

    Examples
    --------
    >>> display_url("postgresql+psycopg2://me:secret@db.example.org/runs")
    'postgresql+psycopg2://me:***@db.example.org/runs'
    """
    text = os.fspath(db)
    if "://" not in text:
        return text
    try:
        return sa.engine.make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show it as given
        return text
