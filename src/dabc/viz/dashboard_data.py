"""What the live dashboard shows, as plain data (no Dash, no plotting library).

:mod:`dabc.viz.dashboard` turns these numbers into a web page; they are kept apart so they
can be tested, benchmarked and reused (a notebook, another front end) without a web server.
Every function takes the database as the user named it (a path or a URL) and reads it only
through :class:`~dabc.History`: the dashboard works wherever the database is reachable,
also for a run whose master is on a cluster.

Reading little on every update
------------------------------
The page asks for an update every second, so an update must cost little also on a database
of many runs or with huge generations:

- one :class:`~dabc.History` per database URL, opened once (:func:`open_database`, which
  never creates a database) and shared by all requests; per run a light view of it that
  shares its engine (:func:`run_history`);
- the runs table is one query (:meth:`History.all_runs`) and the live rows of all runs one
  more (:meth:`History.live_states`);
- a stored generation never changes, so everything computed from its particles (the
  marginal densities, the pair densities) is cached under ``(url, run, t, ...)``
  (:data:`CACHE_SIZE` entries, least recently used dropped first) and read from the
  database once; the per-generation series are read again only when the number of stored
  generations changed.

Passwords never leave this module: every database name shown is
:func:`~dabc.storage.display_url`'s.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..engine.progress import estimate_remaining
from ..errors import InputError
from ..storage import History, database_url, display_url, has_runs_table, sqlite_path
from .weighted import (
    bandwidth_factor,
    effective_sample_size,
    normalise_weights,
    weighted_kde_1d,
    weighted_kde_2d,
)

__all__ = [
    "ARRAYS_KEPT", "BINS", "BIN_ABOVE", "CACHE_SIZE", "PAIR_KDE_LIMIT", "cache_info",
    "clear_caches", "events", "live_panel", "marginal_density", "marginals",
    "model_probabilities", "open_database", "pair", "run_history", "run_info", "runs_table",
    "series", "warm",
]

CACHE_SIZE = 256
"""How many results computed from stored generations are kept (per process)."""

BIN_ABOVE = 20_000
"""Above this many particles a marginal density is computed from :data:`BINS` bins."""

BINS = 1024
"""The bins of a large sample's marginal density (:func:`marginal_density`)."""

ARRAYS_KEPT = 4
"""How many generations' particle arrays are kept in memory (the last read)."""

PAIR_KDE_LIMIT = 5000
"""Up to this many particles :func:`pair` draws a kernel density estimate, beyond it a
histogram."""

_lock = threading.RLock()
_histories: dict[str, History] = {}
_results: OrderedDict = OrderedDict()
_arrays: OrderedDict = OrderedDict()
_warming: set = set()
_series: dict = {}
_info: dict = {}
_stats = {"hits": 0, "misses": 0}


def open_database(db: str | os.PathLike[str]) -> History:
    """The shared :class:`~dabc.History` of database ``db``; never creates a database.

    Parameters
    ----------
    db : str or os.PathLike
        A SQLite file path or a database URL.

    Returns
    -------
    History
        One per URL and process (later calls return the same object).

    Raises
    ------
    InputError
        When the SQLite file does not exist (nothing is created), is a folder, or the
        database holds no dabc tables or cannot be reached.

    Examples
    --------
    >>> open_database("runs.db").all_runs()          # doctest: +SKIP
    """
    url = database_url(db)
    with _lock:
        h = _histories.get(url)
        if h is not None:
            return h
    path = sqlite_path(url)
    if path is not None:
        if not os.path.exists(path):
            raise InputError(f"Database file {path!r} does not exist (the dashboard never "
                             "creates one). Give the path of a database a dabc run writes, "
                             "e.g. the db= of ABCSMC.run or 'dabc demo --db FILE'.")
        if os.path.isdir(path):
            raise InputError(f"{path!r} is a folder, not a database file.")
    if not has_runs_table(url):
        raise InputError(f"{display_url(url)!r} is not a dabc database (it has no dabc_runs "
                         "table).")
    h = History(url)
    with _lock:
        return _histories.setdefault(url, h)


