"""Plots of stored runs (matplotlib, the ``viz`` extra).

Why it is built this way
------------------------
A run's numbers sit in a database; these functions turn them into the pictures a user checks
before trusting a posterior. They read only through :class:`~dabc.History`, so they work on
a finished run, a run still being written, or a run copied off a cluster, and never unpickle
anything the database holds.

matplotlib is optional: ``import dabc`` never imports it, and neither does ``import
dabc.viz``. The plot functions are loaded on first use (a module ``__getattr__``); without
matplotlib that first use raises an :class:`~dabc.InputError` saying
``pip install "dabc[viz]"``. The numbers behind the plots (weighted KDEs, credible
intervals, the effective sample size) are in :mod:`dabc.viz.weighted`, which needs numpy
only, so the dashboard and users can compute them without a plotting library.

- :mod:`dabc.viz.kde`: :func:`plot_kde_1d`, :func:`plot_kde_2d`, :func:`plot_kde_matrix`;
- :mod:`dabc.viz.plots`: :func:`plot_epsilons`, :func:`plot_sample_numbers`,
  :func:`plot_acceptance_rates`, :func:`plot_effective_sample_sizes`, :func:`plot_walltime`,
  :func:`plot_model_probabilities`, :func:`plot_credible_intervals`,
  :func:`plot_distance_weights`;
- :mod:`dabc.viz.report`: :func:`write_report`, one self-contained HTML file (or a PDF) with
  every plot, the configuration and the generations of a run (``dabc report``).

Every plot function takes one History or a list of them (``labels=`` names the runs), draws
into ``ax=`` or a new figure and returns the Axes (an array of them for the matrix and the
credible intervals).
"""

from __future__ import annotations

__all__ = [
    "distance_weights", "plot_acceptance_rates", "plot_credible_intervals",
    "plot_distance_weights", "plot_effective_sample_sizes", "plot_epsilons", "plot_kde_1d",
    "plot_kde_2d", "plot_kde_matrix", "plot_model_probabilities", "plot_sample_numbers",
    "plot_walltime", "walltimes", "write_report",
]

_WHERE = {
    "plot_kde_1d": "kde", "plot_kde_2d": "kde", "plot_kde_matrix": "kde",
    "write_report": "report",
    **{name: "plots" for name in __all__ if name not in (
        "plot_kde_1d", "plot_kde_2d", "plot_kde_matrix", "write_report")},
}


def __getattr__(name: str):
    """Load a plot function's module (and matplotlib) on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dabc.viz' has no attribute {name!r}")
    from . import _common

    _common.pyplot()  # a missing matplotlib: the InputError with the install hint
    if module == "kde":
        from . import kde as loaded
    elif module == "report":
        from . import report as loaded
    else:
        from . import plots as loaded
    value = getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
