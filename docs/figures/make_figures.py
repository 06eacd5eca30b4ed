"""Make the example figure of every dabc.viz plot function (docs/figures/*.png).

Runs two small real ABC-SMC runs (tests/viz_runs.py: a one-model run with two parameters
and an adaptive distance, a two-model run) into a temporary SQLite file and draws each plot
function once, at 100 dpi. Run from anywhere::

    python docs/figures/make_figures.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

import dabc.viz as viz  # noqa: E402
import viz_runs  # noqa: E402


def main() -> None:
    """Write the figures next to this script."""
    with tempfile.TemporaryDirectory() as tmp:
        one = viz_runs.one_model_run(f"{tmp}/one.db", population=400, generations=6)
        two = viz_runs.two_model_run(f"{tmp}/two.db", population=400, generations=6)
        other = viz_runs.one_model_run(f"{tmp}/one.db", population=400, generations=6, seed=5)
        ref = viz_runs.TRUTH
        labels = ["one model", "two models"]
        figures = {
            "plot_kde_1d": lambda: viz.plot_kde_1d([one, other], "mu", refval=ref,
                                                   labels=["seed 11", "seed 5"]),
            "plot_kde_2d": lambda: viz.plot_kde_2d(one, "mu", "sigma", refval=ref),
            "plot_kde_matrix": lambda: viz.plot_kde_matrix(one, refval=ref),
            "plot_credible_intervals": lambda: viz.plot_credible_intervals(one, refval=ref),
            "plot_epsilons": lambda: viz.plot_epsilons([one, two], labels=labels),
            "plot_sample_numbers": lambda: viz.plot_sample_numbers([one, two],
                                                                   labels=labels),
            "plot_acceptance_rates": lambda: viz.plot_acceptance_rates([one, two],
                                                                       labels=labels),
            "plot_effective_sample_sizes": lambda: viz.plot_effective_sample_sizes(
                [one, two], labels=labels),
            "plot_walltime": lambda: viz.plot_walltime([one, two], labels=labels),
            "plot_model_probabilities": lambda: viz.plot_model_probabilities(two),
            "plot_distance_weights": lambda: viz.plot_distance_weights(one),
        }
        for name, draw in figures.items():
            result = draw()
            first = result.flat[0] if hasattr(result, "flat") else result
            fig = first.figure
            fig.tight_layout()
            fig.savefig(HERE / f"{name}.png", dpi=100)
            plt.close(fig)
            print(f"wrote {HERE / (name + '.png')}")
        for h in (one, two, other):
            h.engine.dispose()


if __name__ == "__main__":
    main()
