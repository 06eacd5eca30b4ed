"""The posterior of one generation as weighted kernel densities: marginals, pairs, a matrix.

Why
---
A generation is a weighted sample; a histogram of its particles without weights shows the
proposal, not the posterior. These plots draw the densities of
:mod:`dabc.viz.weighted` (Gaussian kernels, bandwidth from the *effective* sample size), with
optional reference values (a known truth, a published estimate) as lines. The names and
arguments follow pyABC's ``plot_kde_1d``, ``plot_kde_2d`` and ``plot_kde_matrix``; each takes
one History or a list of them, so runs can be compared in one picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..storage import History
from ._common import as_runs, axes, check_model, colour, finish, generation, pyplot
from .weighted import weighted_kde_1d, weighted_kde_2d

__all__ = ["plot_kde_1d", "plot_kde_2d", "plot_kde_matrix"]

Runs = History | Sequence[History]


def _sample(h: History, m: int, t: int | None, names: Sequence[str]):
    """The parameters ``names`` of model ``m`` at generation ``t`` and their weights."""
    check_model(h, m)
    t = generation(h, t)
    unknown = [n for n in names if n not in h.param_names[m]]
    if unknown:
        raise InputError(f"Model {m} ({h.model_names[m]!r}) of run {h.id} has no parameter "
                         f"{', '.join(map(repr, unknown))}; it has "
                         f"{', '.join(h.param_names[m])}.")
    params, w = h.get_distribution(m=m, t=t)
    if not len(w):
        raise InputError(f"Model {m} ({h.model_names[m]!r}) of run {h.id} has no particles in "
                         f"generation {t}: it died out. Choose another generation or model.")
    return params, w


def _limits(runs, m, t, name, lo, hi):
    """Common grid ends for several runs: the union of their default ranges."""
    if lo is not None and hi is not None:
        return lo, hi
    los, his = [], []
    for h, _ in runs:
        params, w = _sample(h, m, t, [name])
        grid, _ = weighted_kde_1d(params[name].to_numpy(), w, numx=2)
        los.append(grid[0])
        his.append(grid[-1])
    return (min(los) if lo is None else lo), (max(his) if hi is None else hi)


def plot_kde_1d(histories: Runs, x: str, m: int = 0, t: int | None = None,
                xmin: float | None = None, xmax: float | None = None, numx: int = 200,
                refval: Mapping[str, float] | None = None,
                labels: Sequence[str] | None = None, ax=None,
                bandwidth: str | float = "scott", title: str | None = None):
    """The weighted kernel density of one parameter in one generation.

    Parameters
    ----------
    histories : History or list of History
        The run(s); one curve each.
    x : str
        The parameter.
    m : int, default 0
        The model.
    t : int, optional
        The generation; default the last (negative counts from the end).
    xmin, xmax : float, optional
        The grid's ends; default the sample's range (of all runs) plus three bandwidths.
    numx : int, default 200
        Grid points.
    refval : dict, optional
        Reference values by parameter; ``refval[x]`` is drawn as a dashed vertical line.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    bandwidth : {"scott", "silverman"} or float, default "scott"
        See :func:`dabc.viz.weighted.weighted_kde_1d`.
    title : str, optional
        Default: the model and generation.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into: line ``i`` is run ``i``'s density (its data the grid and
        :func:`~dabc.viz.weighted.weighted_kde_1d`'s values).

    Raises
    ------
    InputError
        For an unknown model or parameter, or a model without particles in generation ``t``.

    Examples
    --------
    >>> ax = dabc.viz.plot_kde_1d(history, "mu", refval={"mu": 0.9})   # doctest: +SKIP
    """
    runs = as_runs(histories, labels)
    ax = axes(ax)
    lo, hi = _limits(runs, m, t, x, xmin, xmax)
    for i, (h, label) in enumerate(runs):
        params, w = _sample(h, m, t, [x])
        grid, dens = weighted_kde_1d(params[x].to_numpy(), w, lo, hi, numx, bandwidth)
        ax.plot(grid, dens, color=colour(i), label=label)
        if len(runs) == 1:
            ax.fill_between(grid, dens, color=colour(i), alpha=0.15, linewidth=0)
    if refval and x in refval:
        ax.axvline(float(refval[x]), color="black", linestyle="--", linewidth=1,
                   label="reference")
    h0 = runs[0][0]
    gen = generation(h0, t)
    ax.set_ylim(bottom=0)
    finish(ax, runs, x, "posterior density",
           title if title is not None else f"{h0.model_names[m]}, generation {gen}")
    return ax


def plot_kde_2d(histories: Runs, x: str, y: str, m: int = 0, t: int | None = None,
                xmin: float | None = None, xmax: float | None = None,
                ymin: float | None = None, ymax: float | None = None, numx: int = 50,
                numy: int = 50, refval: Mapping[str, float] | None = None,
                labels: Sequence[str] | None = None, ax=None, colorbar: bool = True,
                bandwidth: str | float = "scott", title: str | None = None):
    """The weighted kernel density of two parameters in one generation.

    One run is drawn as a colour map (``pcolormesh``) with a colour bar; several runs as
    contour lines of one colour each.

    Parameters
    ----------
    histories : History or list of History
        The run(s).
    x, y : str
        The parameters on the horizontal and vertical axis.
    m : int, default 0
        The model.
    t : int, optional
        The generation; default the last.
    xmin, xmax, ymin, ymax : float, optional
        The grid's ends; default the samples' ranges plus three bandwidths.
    numx, numy : int, default 50
        Grid points.
    refval : dict, optional
        Reference values by parameter, drawn as a white-edged black cross.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    colorbar : bool, default True
        Add a colour bar (one run only).
    bandwidth : {"scott", "silverman"} or float, default "scott"
        See :func:`dabc.viz.weighted.weighted_kde_2d`.
    title : str, optional
        Default: the model and generation.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into. For one run its ``QuadMesh`` (``ax.collections[0]``) holds
        :func:`~dabc.viz.weighted.weighted_kde_2d`'s density.

    Raises
    ------
    InputError
        For an unknown model or parameter, or a model without particles in generation ``t``.

    Examples
    --------
    >>> ax = dabc.viz.plot_kde_2d(history, "mu", "sigma")   # doctest: +SKIP
    """
    runs = as_runs(histories, labels)
    ax = axes(ax)
    xlo, xhi = _limits(runs, m, t, x, xmin, xmax)
    ylo, yhi = _limits(runs, m, t, y, ymin, ymax)
    for i, (h, label) in enumerate(runs):
        params, w = _sample(h, m, t, [x, y])
        gx, gy, dens = weighted_kde_2d(params[x].to_numpy(), params[y].to_numpy(), w, xlo, xhi,
                                       ylo, yhi, numx, numy, bandwidth)
        if len(runs) == 1:
            mesh = ax.pcolormesh(gx, gy, dens, shading="auto", cmap="viridis")
            if colorbar:
                ax.figure.colorbar(mesh, ax=ax, label="posterior density")
        else:
            ax.contour(gx, gy, dens, levels=5, colors=colour(i), linewidths=1)
            ax.plot([], [], color=colour(i), label=label)  # a legend entry for the contours
    if refval and x in refval and y in refval:
        ax.plot([float(refval[x])], [float(refval[y])], "x", color="black", markersize=9,
                markeredgewidth=2, label="reference")
    h0 = runs[0][0]
    gen = generation(h0, t)
    finish(ax, runs, x, y, title if title is not None else f"{h0.model_names[m]}, generation "
           f"{gen}")
    return ax


def plot_kde_matrix(histories: Runs, m: int = 0, t: int | None = None,
                    names: Sequence[str] | None = None,
                    limits: Mapping[str, tuple[float, float]] | None = None,
                    refval: Mapping[str, float] | None = None,
                    labels: Sequence[str] | None = None, ax=None, numx: int = 100,
                    numy: int = 40, bandwidth: str | float = "scott"):
    """All marginals and pairs of one generation: densities on the diagonal, 2-d densities
    below it, the particles (size by weight) above it.

    Parameters
    ----------
    histories : History or list of History
        The run(s).
    m : int, default 0
        The model.
    t : int, optional
        The generation; default the last.
    names : list of str, optional
        The parameters; default all of model ``m``.
    limits : dict, optional
        ``{name: (low, high)}`` grid ends; default from the samples.
    refval : dict, optional
        Reference values by parameter.
    labels : list of str, optional
        One per History (default ``"run <id>"`` when several are given).
    ax : numpy.ndarray of matplotlib.axes.Axes, optional
        A square array of Axes, one row and column per parameter; default a new figure.
    numx : int, default 100
        Grid points of the 1-d densities.
    numy : int, default 40
        Grid points per axis of the 2-d densities.
    bandwidth : {"scott", "silverman"} or float, default "scott"
        See :mod:`dabc.viz.weighted`.

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        Shape ``(k, k)`` for ``k`` parameters: ``[i, i]`` as :func:`plot_kde_1d`,
        ``[i, j]`` with ``i > j`` as :func:`plot_kde_2d` (x ``names[j]``, y ``names[i]``),
        ``[i, j]`` with ``i < j`` a scatter of the particles (x ``names[j]``, named on top;
        y ``names[i]``, named on the right).

    Raises
    ------
    InputError
        For an unknown model or parameter, ``ax`` of the wrong shape, or a model without
        particles in generation ``t``.

    Examples
    --------
    >>> axs = dabc.viz.plot_kde_matrix(history, refval={"mu": 0.9, "sigma": 1.2})  # doctest: +SKIP
    """
    runs = as_runs(histories, labels)
    check_model(runs[0][0], m)
    names = list(names) if names is not None else list(runs[0][0].param_names[m])
    k = len(names)
    if ax is None:
        fig, axs = pyplot().subplots(k, k, figsize=(2.6 * k + 0.6, 2.4 * k + 0.6),
                                     squeeze=False)
    else:
        axs = np.asarray(ax, dtype=object).reshape(-1)
        if len(axs) != k * k:
            raise InputError(f"ax holds {len(axs)} Axes; a matrix of {k} parameters needs "
                             f"{k * k}.")
        axs = axs.reshape(k, k)
        fig = axs[0, 0].figure
    limits = dict(limits or {})
    lims = {n: limits.get(n) or _limits(runs, m, t, n, None, None) for n in names}
    for i, yi in enumerate(names):
        for j, xj in enumerate(names):
            a = axs[i, j]
            if i == j:
                plot_kde_1d([h for h, _ in runs], xj, m, t, *lims[xj], numx=numx, refval=refval,
                            labels=[lab or "" for _, lab in runs], ax=a, bandwidth=bandwidth,
                            title="")
                a.set_ylabel("density" if j == 0 else "")
                leg = a.get_legend()
                if leg is not None and not (len(runs) > 1 and i == 0):
                    leg.remove()
            elif i > j:
                plot_kde_2d([h for h, _ in runs] if len(runs) > 1 else runs[0][0], xj, yi, m,
                            t, *lims[xj], *lims[yi], numx=numy, numy=numy, refval=refval,
                            labels=[lab for _, lab in runs] if len(runs) > 1 else None, ax=a,
                            colorbar=False, bandwidth=bandwidth, title="")
                leg = a.get_legend()
                if leg is not None:
                    leg.remove()
            else:
                for r, (h, _) in enumerate(runs):
                    params, w = _sample(h, m, t, [xj, yi])
                    a.scatter(params[xj], params[yi], s=2 + 400 * w / max(w.max(), 1e-300)
                              / max(len(w) ** 0.5, 1.0), color=colour(r), alpha=0.4,
                              linewidths=0)
                if refval and xj in refval and yi in refval:
                    a.plot([refval[xj]], [refval[yi]], "x", color="black", markersize=8,
                           markeredgewidth=2)
                a.set_xlim(*lims[xj])
                a.set_ylim(*lims[yi])
                # above the diagonal the axes are mirrored: x named on top, y on the right
                a.xaxis.tick_top()
                a.xaxis.set_label_position("top")
                a.yaxis.tick_right()
                a.yaxis.set_label_position("right")
                a.set_xlabel(xj if i == 0 else "")
                a.set_ylabel(yi if j == k - 1 else "")
                continue
            a.set_xlabel(xj if i == k - 1 else "")
            if i != j:
                a.set_ylabel(yi if j == 0 else "")
    h0 = runs[0][0]
    fig.suptitle(f"{h0.model_names[m]}, generation {generation(h0, t)}")
    return axs