def run_history(db: str | os.PathLike[str], run_id: int) -> History:
    """A History of run ``run_id`` that shares the database's engine, with fresh caches.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.

    Returns
    -------
    History
        A new view (cheap: no connection is opened), so concurrent requests for different
        runs never change each other's run.

    Examples
    --------
    >>> run_history("runs.db", 2).max_t                # doctest: +SKIP
    4
    """
    base = open_database(db)
    view = copy.copy(base)
    # History caches the run row and generation table per object: a fresh cache, but the
    # database-wide answer whether the live tables exist is kept (it costs a query)
    view._cache = {k: v for k, v in base._cache.items() if k == "live_tables"}
    view.id = int(run_id)
    return view


def _cached(key: tuple, compute: Callable[[], object]):
    with _lock:
        if key in _results:
            _results.move_to_end(key)
            _stats["hits"] += 1
            return _results[key]
    value = compute()
    with _lock:
        _stats["misses"] += 1
        _results[key] = value
        while len(_results) > CACHE_SIZE:
            _results.popitem(last=False)
    return value


def cache_info() -> dict:
    """Hits and misses of the generation cache, and its size.

    Returns
    -------
    dict
        ``hits``, ``misses``, ``size``.

    Examples
    --------
    >>> sorted(cache_info())
    ['hits', 'misses', 'size']
    """
    with _lock:
        return {**_stats, "size": len(_results)}


def clear_caches() -> None:
    """Forget every cached History and result (the next call reads the database again).

    Examples
    --------
    >>> clear_caches()
    """
    with _lock:
        for h in _histories.values():
            h.engine.dispose()
        _histories.clear()
        _results.clear()
        _arrays.clear()
        _series.clear()
        _info.clear()
        _stats.update(hits=0, misses=0)


def _num(v, cast=float):
    """``v`` as a plain number, None for NULL/NaN."""
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return cast(v)


def runs_table(db: str | os.PathLike[str]) -> list[dict]:
    """Every run in the database, one dict per run (two queries in all).

    Parameters
    ----------
    db : str or os.PathLike
        The database.

    Returns
    -------
    list of dict
        Ordered by id: ``id``, ``created``, ``status`` (``"interrupted"`` for a running
        run whose master stopped responding), ``generations`` (stored), ``simulations``,
        ``stop_reason``, ``alive``, ``models`` (names) and ``t`` (the generation in
        progress according to the live row, None without one) and ``live`` (the live
        state, see :meth:`History.live_state`, or None).

    Examples
    --------
    >>> [r["status"] for r in runs_table("runs.db")]    # doctest: +SKIP
    ['done', 'running']
    """
    h = open_database(db)
    frame = h.all_runs()
    if not len(frame):
        return []
    states = h.live_states()
    out = []
    for r in frame.to_dict("records"):
        rid = int(r["id"])
        state = states.get(rid)
        try:
            models = list(json.loads(r["model_names"])) if r["model_names"] else []
        except (TypeError, ValueError):
            models = []
        out.append({"id": rid, "created": r["created"], "status": r["status"],
                    "generations": int(r["generations"] or 0),
                    "simulations": int(_num(r["simulations"], int) or 0),
                    "stop_reason": r["stop_reason"] or "", "alive": bool(r["alive"]),
                    "models": models, "t": None if state is None else int(state["t"]),
                    "live": state})
    return out


def _elapsed(state: dict) -> float | None:
    started, updated = state.get("generation_started"), state.get("updated")
    if started is None or updated is None:
        return None
    return max((updated - started).total_seconds(), 0.0)


