"""Database addresses: the one place that turns what a user typed into a database URL.

A user names a database by a plain file path (taken as SQLite) or by a SQLAlchemy URL.
Three questions are asked of that text in several places — which driver to use, which file
a SQLite URL points at, and how to show the URL in a message without its password — and
each is answered here only, so :class:`~dabc.storage.History` (which creates databases) and
:func:`~dabc.storage.open_history` (which never does) cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import os

import sqlalchemy as sa

__all__ = ["database_url", "display_url", "sqlite_path"]

_SQLITE_PREFIX = "sqlite:///"
_SQLITE_MEMORY = "sqlite:///:memory:"


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

    Examples
    --------
    >>> database_url("runs.db")
    'sqlite:///runs.db'
    >>> database_url("sqlite:////tmp/runs.db")
    'sqlite:////tmp/runs.db'
    """
    db = os.fspath(db)
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
