"""What every plot function shares: matplotlib on demand, one History or several, the Axes.

matplotlib is an optional dependency (the ``viz`` extra), so it is imported here, when a plot
is first drawn, and a missing installation becomes an :class:`~dabc.InputError` that says
what to install instead of a bare ``ModuleNotFoundError`` from deep inside dabc.
"""

from __future__ import annotations

import math
import numbers
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


def check_model(h: History, m: int) -> None:
    """An InputError unless ``m`` is a model index of run ``h``."""
    n = len(h.model_names)
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 0 <= m < n:
        names = ", ".join(f"{i} ({name!r})" for i, name in enumerate(h.model_names))
        raise InputError(f"Run {h.id} has {n} model(s); m={m!r} is not one. Give m as one of "
                         f"{names}.")


def generation(h: History, t: int | None) -> int:
    """The stored generation ``t`` of run ``h`` (None: the last; negative: from the end)."""
    n = h.n_populations
    if n == 0:
        raise InputError(f"Run {h.id} has no stored generation yet; plot it once its first "
                         "generation is stored ('dabc info' shows its progress).")
    if t is None:
        return h.max_t
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise InputError(f"t must be a whole number (a generation) or None, not {t!r}.")
    k = n + int(t) if t < 0 else int(t)
    if not 0 <= k < n:
        raise InputError(f"Run {h.id} has no generation {t}: it stored generations 0 to "
                         f"{n - 1} (negative t counts from the end, -1 the last).")
    return k


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


def readable_log_axis(ax) -> None:
    """Plain numbers (``0.5``, ``1``, ``20``) on a log-scaled y axis instead of ``5x10^-1``.

    The decades are always labelled; within a narrow range (under 1.5 decades) also the
    2, 3 and 5 of each decade, and under half a decade every minor tick, so a short axis
    still has several labels.
    """
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _pos) -> str:
        lo, hi = ax.get_ylim()
        decades = math.log10(hi / lo) if 0 < lo < hi else math.inf
        if not v > 0:
            return ""
        mantissa = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
        keep = range(2, 10) if decades < 0.5 else (2, 3, 5) if decades < 1.5 else ()
        return f"{v:g}" if mantissa in keep else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))