def live_panel(db: str | os.PathLike[str], run_id: int,
               state: dict | None = None) -> dict | None:
    """The generation in progress of a run, from its master's live row.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.
    state : dict, optional
        The run's live state when the caller has read it already (from
        :meth:`History.live_states`); default: read it now (one query).

    Returns
    -------
    dict or None
        None when the run has no live row (written by a dabc older than 0.2). Else the live
        state (see :meth:`History.live_state`) plus ``acceptance_rate`` (accepted /
        evaluations, None before the first evaluation), ``elapsed`` (seconds since the
        generation started, on the master's clock: its heartbeat minus the generation's
        start), ``remaining`` (seconds to the end of the generation at the
        rate so far, :func:`dabc.engine.progress.estimate_remaining`; None without a rate)
        and ``workers_busy``. The live row does not record how many workers are busy at a
        given moment; ``workers_busy`` is the *average* number of busy workers over the
        generation so far, ``worker_seconds / elapsed`` (what the progress line shows),
        None while no time has passed.

    Examples
    --------
    >>> live_panel("runs.db", 1)["accepted"]           # doctest: +SKIP
    412
    """
    if state is None:
        state = open_database(db).live_state(int(run_id))
    if state is None:
        return None
    out = dict(state)
    evals = int(state["evaluations"] or 0)
    accepted, needed = int(state["accepted"] or 0), int(state["needed"] or 0)
    out["acceptance_rate"] = accepted / evals if evals else None
    elapsed = _elapsed(state)
    out["elapsed"] = elapsed
    out["remaining"] = None if elapsed is None else estimate_remaining(accepted, needed,
                                                                       elapsed)
    seconds = state.get("worker_seconds")
    out["workers_busy"] = (float(seconds) / elapsed if elapsed and seconds is not None
                           else None)
    return out


def run_info(db: str | os.PathLike[str], run_id: int) -> dict:
    """A run's fixed facts: model names, parameter names, population size (cached).

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.

    Returns
    -------
    dict
        ``id``, ``models`` (names), ``params`` (one list of names per model),
        ``population_size``, ``database`` (the name to show: never a password).

    Raises
    ------
    InputError
        When there is no such run.

    Examples
    --------
    >>> run_info("runs.db", 1)["params"]                # doctest: +SKIP
    [['mu', 'sigma']]
    """
    key = (database_url(db), int(run_id))
    with _lock:
        if key in _info:
            return _info[key]
    h = run_history(db, run_id)
    models, params = h.model_names, h.param_names  # an InputError for a missing run
    runs = h.all_runs().set_index("id")
    info = {"id": int(run_id), "models": models, "params": params,
            "population_size": int(runs.loc[int(run_id), "population_size"]),
            "database": display_url(key[0])}
    with _lock:
        _info[key] = info
    return info


def series(db: str | os.PathLike[str], run_id: int, generations: int | None = None) -> dict:
    """The per-generation numbers of a run: epsilon, simulations, ESS, acceptance rate.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.
    generations : int, optional
        The number of stored generations, when the caller knows it (from
        :func:`runs_table`): the table is then read again only when it changed.

    Returns
    -------
    dict
        Lists, one entry per stored generation: ``t``, ``epsilon``, ``samples`` (the
        simulations of the generation), ``ess`` (as stored with the generation),
        ``acceptance_rate``, ``walltime_s``; and ``model_probabilities`` (a list per
        model).

    Examples
    --------
    >>> series("runs.db", 1)["epsilon"][:2]            # doctest: +SKIP
    [2.31, 1.2]
    """
    key = (database_url(db), int(run_id))
    with _lock:
        hit = _series.get(key)
    if hit is not None and generations is not None and hit[0] == generations:
        return hit[1]
    h = run_history(db, run_id)
    g = h.get_all_populations()
    probs = h.get_model_probabilities()
    out = {"t": [int(t) for t in g["t"]],
           "epsilon": [_num(v) for v in g["epsilon"]],
           "samples": [_num(v, int) for v in g["n_simulations"]],
           "ess": [_num(v) for v in g["ess"]],
           "acceptance_rate": [_num(v) for v in g["acceptance_rate"]],
           "walltime_s": [_num(v) for v in g["walltime_s"]],
           "model_probabilities": [[float(v) for v in probs.iloc[:, m]]
                                   for m in range(probs.shape[1])]}
    with _lock:
        _series[key] = (len(out["t"]), out)
    return out


