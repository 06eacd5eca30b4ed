"""What every plot function shares: matplotlib on demand, one History or several, the Axes.

matplotlib is an optional dependency (the ``viz`` extra), so it is imported here, when a plot
is first drawn, and a missing installation becomes an :class:`~dabc.InputError` that says
what to install instead of a bare ``ModuleNotFoundError`` from deep inside dabc.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ..storage import History

INSTALL_HINT = 'pip install "dabc[viz]"'


def pyplot():
    """``matplotlib.pyplot``, or an InputError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as exc:
        raise InputError(f"dabc.viz draws with matplotlib, which is not installed ({exc}). "
                         f"Install it with: {INSTALL_HINT}") from exc
    return plt


def as_runs(histories, labels: Sequence[str] | None) -> list[tuple[History, str | None]]:
    """``[(history, label), ...]`` from one History or a list; labels checked.

    Without labels, one History gets no label and several get ``"run <id>"`` each.
    """
    many = isinstance(histories, list | tuple)
    hs = list(histories) if many else [histories]
    if not hs:
        raise InputError("Give a History or a non-empty list of them.")
    for h in hs:
        if not isinstance(h, History):
            raise InputError(f"Expected a dabc History (e.g. from ABCSMC.run or "
                             f"dabc.storage.open_history), got {type(h).__name__}.")
    if labels is None:
        labs = [f"run {h.id}" for h in hs] if many else [None]
    else:
        labs = [labels] if isinstance(labels, str) else list(labels)
        if len(labs) != len(hs):
            raise InputError(f"{len(labs)} labels for {len(hs)} histories: give one label per "
                             "History.")
    return list(zip(hs, labs, strict=True))


def axes(ax, figsize: tuple[float, float] = (6.0, 4.0)):
    """``ax``, or the Axes of a new figure."""
    if ax is not None:
        return ax
    _, new = pyplot().subplots(figsize=figsize)
    return new


def colour(i: int) -> str:
    """The i-th colour of matplotlib's default cycle."""
    return f"C{i % 10}"


def finish(ax, runs, xlabel: str | None = None, ylabel: str | None = None,
           title: str | None = None) -> None:
    """Axis labels, title and a legend when a line has a label."""
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize="small")


def generation_axis(ax) -> None:
    """Integer ticks on the generation axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
