"""The master's live state and the steering log, in the run's own database.

A dashboard, ``dabc info`` or a notebook may run far from the master (on a login node, a
laptop with a tunnel to PostgreSQL, or beside a SQLite file on a shared disk). They can
only see what the master writes into the database, so the master keeps one row per run in
``dabc_live`` up to date: the generation in progress, accepted/needed, evaluations, the
worker seconds spent, its stopping rules, and ``updated``, its heartbeat (written at least
every :data:`HEARTBEAT` seconds while it runs, see :class:`dabc.engine.live.LiveRecorder`).

Liveness rule: a run whose status is ``"running"`` is *alive* while its heartbeat is at
most :data:`LIVE_TIMEOUT` seconds old (override with the environment variable
``DABC_LIVE_TIMEOUT``). Once it is older, the master is taken to be dead (killed, out of
memory, its node lost): :meth:`History.all_runs` reports the run as ``"interrupted"``
(``"master stopped responding at ..."``), without writing anything, so a master that was
only paused and comes back is shown as running again. The heartbeat is the master's clock
(naive UTC) compared with the reader's, so the two machines' clocks must agree to within a
few seconds (NTP does that on clusters).

Steering goes the other way: :func:`request_control` appends a row to ``dabc_events``
(validated here, so a bad request fails where it is made, with a clear message); the master
reads its pending rows after each stored generation, applies them and writes back when and
with what outcome (:func:`pending_controls`, :func:`mark_applied`). The rows stay: they are
the run's steering log (:func:`events_frame`).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from ..errors import InputError
from .schema import events, live, runs

__all__ = ["ACTIONS", "HEARTBEAT", "LIVE_TIMEOUT", "RULES", "live_timeout", "validate_control"]

#: Seconds without a heartbeat after which a "running" run's master is taken to be dead.
LIVE_TIMEOUT: float = 10.0
#: Seconds between two heartbeats of a running master (at most).
HEARTBEAT: float = 2.0
#: The stopping rules a live row reports (``rules``), in this order.
RULES = ("max_generations", "minimum_epsilon", "max_total_simulations", "max_walltime",
         "min_acceptance_rate", "min_eps_diff")
#: What :func:`request_control` accepts: a stop, or a new value of one of three rules.
ACTIONS = ("stop", "max_generations", "minimum_epsilon", "max_total_simulations")

_COLUMNS = ("t", "epsilon", "accepted", "needed", "evaluations", "worker_seconds",
            "generation_started", "updated", "host", "pid", "rules", "steerable")


def live_timeout() -> float:
    """The liveness timeout in seconds: ``$DABC_LIVE_TIMEOUT`` when set, else
    :data:`LIVE_TIMEOUT`.

    Returns
    -------
    float
        Seconds.

    Raises
    ------
    InputError
        When ``DABC_LIVE_TIMEOUT`` is not a positive number.

    Examples
    --------
    >>> live_timeout() > 0
    True
    """
    text = os.environ.get("DABC_LIVE_TIMEOUT")
    if not text:
        return LIVE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise InputError(f"DABC_LIVE_TIMEOUT={text!r} is not a positive number of seconds; "
                         "unset it or give e.g. DABC_LIVE_TIMEOUT=10.")
    return value


def now_utc() -> datetime:
    """The current time as naive UTC, the way every dabc table stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