def model_probabilities(db: str | os.PathLike[str], run_id: int,
                        generations: int | None = None) -> dict:
    """Model probabilities per generation.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.
    generations : int, optional
        As for :func:`series` (whose table this reuses).

    Returns
    -------
    dict
        ``t`` (list), ``models`` (names) and ``probabilities`` (one list per model).

    Examples
    --------
    >>> model_probabilities("runs.db", 1)["models"]    # doctest: +SKIP
    ['narrow', 'wide']
    """
    s = series(db, run_id, generations)
    return {"t": s["t"], "models": run_info(db, run_id)["models"],
            "probabilities": s["model_probabilities"]}


def _generation(db, run_id: int, t: int, m: int) -> dict | None:
    """Generation ``t``'s particles of model ``m`` (theta, normalised weights), or None.

    The last few generations read are kept (:data:`ARRAYS_KEPT`), so the marginals and the
    pair of one generation read its particles once.
    """
    key = (database_url(db), int(run_id), int(t), int(m))
    with _lock:
        if key in _arrays:
            _arrays.move_to_end(key)
            return _arrays[key]
    h = run_history(db, run_id)
    if t < 0 or t > h.max_t:
        raise InputError(f"Run {run_id} has no stored generation {t} (stored: 0 to "
                         f"{h.max_t}).")
    arrays = h.get_arrays(t, m).get(int(m))
    if arrays is None or not len(arrays["weight"]):
        gen = None
    else:
        gen = {"theta": np.asarray(arrays["theta"], dtype=float),
               "weight": normalise_weights(arrays["weight"])}
    with _lock:
        _arrays[key] = gen
        while len(_arrays) > ARRAYS_KEPT:
            _arrays.popitem(last=False)
    return gen


def warm(db: str | os.PathLike[str], run_id: int, t: int, m: int = 0) -> None:
    """Compute generation ``t``'s marginals (and the pair of its first two parameters) in a
    background thread, so the page's first look at a new generation is a cache hit.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.
    t : int
        A stored generation.
    m : int, default 0
        The model.

    Examples
    --------
    >>> warm("runs.db", 1, 3)                          # doctest: +SKIP
    """
    key = (database_url(db), int(run_id), int(t), int(m))
    with _lock:
        if key in _warming:
            return
        _warming.add(key)

    def work():
        try:
            marginals(db, run_id, t, m)
            names = run_info(db, run_id)["params"][int(m)]
            if len(names) >= 2:
                pair(db, run_id, t, names[0], names[1], m)
        except InputError:
            pass  # e.g. a damaged generation: the page shows the error when asked
        finally:
            with _lock:
                _warming.discard(key)

    threading.Thread(target=work, name="dabc-dashboard-warm", daemon=True).start()


