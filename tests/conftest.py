"""Shared fixtures. PostgreSQL is tested for real: ``postgres_url`` fails (never skips) when
no server is reachable, because CI must exercise it. ``bash scripts/test.sh`` installs and
starts PostgreSQL and sets ``DABC_TEST_POSTGRES_URL``."""

from __future__ import annotations

import importlib.util
import os
import uuid

import pytest

DEFAULT_POSTGRES_URL = "postgresql://127.0.0.1:5432/test"
HOW_TO_FIX = ("Run the tests with 'bash scripts/test.sh', which installs and starts PostgreSQL "
              "and sets DABC_TEST_POSTGRES_URL, or point DABC_TEST_POSTGRES_URL at a server "
              "where you may create databases (e.g. postgresql+psycopg2://user:pw@host/db).")


def _with_driver(url: str) -> str:
    """Name the installed driver when the URL names none (SQLAlchemy 2.1 assumes psycopg 3,
    SQLAlchemy 2.0 psycopg2; the ``postgres`` extra installs psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        has_pg3 = importlib.util.find_spec("psycopg") is not None
        return f"postgresql+{'psycopg' if has_pg3 else 'psycopg2'}://{rest}"
    return url


def _admin_engine(url: str):
    import sqlalchemy as sa

    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                            connect_args={"connect_timeout": 5})


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the session.

    Falls back to a fresh schema in the given database when the role may not create
    databases. Fails the test (it does not skip) when PostgreSQL cannot be reached.
    """
    import sqlalchemy as sa

    base = _with_driver(os.environ.get("DABC_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    engine = _admin_engine(base)
    try:
        with engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {base}: {type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. "
                    f"{HOW_TO_FIX}", pytrace=False)
    name = f"dabc_test_{uuid.uuid4().hex[:12]}"
    made = None
    try:
        with engine.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made = "database"
        url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    except sa.exc.DBAPIError:
        with engine.connect() as c:  # no CREATEDB privilege: use a schema instead
            c.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        made = "schema"
        url = _in_schema(base, name)
    try:
        yield url
    finally:
        with engine.connect() as c:
            if made == "schema":
                c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            else:
                c.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :name AND pid <> pg_backend_pid()"),
                          {"name": name})
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()


def _in_schema(url: str, schema: str) -> str:
    """The URL with ``schema`` as the connection's search_path."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    return u.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


@pytest.fixture
def pg_url(postgres_url):
    """An empty schema of its own in the session's PostgreSQL database, for one test."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(postgres_url)
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    plain = sa.engine.make_url(postgres_url).difference_update_query(["options"])
    return _in_schema(plain.render_as_string(hide_password=False), name)
