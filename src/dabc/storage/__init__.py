"""Run history in a SQL database (SQLite by default, any SQLAlchemy URL)."""

from .history import History, database_url

__all__ = ["History", "database_url"]