def marginal_density(x: np.ndarray, w: np.ndarray, ess: float | None = None,
                     num: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dabc.viz.weighted.weighted_kde_1d` of ``x``, pre-binned above
    :data:`BIN_ABOVE` values.

    A large sample is first spread linearly onto :data:`BINS` points by one ``bincount``
    (no matrix product: on a busy machine the multi-threaded BLAS products of the direct
    path on 100,000 values took most of the time), then estimated from those points with
    the bandwidth of the *particles* (Kish's ESS of ``w``, not of the bins) and their grid
    (the bins span the sample's range exactly). The difference to the direct estimate is
    of the order ``(bin width / bandwidth) ** 2`` (tested below 1e-3 of the peak).

    Parameters
    ----------
    x : numpy.ndarray
        The values.
    w : numpy.ndarray
        Normalised weights.
    ess : float, optional
        Kish's ESS of ``w`` (computed when not given).
    num : int, default 200
        Grid points.

    Returns
    -------
    grid, density : numpy.ndarray
        As :func:`~dabc.viz.weighted.weighted_kde_1d` returns them.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> grid, dens = marginal_density(rng.normal(size=50_000), np.full(50_000, 2e-5))
    >>> round(float(np.trapezoid(dens, grid)), 2)
    1.0
    """
    if len(x) <= BIN_ABOVE:
        return weighted_kde_1d(x, w, numx=num)
    ess = effective_sample_size(w) if ess is None else ess
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return weighted_kde_1d(x[:1], w[:1], numx=num)
    pos = (x - lo) * ((BINS - 1) / (hi - lo))
    i = np.minimum(pos.astype(np.int64), BINS - 2)
    f = pos - i
    mass = np.bincount(i, w * (1 - f), BINS) + np.bincount(i + 1, w * f, BINS)
    centres = np.linspace(lo, hi, BINS)
    keep = mass > 0
    factor = bandwidth_factor(ess, 1)
    return weighted_kde_1d(centres[keep], mass[keep], numx=num, bandwidth=factor)


def marginals(db: str | os.PathLike[str], run_id: int, t: int, m: int = 0,
              num: int = 200) -> dict:
    """The weighted marginal density of every parameter of model ``m`` in generation ``t``.

    Computed once per stored generation (cached, see the module docstring) with
    :func:`dabc.viz.weighted.weighted_kde_1d`.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.
    t : int
        A stored generation.
    m : int, default 0
        The model.
    num : int, default 200
        Grid points per parameter.

    Returns
    -------
    dict
        ``t``, ``m``, ``n`` (particles of the model), ``ess`` (Kish's, of the model's
        weights) and ``params``: parameter name to ``{"x": grid, "density": values,
        "mean": weighted mean}`` (lists). ``n`` is 0 and ``params`` empty when the model has
        no particle in that generation.

    Raises
    ------
    InputError
        When generation ``t`` is not stored.

    Examples
    --------
    >>> d = marginals("runs.db", 1, t=3)                # doctest: +SKIP
    >>> d["params"]["mu"]["x"][:2]                      # doctest: +SKIP
    [-0.52, -0.49]
    """
    key = (database_url(db), int(run_id), int(t), int(m), "marginals", int(num))

    def compute():
        names = run_info(db, run_id)["params"][int(m)]
        gen = _generation(db, run_id, int(t), int(m))
        if gen is None:
            return {"t": int(t), "m": int(m), "n": 0, "ess": 0.0, "params": {}}
        theta, w = gen["theta"], gen["weight"]
        ess = effective_sample_size(w)
        params = {}
        for j, name in enumerate(names):
            x = np.ascontiguousarray(theta[:, j])
            grid, dens = marginal_density(x, w, ess, num)
            params[name] = {"x": grid.tolist(), "density": dens.tolist(),
                            "mean": float(np.sum(w * x))}
        return {"t": int(t), "m": int(m), "n": len(w), "ess": ess, "params": params}

    return _cached(key, compute)


def pair(db: str | os.PathLike[str], run_id: int, t: int, x: str, y: str, m: int = 0,
         bins: int = 40, method: str = "auto") -> dict:
    """The weighted joint density of two parameters of model ``m`` in generation ``t``.

    A weighted kernel density estimate (:func:`dabc.viz.weighted.weighted_kde_2d`) for up
    to :data:`PAIR_KDE_LIMIT` particles, else a weighted 2-d histogram: one pass over the
    particles also for 100,000 of them, where a kernel estimate would take most of a
    second, and enough particles to fill the bins. Cached like :func:`marginals`.

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.
    t : int
        A stored generation.
    x, y : str
        Two parameter names of model ``m``.
    m : int, default 0
        The model.
    bins : int, default 40
        Grid points (KDE) or bins (histogram) along each axis.
    method : {"auto", "kde", "histogram"}, default "auto"
        Force one of the two.

    Returns
    -------
    dict
        ``x``, ``y`` (grid points or bin centres), ``density`` (``bins x bins`` lists,
        ``density[j][i]`` at ``(x[i], y[j])``; a histogram integrates to 1 exactly, a KDE
        to 1 up to the mass beyond its grid), ``method`` (``"kde"`` or ``"histogram"``),
        ``t``, ``m``, ``names`` ``(x, y)``; ``density`` is empty when the model has no
        particle in that generation.

    Raises
    ------
    InputError
        When generation ``t`` is not stored, a name is not a parameter of model ``m``, or
        ``method`` is unknown.

    Examples
    --------
    >>> pair("runs.db", 1, 3, "mu", "sigma")["method"]             # doctest: +SKIP
    'kde'
    """
    if method not in ("auto", "kde", "histogram"):
        raise InputError(f"method must be 'auto', 'kde' or 'histogram', not {method!r}.")
    key = (database_url(db), int(run_id), int(t), int(m), "pair", x, y, int(bins), method)

    def compute():
        names = run_info(db, run_id)["params"][int(m)]
        for name in (x, y):
            if name not in names:
                raise InputError(f"{name!r} is not a parameter of model {m} of run {run_id}; "
                                 f"its parameters are {', '.join(names)}.")
        empty = {"x": [], "y": [], "density": [], "method": method, "t": int(t),
                 "m": int(m), "names": (x, y)}
        gen = _generation(db, run_id, int(t), int(m))
        if gen is None:
            return empty
        theta, w = gen["theta"], gen["weight"]
        a, b = theta[:, names.index(x)], theta[:, names.index(y)]
        kind = method if method != "auto" else \
            ("kde" if len(w) <= PAIR_KDE_LIMIT else "histogram")
        base = {"method": kind, "t": int(t), "m": int(m), "names": (x, y)}
        if kind == "kde":
            gx, gy, dens = weighted_kde_2d(a, b, w, numx=int(bins), numy=int(bins))
            return {"x": gx.tolist(), "y": gy.tolist(), "density": dens.tolist(), **base}
        cx, cy, dens = _histogram_2d(a, b, w, int(bins))
        return {"x": cx.tolist(), "y": cy.tolist(), "density": dens.tolist(), **base}

    return _cached(key, compute)


def _histogram_2d(a: np.ndarray, b: np.ndarray, w: np.ndarray, bins: int):
    """Bin centres and the density (rows y, columns x) of a weighted 2-d histogram.

    ``numpy.histogram2d`` with equal bins, by one ``bincount`` (it searches the bin edges
    instead: several times slower on 100,000 points). The maximum falls in the last bin.
    """
    (lo_a, hi_a), (lo_b, hi_b) = _span(a), _span(b)
    da, db_ = (hi_a - lo_a) / bins, (hi_b - lo_b) / bins
    i = np.minimum(((a - lo_a) / da).astype(np.int64), bins - 1)
    j = np.minimum(((b - lo_b) / db_).astype(np.int64), bins - 1)
    mass = np.bincount(j * bins + i, weights=w, minlength=bins * bins)
    dens = mass.reshape(bins, bins) / (w.sum() * da * db_)
    return lo_a + da * (np.arange(bins) + 0.5), lo_b + db_ * (np.arange(bins) + 0.5), dens


def _span(v: np.ndarray) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:  # one value: a small interval around it
        pad = max(abs(lo), 1.0) * 1e-3
        return lo - pad, hi + pad
    return lo, hi


def events(db: str | os.PathLike[str], run_id: int) -> list[dict]:
    """The run's steering log (requests from the dashboard or elsewhere and their outcome).

    Parameters
    ----------
    db : str or os.PathLike
        The database.
    run_id : int
        The run.

    Returns
    -------
    list of dict
        Oldest first: ``id``, ``time``, ``source``, ``action``, ``value``, ``applied``
        (None while pending) and ``outcome`` (see :meth:`History.events`).

    Examples
    --------
    >>> events("runs.db", 1)[0]["outcome"]             # doctest: +SKIP
    'stopping after generation 4'
    """
    frame = open_database(db).events(int(run_id))
    out = []
    for r in frame.to_dict("records"):
        applied = r["applied"]
        value = r["value"]
        if isinstance(value, float) and math.isnan(value):
            value = None
        out.append({**r, "applied": None if applied is None or pd.isna(applied) else applied,
                    "value": value})
    return out
