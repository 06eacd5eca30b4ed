"""The dabc tables, on one :class:`sqlalchemy.MetaData`.

One place for every table, so that :func:`~dabc.storage.history._create_tables` creates all
of them, also the ones added after a database was first written (``create_all`` adds missing
tables to an existing database and leaves the others alone): a database written by an older
dabc gains the live-state tables the first time a History opens it writably.

- ``dabc_runs``, ``dabc_generations``, ``dabc_particles``: the stored runs.
- ``dabc_checkpoints``: results of the generation that is running (see the checkpoints).
- ``dabc_live``: one row per run, the master's latest in-progress snapshot and heartbeat
  (written by :class:`dabc.engine.live.LiveRecorder`); what a dashboard that reads only the
  database shows while a run runs, and how it tells a dead master from a slow generation.
- ``dabc_events``: the steering log, requests from outside (stop, new stopping rules) and
  what the master did with them.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from .urls import display_url

logger = logging.getLogger("dabc.storage")

_meta = sa.MetaData()
runs = sa.Table(
    "dabc_runs", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created", sa.DateTime),
    sa.Column("seed", sa.BigInteger),
    sa.Column("population_size", sa.Integer),
    sa.Column("model_names", sa.Text),
    sa.Column("param_names", sa.Text),
    sa.Column("stat_columns", sa.Text),
    sa.Column("observed", sa.LargeBinary),
    sa.Column("config", sa.LargeBinary),
    sa.Column("status", sa.String(32)),
    sa.Column("stop_reason", sa.Text),
    sa.Column("version", sa.String(32)),
)
generations = sa.Table(
    "dabc_generations", _meta,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("dabc_runs.id"), primary_key=True),
    sa.Column("t", sa.Integer, primary_key=True),
    sa.Column("epsilon", sa.Float),
    sa.Column("n_simulations", sa.BigInteger),
    sa.Column("n_evaluated", sa.BigInteger),
    sa.Column("n_accepted", sa.Integer),
    sa.Column("acceptance_rate", sa.Float),
    sa.Column("ess", sa.Float),
    sa.Column("walltime_s", sa.Float),
    sa.Column("started", sa.DateTime),
    sa.Column("finished", sa.DateTime),
    sa.Column("model_probabilities", sa.Text),
    sa.Column("state", sa.LargeBinary),
)
particles = sa.Table(
    "dabc_particles", _meta,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("t", sa.Integer, primary_key=True),
    sa.Column("m", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer),
    sa.Column("data", sa.LargeBinary),
    sa.ForeignKeyConstraint(["run_id", "t"], ["dabc_generations.run_id", "dabc_generations.t"]),
)
#: Results of the generation that is running, saved in batches while it runs (one row per
#: write): the rows of several tasks in one columnar npz blob. Deleted in the transaction
#: that stores the generation.
checkpoints = sa.Table(
    "dabc_checkpoints", _meta,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("dabc_runs.id"), primary_key=True),
    sa.Column("t", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(8)),
    sa.Column("n_tasks", sa.Integer),
    sa.Column("n_rows", sa.Integer),
    sa.Column("first_failure", sa.Text),
    sa.Column("written", sa.DateTime),
    sa.Column("data", sa.LargeBinary),
)
#: The master's latest snapshot of a running run (one row per run, replaced in place).
live = sa.Table(
    "dabc_live", _meta,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("dabc_runs.id"), primary_key=True),
    sa.Column("t", sa.Integer),
    sa.Column("epsilon", sa.Float),
    sa.Column("accepted", sa.Integer),
    sa.Column("needed", sa.Integer),
    sa.Column("evaluations", sa.BigInteger),
    sa.Column("worker_seconds", sa.Float),
    sa.Column("generation_started", sa.DateTime),
    sa.Column("updated", sa.DateTime),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("rules", sa.Text),
    sa.Column("steerable", sa.Boolean),
)
#: Steering requests and their outcome (applied is NULL until the master has read one).
events = sa.Table(
    "dabc_events", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("dabc_runs.id"), index=True),
    sa.Column("time", sa.DateTime),
    sa.Column("source", sa.Text),
    sa.Column("action", sa.String(32)),
    sa.Column("value", sa.Text),
    sa.Column("applied", sa.DateTime),
    sa.Column("outcome", sa.Text),
)


@sa.event.listens_for(runs, "after_create")
def _log_created(target, connection, **_) -> None:
    logger.info("created the dabc tables in %s", display_url(str(connection.engine.url)))
