"""How a run went, generation by generation: thresholds, cost, acceptance, ESS, time, models,
intervals and the adaptive distance's weights.

Why these plots
---------------
They answer the questions a user asks of a run before trusting its posterior: did epsilon
keep falling or stall (:func:`plot_epsilons`), what did each generation cost
(:func:`plot_sample_numbers`, :func:`plot_walltime`), did acceptance collapse
(:func:`plot_acceptance_rates`), did the weights degenerate
(:func:`plot_effective_sample_sizes`), did the posterior stop moving
(:func:`plot_credible_intervals`), which model wins (:func:`plot_model_probabilities`) and how
the adaptive distance re-weighted the statistics (:func:`plot_distance_weights`). The names
are those of pyABC's ``pyabc.visualization`` where the concept is the same.

Every function takes one :class:`~dabc.History` or a list of them (one line per run, labelled
``labels`` or ``"run <id>"``), draws into ``ax`` or a new figure, and returns what it drew
into. Everything is read from the database through the History's public readers; nothing
stored as code is ever unpickled (the distance weights are read from the run's JSON state
with ``trust=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..engine.config import load_observed, load_state, read_config
from ..engine.model import StatLayout
from ..errors import InputError
from ..storage import History
from ._common import (
    as_runs,
    axes,
    check_model,
    colour,
    finish,
    generation_axis,
    pyplot,
    readable_log_axis,
)
from .weighted import weighted_credible_interval

__all__ = [
    "distance_weights", "plot_acceptance_rates", "plot_credible_intervals",
    "plot_distance_weights", "plot_effective_sample_sizes", "plot_epsilons",
    "plot_model_probabilities", "plot_sample_numbers", "plot_walltime", "walltimes",
]

Runs = History | Sequence[History]


def _trajectory(histories: Runs, column, ylabel: str, title: str, labels, ax, yscale: str,
                transform=None):
    runs = as_runs(histories, labels)
    ax = axes(ax)
    for i, (h, label) in enumerate(runs):
        g = h.get_all_populations()
        y = column(h, g) if callable(column) else g[column].to_numpy(dtype=float)
        if transform is not None:
            y = transform(h, y)
        t = g["t"].to_numpy()
        finite = np.isfinite(y)  # generation 0's epsilon is inf: it accepts every draw
        ax.plot(t[finite], y[finite], "o-", color=colour(i), label=label)
    ax.set_yscale(yscale)
    if yscale == "log":
        readable_log_axis(ax)
    generation_axis(ax)
    finish(ax, runs, "generation t", ylabel, title)
    return ax


def plot_epsilons(histories: Runs, labels: Sequence[str] | None = None, ax=None,
                  yscale: str = "log"):
    """The acceptance threshold epsilon of each generation.

    Generation 0 usually has no threshold (``epsilon = inf``: every draw from the prior is
    accepted); a non-finite epsilon is left out of the line.

    Parameters
    ----------
    histories : History or list of History
        The run(s); one line each.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    yscale : str, default "log"
        The y axis scale (``"linear"`` or ``"log"``).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; line ``i`` holds run ``i``'s ``t`` and ``epsilon`` (the
        generations with a finite epsilon).

    Examples
    --------
    >>> import dabc.viz                                        # doctest: +SKIP
    >>> ax = dabc.viz.plot_epsilons(dabc.History("runs.db"))   # doctest: +SKIP
    """
    return _trajectory(histories, "epsilon", "epsilon", "Acceptance threshold", labels, ax,
                       yscale)


def plot_sample_numbers(histories: Runs, labels: Sequence[str] | None = None, ax=None,
                        yscale: str = "linear"):
    """The simulations each generation needed (``n_simulations``).

    Parameters
    ----------
    histories : History or list of History
        The run(s); one line each.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    yscale : str, default "linear"
        The y axis scale.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.

    Examples
    --------
    >>> ax = dabc.viz.plot_sample_numbers([h1, h2], labels=["a", "b"])  # doctest: +SKIP
    """
    return _trajectory(histories, "n_simulations", "simulations", "Simulations per generation",
                       labels, ax, yscale)


def plot_acceptance_rates(histories: Runs, labels: Sequence[str] | None = None, ax=None,
                          yscale: str = "log"):
    """The acceptance rate of each generation (accepted / simulated).

    Parameters
    ----------
    histories : History or list of History
        The run(s); one line each.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    yscale : str, default "log"
        The y axis scale.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.

    Examples
    --------
    >>> ax = dabc.viz.plot_acceptance_rates(history)   # doctest: +SKIP
    """
    return _trajectory(histories, "acceptance_rate", "acceptance rate", "Acceptance rate",
                       labels, ax, yscale)


def plot_effective_sample_sizes(histories: Runs, labels: Sequence[str] | None = None, ax=None,
                                relative: bool = False, yscale: str = "linear"):
    """Kish's effective sample size of each generation's weights.

    Parameters
    ----------
    histories : History or list of History
        The run(s); one line each.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    relative : bool, default False
        Divide by the number of accepted particles (1 means equal weights).
    yscale : str, default "linear"
        The y axis scale.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.

    Examples
    --------
    >>> ax = dabc.viz.plot_effective_sample_sizes(history, relative=True)  # doctest: +SKIP
    """
    def column(h, g):
        ess = g["ess"].to_numpy(dtype=float)
        return ess / g["n_accepted"].to_numpy(dtype=float) if relative else ess

    return _trajectory(histories, column, "ESS / population" if relative else "ESS",
                       "Effective sample size", labels, ax, yscale)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def walltimes(history: History) -> np.ndarray:
    """The wall time of each stored generation, in seconds.

    The stored ``walltime_s``; where that is missing, ``finished - started``.

    Parameters
    ----------
    history : History
        The run.

    Returns
    -------
    numpy.ndarray
        One value per generation, in ``t`` order.

    Examples
    --------
    >>> walltimes(history)          # doctest: +SKIP
    array([0.21, 0.35, 0.62])
    """
    g = history.get_all_populations()
    wall = g["walltime_s"].to_numpy(dtype=float)
    if len(g) and np.isnan(wall).any():
        span = (g["finished"] - g["started"]).dt.total_seconds().to_numpy(dtype=float)
        wall = np.where(np.isnan(wall), span, wall)
    return wall


def plot_walltime(histories: Runs, labels: Sequence[str] | None = None, ax=None,
                  unit: str = "s", cumulative: bool = False):
    """The wall time of each generation (or the running total).

    Parameters
    ----------
    histories : History or list of History
        The run(s); one line each.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    unit : {"s", "m", "h", "d"}, default "s"
        Seconds, minutes, hours or days.
    cumulative : bool, default False
        Plot the time since the run's first generation started, at the end of each.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into.

    Raises
    ------
    InputError
        For an unknown unit.

    Examples
    --------
    >>> ax = dabc.viz.plot_walltime(history, unit="m")   # doctest: +SKIP
    """
    if unit not in _UNITS:
        raise InputError(f"unit must be one of {', '.join(_UNITS)}, not {unit!r}.")

    def column(h, g):
        wall = walltimes(h) / _UNITS[unit]
        return np.cumsum(wall) if cumulative else wall

    return _trajectory(histories, column, f"{'total ' if cumulative else ''}wall time ({unit})",
                       "Wall time" + (" (cumulative)" if cumulative else " per generation"),
                       labels, ax, "linear")


def plot_model_probabilities(histories: Runs, labels: Sequence[str] | None = None, ax=None):
    """Each model's posterior probability over the generations.

    One line per model, labelled with the model's name; with several runs, the runs differ
    in line style and the label is ``"<run label>: <model>"``.

    Parameters
    ----------
    histories : History or list of History
        The run(s).
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into; for run ``r`` and model ``m`` a line of ``t`` against
        ``History.get_model_probabilities().iloc[:, m]``.

    Examples
    --------
    >>> ax = dabc.viz.plot_model_probabilities(history)   # doctest: +SKIP
    """
    runs = as_runs(histories, labels)
    ax = axes(ax)
    styles = ["-", "--", ":", "-."]
    for r, (h, label) in enumerate(runs):
        probs = h.get_model_probabilities()
        for m, name in enumerate(h.model_names):
            text = name if label is None else f"{label}: {name}"
            ax.plot(probs.index.to_numpy(), probs.iloc[:, m].to_numpy(dtype=float), marker="o",
                    linestyle=styles[r % len(styles)], color=colour(m), label=text)
    ax.set_ylim(-0.03, 1.03)
    generation_axis(ax)
    finish(ax, runs, "generation t", "model probability", "Model probabilities")
    return ax


def _as_levels(levels) -> list[float]:
    levs = sorted({float(v) for v in (levels if isinstance(levels, Sequence) else [levels])},
                  reverse=True)
    if not levs or any(not 0 < v < 1 for v in levs):
        raise InputError(f"levels must be probabilities between 0 and 1, not {levels!r}.")
    return levs


def plot_credible_intervals(histories: Runs, m: int = 0, par_names: Sequence[str] | None = None,
                            levels: float | Sequence[float] = (0.5, 0.95),
                            refval: dict[str, float] | None = None,
                            labels: Sequence[str] | None = None, ax=None,
                            show_mean: bool = True):
    """Weighted central credible intervals of each parameter over the generations.

    One panel per parameter; per generation a bar for each level (the widest thinnest) and a
    point at the weighted mean. Several runs are drawn side by side, slightly shifted.

    Parameters
    ----------
    histories : History or list of History
        The run(s).
    m : int, default 0
        The model.
    par_names : list of str, optional
        The parameters; default all of model ``m``.
    levels : float or list of float, default (0.5, 0.95)
        The intervals' probabilities (:func:`~dabc.viz.weighted.weighted_credible_interval`).
    refval : dict, optional
        Reference values (e.g. the truth) by parameter, drawn as dashed lines.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes or sequence of them, optional
        One per parameter; default a new figure with one row per parameter.
    show_mean : bool, default True
        Mark the weighted mean.

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        One per parameter. In each, run ``r``'s bars for level ``levels[k]`` are the
        ``LineCollection`` labelled (gid) ``"ci <r> <level>"``.

    Raises
    ------
    InputError
        For an unknown parameter, bad levels, or ``ax`` of the wrong length.

    Examples
    --------
    >>> axs = dabc.viz.plot_credible_intervals(history, refval={"mu": 0.9})  # doctest: +SKIP
    """
    runs = as_runs(histories, labels)
    levs = _as_levels(levels)
    for h, _ in runs:
        check_model(h, m)
    names = list(par_names) if par_names is not None else runs[0][0].param_names[m]
    for h, _ in runs:
        unknown = set(names) - set(h.param_names[m])
        if unknown:
            raise InputError(f"Run {h.id} model {m} has no parameter {sorted(unknown)}; it has "
                             f"{', '.join(h.param_names[m])}.")
    if ax is None:
        _, axs = pyplot().subplots(len(names), 1, figsize=(6.0, 2.4 * len(names) + 0.6),
                                   sharex=True, squeeze=False)
        axs = axs[:, 0]
    else:
        axs = np.atleast_1d(np.asarray(ax, dtype=object))
        if len(axs) != len(names):
            raise InputError(f"ax holds {len(axs)} Axes for {len(names)} parameters.")
    width = 0.6 / len(runs)
    for r, (h, label) in enumerate(runs):
        ts, cis, means = [], {lev: [] for lev in levs}, []
        for t in h.get_all_populations()["t"].to_numpy():
            params, w = h.get_distribution(m=m, t=int(t))
            if not len(w):
                continue  # the model died out
            ts.append(int(t))
            for lev in levs:
                cis[lev].append([weighted_credible_interval(params[n].to_numpy(), w, lev)
                                 for n in names])
            means.append([float(w @ params[n].to_numpy()) for n in names])
        x = np.asarray(ts, float) + (r - (len(runs) - 1) / 2) * width
        for j, a in enumerate(axs):
            for k, lev in enumerate(levs):
                if not ts:
                    continue
                lo_hi = np.asarray(cis[lev])[:, j, :]
                coll = a.vlines(x, lo_hi[:, 0], lo_hi[:, 1], color=colour(r),
                                linewidth=1.5 + 2.5 * k, alpha=0.45 + 0.55 * k / max(len(levs), 2),
                                label=(f"{label + ' ' if label else ''}{lev:.0%}"
                                       if j == 0 else None))
                coll.set_gid(f"ci {r} {lev:g}")
            if show_mean and ts:
                a.plot(x, np.asarray(means)[:, j], "o", color="black", markersize=3,
                       label="mean" if j == 0 and r == len(runs) - 1 else None)
    for j, (a, name) in enumerate(zip(axs, names, strict=True)):
        if refval and name in refval:
            a.axhline(float(refval[name]), color="grey", linestyle="--", linewidth=1,
                      label="reference" if j == 0 else None)
        a.set_ylabel(name)
        generation_axis(a)
        if j == 0:
            a.set_title(f"Credible intervals ({runs[0][0].model_names[m]})")
            a.legend(fontsize="x-small", ncol=2)
    axs[-1].set_xlabel("generation t")
    return axs


def distance_weights(history: History) -> np.ndarray:
    """The adaptive distance's weight of each statistic in each generation of a run.

    Row ``t`` holds the weights generation ``t`` used: for ``t = 0`` those the run started
    with (its stored configuration), for ``t >= 1`` those learned from generation ``t - 1``
    (its stored engine state). Both are read from the run's JSON without unpickling
    anything (``trust=False``).

    Parameters
    ----------
    history : History
        A run with an :class:`~dabc.AdaptivePNormDistance`.

    Returns
    -------
    numpy.ndarray
        Shape ``(generations, statistics)``; the columns are ``history.stat_columns``.

    Raises
    ------
    InputError
        When the run's distance is not adaptive, or its configuration cannot be read
        without unpickling (dabc 0.1.0's format).

    Examples
    --------
    >>> distance_weights(history).shape     # doctest: +SKIP
    (4, 2)
    """
    spec = read_config(history).fields.get("distance")
    name = spec.get("name") if isinstance(spec, dict) else None
    if name != "AdaptivePNormDistance":
        what = f"a {name}" if name else "a distance stored as code"
        raise InputError(f"Run {history.id} uses {what}, whose weights do not adapt: "
                         "plot_distance_weights needs a run with "
                         "dabc.AdaptivePNormDistance.")
    layout = StatLayout(load_observed(history.observed, trust=False))
    w0 = spec.get("state", {}).get("w")
    rows = [np.ones(layout.size) if w0 is None else np.asarray(w0, float)]
    ts = history.get_all_populations()["t"].to_numpy()
    for t in ts[:-1]:
        dist, _, _ = load_state(history.state(int(t)), layout, trust=False)
        rows.append(np.asarray(dist.w, dtype=float))
    return np.vstack(rows[:len(ts)]) if len(ts) else np.zeros((0, layout.size))


def plot_distance_weights(histories: Runs, t: int | Sequence[int] | None = None,
                          labels: Sequence[str] | None = None, ax=None):
    """The adaptive distance's weight of each summary statistic, per generation.

    Parameters
    ----------
    histories : History or list of History
        The run(s); each needs an :class:`~dabc.AdaptivePNormDistance`.
    t : int or list of int, optional
        The generations to draw (negative counts from the end); default all of them for one
        run, the last one of each for several.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into: one line per run and generation, x the statistic's index (tick
        labels ``history.stat_columns``), y :func:`distance_weights`' row ``t``.

    Raises
    ------
    InputError
        When a run's distance is not adaptive, or a generation is not stored.

    Examples
    --------
    >>> ax = dabc.viz.plot_distance_weights(history)    # doctest: +SKIP
    """
    runs = as_runs(histories, labels)
    ax = axes(ax)
    cmap = pyplot().get_cmap("viridis")
    for r, (h, label) in enumerate(runs):
        weights = distance_weights(h)
        n = len(weights)
        chosen = (list(range(n)) if len(runs) == 1 else [-1]) if t is None else (
            [t] if isinstance(t, int | np.integer) else list(t))
        for tt in chosen:
            k = n + tt if tt < 0 else int(tt)
            if not 0 <= k < n:
                raise InputError(f"Run {h.id} has no generation {tt} (it has {n}).")
            col = colour(r) if len(runs) > 1 else cmap(k / max(n - 1, 1))
            text = f"t = {k}" if label is None else f"{label}, t = {k}"
            ax.plot(np.arange(weights.shape[1]), weights[k], "o-", color=col, label=text)
    cols = runs[0][0].stat_columns
    ax.set_xticks(np.arange(len(cols)), cols, rotation=30 if len(cols) > 6 else 0)
    finish(ax, runs, "summary statistic", "distance weight", "Adaptive distance weights")
    return ax