def _integer(action: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not float(value).is_integer() or value < minimum:
        raise InputError(f"{action} must be a whole number >= {minimum}, not {value!r}; "
                         f"e.g. request_control({action!r}, {max(minimum, 5)}).")
    return int(value)


def validate_control(action: str, value=None) -> int | float | None:
    """Check a steering request and return its value in stored form.

    Parameters
    ----------
    action : str
        ``"stop"`` (after the generation in progress), ``"max_generations"`` (a whole
        number >= 1: the run stops once that many generations are stored),
        ``"minimum_epsilon"`` (a number >= 0) or ``"max_total_simulations"`` (a whole
        number >= 1, or None for no limit).
    value : int, float or None
        The new value (None for ``"stop"``).

    Returns
    -------
    int, float or None
        The value as the master will apply it.

    Raises
    ------
    InputError
        When the action is unknown or the value has the wrong type or range.

    Examples
    --------
    >>> validate_control("max_generations", 5.0)
    5
    >>> validate_control("stop")
    """
    if action not in ACTIONS:
        raise InputError(f"Unknown steering action {action!r}; use one of "
                         f"{', '.join(map(repr, ACTIONS))}.")
    if action == "stop":
        if value is not None:
            raise InputError(f"'stop' takes no value (got {value!r}); call "
                             "request_control('stop').")
        return None
    if action == "max_generations":
        return _integer(action, value, 1)
    if action == "max_total_simulations":
        return None if value is None else _integer(action, value, 1)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value < 0:
        raise InputError(f"minimum_epsilon must be a finite number >= 0, not {value!r}; "
                         "e.g. request_control('minimum_epsilon', 0.05).")
    return float(value)


def _state(row, now: datetime, timeout: float) -> dict:
    d = {"run_id": int(row["run_id"])}
    for col in _COLUMNS:
        d[col] = row[col]
    d["rules"] = json.loads(row["rules"]) if row["rules"] else {}
    d["steerable"] = bool(row["steerable"])
    d["status"] = row["status"]
    d["alive"] = row["status"] == "running" and row["updated"] is not None and \
        (now - row["updated"]).total_seconds() <= timeout
    return d


def live_query(run_id: int | None = None):
    """The SELECT of ``dabc_live`` rows with their run's stored status (one run, or all
    when ``run_id`` is None)."""
    q = sa.select(live, runs.c.status).select_from(live.join(runs, runs.c.id == live.c.run_id))
    return q if run_id is None else q.where(live.c.run_id == run_id)


def states_from_rows(rows, now: datetime | None = None) -> dict[int, dict]:
    """The live-state dicts (see :meth:`History.live_state`) of ``dabc_live`` rows."""
    now = now or now_utc()
    timeout = live_timeout()
    return {int(r["run_id"]): _state(r, now, timeout) for r in rows}


def write_live(engine: sa.Engine, run_id: int, snapshot: dict) -> None:
    """Replace the run's ``dabc_live`` row by ``snapshot`` (insert it the first time).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The run's database.
    run_id : int
        The run.
    snapshot : dict
        Values for the columns of ``dabc_live`` (``rules`` a dict); ``updated`` defaults
        to now.
    """
    values = {k: snapshot[k] for k in _COLUMNS if k in snapshot}
    if "rules" in values:
        values["rules"] = json.dumps(values["rules"])
    values.setdefault("updated", now_utc())
    with engine.begin() as c:
        res = c.execute(live.update().where(live.c.run_id == run_id).values(**values))
        if not res.rowcount:
            c.execute(live.insert().values(run_id=run_id, **values))


def check_steerable(run_row: dict, state: dict | None, action: str, url: str) -> None:
    """Raise InputError unless the run can take ``action`` now (see :func:`request_control`)."""
    rid = run_row["id"]
    if run_row["status"] != "running":
        raise InputError(f"Run {rid} in {url} is not running (status {run_row['status']!r}"
                         f"{': ' + run_row['stop_reason'] if run_row['stop_reason'] else ''}); "
                         "only a running run can be steered. To go on with it, resume it "
                         f"(dabc resume ... --run {rid}) with the new stopping rules.")
    if state is None:
        raise InputError(f"Run {rid} in {url} has no live state: its master writes none (a "
                         "dabc older than 0.2, or it has not started yet), so it cannot be "
                         "steered. Try again in a few seconds.")
    if not state["alive"]:
        raise InputError(f"Run {rid} in {url} is not running: its master stopped responding "
                         f"at {state['updated']:%Y-%m-%d %H:%M:%S} UTC (interrupted). Resume it "
                         f"with dabc resume ... --run {rid}.")
    if action != "stop" and not state["steerable"]:
        raise InputError(f"Run {rid} in {url} does not permit changing its stopping rules (it "
                         "was started with steering=False); it can still be stopped with "
                         "request_control('stop').")


def insert_event(engine: sa.Engine, run_id: int, action: str, value, source: str) -> int:
    """Append a pending steering request; returns its id."""
    with engine.begin() as c:
        return int(c.execute(events.insert().values(
            run_id=run_id, time=now_utc(), source=str(source or ""), action=action,
            value=json.dumps(value), applied=None, outcome=None)).inserted_primary_key[0])


#: One statement object for every call (read once per generation): its cache key is
#: computed once and its compiled form is reused by the engine.
_PENDING = (sa.select(events.c.id, events.c.time, events.c.source, events.c.action,
                      events.c.value)
            .where(events.c.run_id == sa.bindparam("rid"), events.c.applied.is_(None))
            .order_by(events.c.id))


def pending_controls(engine: sa.Engine, run_id: int) -> list[dict]:
    """The run's steering requests not applied yet, oldest first.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The run's database.
    run_id : int
        The run.

    Returns
    -------
    list of dict
        ``id``, ``time``, ``source``, ``action``, ``value`` (decoded) per request.
    """
    with engine.connect() as c:
        rows = c.execute(_PENDING, {"rid": int(run_id)}).mappings().all()
    return [{**dict(r), "value": json.loads(r["value"]) if r["value"] else None} for r in rows]


def mark_applied(engine: sa.Engine, event_id: int, outcome: str) -> None:
    """Record that the master has handled request ``event_id``, and how (``outcome``)."""
    with engine.begin() as c:
        c.execute(events.update().where(events.c.id == event_id)
                  .values(applied=now_utc(), outcome=outcome))


def events_query(run_id: int):
    """The SELECT of a run's steering log, oldest first."""
    return sa.select(events.c.id, events.c.time, events.c.source, events.c.action,
                     events.c.value, events.c.applied, events.c.outcome) \
        .where(events.c.run_id == run_id).order_by(events.c.id)


def events_frame(rows) -> pd.DataFrame:
    """The steering log as a DataFrame (``value`` decoded from JSON)."""
    cols = ["id", "time", "source", "action", "value", "applied", "outcome"]
    df = pd.DataFrame([dict(r) for r in rows], columns=cols)
    df["value"] = pd.Series([json.loads(v) if v else None for v in df["value"]], index=df.index,
                            dtype=object)  # ints stay ints, None stays None
    return df


def runs_with_liveness(frame: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """Add ``alive`` to :meth:`History.all_runs`' table and show dead masters' runs as
    ``"interrupted"``.

    ``frame`` has the columns of the runs query plus ``updated`` (the heartbeat, NaT when
    the run has no live row). A ``"running"`` run whose heartbeat is older than
    :func:`live_timeout` gets status ``"interrupted"`` and the stop reason "master stopped
    responding at <time> (no heartbeat for N s)"; one without any live row keeps its status.
    """
    if not len(frame):
        return frame
    now = now or now_utc()
    timeout = live_timeout()
    alive, status, reason = [], list(frame["status"]), list(frame["stop_reason"])
    for i, updated in enumerate(frame["updated"]):
        if updated is None or pd.isna(updated):
            alive.append(False)
            continue
        age = (now - pd.Timestamp(updated).to_pydatetime()).total_seconds()
        alive.append(status[i] == "running" and age <= timeout)
        if status[i] == "running" and age > timeout:
            status[i] = "interrupted"
            reason[i] = (f"master stopped responding at {pd.Timestamp(updated):%Y-%m-%d %H:%M:%S}"
                         f" UTC (no heartbeat for {age:.0f} s)")
    frame = frame.copy()
    frame["status"], frame["stop_reason"], frame["alive"] = status, reason, alive
    return frame


def runs_query(generations: sa.Table, with_live: bool):
    """The one SELECT behind :meth:`History.all_runs` (with the heartbeat when the database
    has the live table)."""
    g = generations
    cols = [runs.c.id, runs.c.created, runs.c.status, runs.c.stop_reason,
            runs.c.population_size, runs.c.model_names,
            sa.func.count(g.c.t).label("generations"),
            sa.func.sum(g.c.n_simulations).label("simulations"),
            sa.func.min(g.c.epsilon).label("last_epsilon")]
    join = runs.outerjoin(g, g.c.run_id == runs.c.id)
    group = [runs.c.id]
    if with_live:
        cols.append(live.c.updated)
        join = join.outerjoin(live, live.c.run_id == runs.c.id)
        group.append(live.c.updated)
    return sa.select(*cols).select_from(join).group_by(*group).order_by(runs.c.id)

