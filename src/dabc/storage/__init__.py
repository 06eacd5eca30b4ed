"""Run history in a SQL database (SQLite by default, any SQLAlchemy URL).

- :class:`History` writes a run's generations and reads them back (``history``); it creates
  a missing database.
- :func:`open_history` opens an existing database for reading and never creates one
  (``read``).
- :func:`particles_frame` and :func:`export_particles` flatten stored particles into one
  table and write it as CSV, Parquet or JSON (``export``).
- :func:`posterior_summary` and :func:`weighted_quantile` summarise a weighted posterior
  sample (``summary``).
- :func:`database_url`, :func:`sqlite_path` and :func:`display_url` answer, in one place,
  what a database name means (``urls``).

Everything here logs on ``logging.getLogger("dabc.storage")`` and never prints.
"""

from .export import (
    EXPORT_FORMATS,
    check_export_target,
    export_particles,
    particles_frame,
    select_generations,
)
from .history import CorruptGenerationError, History
from .read import has_runs_table, open_history
from .summary import posterior_summary, weighted_quantile
from .urls import database_url, display_url, sqlite_path

__all__ = [
    "EXPORT_FORMATS", "CorruptGenerationError", "History", "check_export_target",
    "database_url", "display_url", "export_particles", "has_runs_table", "open_history",
    "particles_frame", "posterior_summary", "select_generations", "sqlite_path",
    "weighted_quantile",
]
