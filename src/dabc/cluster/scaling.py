"""How many workers are worth paying for: the same analysis at several worker counts.

On a cluster, more workers shorten a run only as long as each one has enough to do: the
scheduler's round trips, the end of each generation (the last tasks keep a few workers
busy while the others wait) and the master's own work between generations do not shrink
with more workers. Beyond some count the extra workers mostly wait, and the core-hours
they cost buy little. :func:`scaling_study` measures this for the user's own analysis (or a
built-in workload): it scales one Dask cluster (a ``LocalCluster``, dask-jobqueue's or
:class:`dabc.cluster.SLURMCluster`: anything with ``scale(n)``) to each worker count in
turn, runs the analysis with a :class:`~dabc.samplers.DaskDistributedSampler` there, and
returns a :class:`ScalingResult`: wall time, speed-up, efficiency, cost in core-hours and
simulations per second per count, a figure, and the *knee*: the largest worker count
whose efficiency has stayed at or above a threshold (default 0.7).

The DYN determinism contract says that every worker count gives the identical populations
for the same seed, so the study checks it for free: every run's stored generations are
fingerprinted, and a count whose populations differ is flagged in the table, the summary
and a log record (the usual cause is a ``make_abc`` that sets no seed).

Speed-up is relative to the smallest count measured, ``T_base * base / T_n``, so a study
need not start at one worker (on a cluster, one worker can take too long); efficiency is
speed-up over the worker count, so the base count has efficiency 1 by definition.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine import ABCSMC, RV, Prior
from ..errors import InputError, WorkerError
from ..samplers.base import Sampler
from ..samplers.dask import DaskDistributedSampler, local_cluster
from ..storage import History

__all__ = ["COLUMNS", "WORKLOADS", "ScalingResult", "Workload", "find_knee", "knee_sentence",
           "parse_workers", "scaling_study"]

log = logging.getLogger("dabc.cluster.scaling")

#: The columns of :attr:`ScalingResult.table` (and of the CSV file), in order.
COLUMNS = ("workers", "cores", "wall_s", "wall_s_min", "wall_s_max", "repeats", "speedup",
           "efficiency", "core_hours", "simulations", "evaluations", "sims_per_s",
           "same_population", "population")


# --- built-in workloads ------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """A built-in analysis for :func:`scaling_study`: ``y = theta + N(0, 1)``,
    ``theta ~ U(-10, 10)``, observed ``y = 2``, each simulation sleeping or computing first.

    Parameters
    ----------
    name : str
        Its name in :data:`WORKLOADS` and on the command line.
    description : str
        One line, for tables and figures.
    sleep : float
        Seconds each simulation sleeps (stands for a simulator that waits: I/O, an external
        program, a GPU); the workers need no CPU meanwhile.
    spin : int
        Iterations of a pure-Python loop each simulation runs (CPU-bound work: scales only
        up to the number of cores the workers really have).
    population_size : int
        Particles per generation by default.
    generations : int
        Generations per run by default.
    """

    name: str
    description: str
    sleep: float = 0.0
    spin: int = 0
    population_size: int = 100
    generations: int = 3

    def model(self, params: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
        """Simulate ``y`` for ``theta`` (after the workload's sleep or computation).

        Parameters
        ----------
        params : dict of str to float
            ``theta``.
        rng : numpy.random.Generator
            The particle's random generator.

        Returns
        -------
        dict of str to float
            ``y``.
        """
        if self.sleep:
            time.sleep(self.sleep)
        if self.spin:
            x = 0
            for i in range(self.spin):
                x += i * i
        return {"y": params["theta"] + rng.normal()}

    def prior(self) -> Prior:
        """The prior ``theta ~ U(-10, 10)``.

        Returns
        -------
        Prior
            Over the one parameter ``theta``.
        """
        return Prior(theta=RV("uniform", -10, 20))

    @staticmethod
    def observed() -> dict[str, float]:
        """The observed data, ``{"y": 2.0}``.

        Returns
        -------
        dict of str to float
            ``y``.
        """
        return {"y": 2.0}

    def make_abc(self, population_size: int | None = None,
                 seed: int = 1) -> Callable[[Sampler], ABCSMC]:
        """A ``make_abc`` for :func:`scaling_study`: this workload with a given sampler.

        Parameters
        ----------
        population_size : int, optional
            Particles per generation; default :attr:`population_size`.
        seed : int, default 1
            The run's seed (the same for every worker count).

        Returns
        -------
        callable
            ``make_abc(sampler) -> ABCSMC``.
        """
        pop = self.population_size if population_size is None else population_size

        def make_abc(sampler: Sampler) -> ABCSMC:
            return ABCSMC(self.model, self.prior(), population_size=pop, sampler=sampler,
                          seed=seed, model_names=[self.name], progress=False)

        return make_abc


#: The built-in workloads by name. ``sleep100`` and ``sleep10`` stand for simulators that
#: wait (they scale as far as Dask's overheads allow, whatever the cores), ``cpu`` for one
#: that computes (about 20 ms of pure Python on a current core: it cannot scale beyond the
#: cores the workers really have), ``fast`` for a cheap one (overheads only).
WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("sleep100", "100 ms sleep per simulation", sleep=0.1, population_size=100,
             generations=3),
    Workload("sleep10", "10 ms sleep per simulation", sleep=0.01, population_size=200,
             generations=4),
    Workload("cpu", "about 20 ms of pure-Python arithmetic per simulation", spin=500_000,
             population_size=100, generations=3),
    Workload("fast", "a cheap simulation (overheads only)", population_size=1000,
             generations=6),
)}


# --- the knee ------------------------------------------------------------------------------
def _check_threshold(threshold: float) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"threshold must be a number between 0 and 1, got {threshold!r}.") \
            from None
    if not 0 < value <= 1:
        raise InputError(f"threshold must be above 0 and at most 1 (an efficiency), got "
                         f"{threshold!r}; the default is 0.7.")
    return value


def find_knee(workers: Sequence[int], efficiency: Sequence[float],
              threshold: float = 0.7) -> int | None:
    """The largest worker count up to which the efficiency stays at or above ``threshold``.

    The counts are taken in increasing order and the first one whose efficiency falls below
    the threshold ends the search: a count beyond it is not the knee even if its efficiency
    (by noise) climbs back above the threshold.

    Parameters
    ----------
    workers : sequence of int
        The worker counts measured.
    efficiency : sequence of float
        The efficiency at each count (in the order of ``workers``).
    threshold : float, default 0.7
        The lowest efficiency worth paying for, above 0 and at most 1.

    Returns
    -------
    int or None
        The knee, or None when even the smallest count is below the threshold.

    Raises
    ------
    InputError
        When the sequences differ in length or the threshold is not in (0, 1].

    Examples
    --------
    >>> find_knee([1, 2, 4, 8], [1.0, 0.93, 0.81, 0.62])
    4
    >>> find_knee([1, 2, 4, 8], [1.0, 0.6, 0.75, 0.5])  # 0.75 at 4 comes too late
    1
    >>> find_knee([2, 4], [0.5, 0.4]) is None
    True
    """
    threshold = _check_threshold(threshold)
    if len(workers) != len(efficiency):
        raise InputError(f"{len(workers)} worker counts but {len(efficiency)} efficiencies.")
    knee = None
    for n, eff in sorted(zip(workers, efficiency, strict=True)):
        if not eff >= threshold:  # NaN counts as below
            break
        knee = int(n)
    return knee


def _plural(n: float, word: str) -> str:
    """``"1 worker"``, ``"4 workers"``, ``"0.5 threads"``."""
    return f"{_fmt(n)} {word}{'' if n == 1 else 's'}"


def _workers_text(n: int, cores_per_worker: float | None) -> str:
    text = _plural(n, "worker")
    if cores_per_worker and cores_per_worker != 1:
        text += f" ({_fmt(n * cores_per_worker)} cores)"
    return text


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def knee_sentence(workers: Sequence[int], efficiency: Sequence[float], threshold: float = 0.7,
                  cores_per_worker: float | None = None) -> str:
    """The knee as a sentence, e.g. "more than 4 workers is not worth it for this problem
    (efficiency 0.62 at 8)".

    Parameters
    ----------
    workers : sequence of int
        The worker counts measured.
    efficiency : sequence of float
        The efficiency at each count.
    threshold : float, default 0.7
        As for :func:`find_knee`.
    cores_per_worker : float, optional
        When given and not 1, the cores are named too ("4 workers (16 cores)").

    Returns
    -------
    str
        The sentence (no final full stop).

    Raises
    ------
    InputError
        As for :func:`find_knee`.
    """
    threshold = _check_threshold(threshold)
    pairs = sorted(zip(workers, efficiency, strict=True))
    knee = find_knee(workers, efficiency, threshold)
    if not pairs:
        return "no worker count measured"
    if knee is None:
        n, eff = pairs[0]
        return (f"no worker count keeps efficiency >= {threshold:g} (efficiency {eff:.2f} at "
                f"{_workers_text(n, cores_per_worker)}, the smallest count measured); measure "
                "fewer workers")
    after = [(n, e) for n, e in pairs if n > knee]
    if not after:
        eff = dict(pairs)[knee]
        if len(pairs) == 1:
            return (f"only {_workers_text(knee, cores_per_worker)} measured (efficiency "
                    f"{eff:.2f} by definition); measure more counts to find the knee")
        return (f"every count up to {_workers_text(knee, cores_per_worker)} keeps efficiency "
                f">= {threshold:g} ({eff:.2f} at {knee}): more workers may still be worth it; "
                f"measure beyond {knee} to find the knee")
    n, eff = after[0]
    verb = "is" if knee == 1 else "are"
    return (f"more than {_workers_text(knee, cores_per_worker)} {verb} not worth it for this "
            f"problem (efficiency {eff:.2f} at {n}, below {threshold:g})")


# --- the result ----------------------------------------------------------------------------
class ScalingResult:
    """The outcome of a :func:`scaling_study`: one row per worker count, and every run.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per worker count, with the :data:`COLUMNS`: ``workers``; ``cores``
        (workers x cores per worker); ``wall_s`` (median wall time of the repeats, seconds;
        ``wall_s_min``, ``wall_s_max`` and ``repeats`` beside it); ``speedup`` (``T_base *
        base / T_n``, relative to the smallest count); ``efficiency`` (speed-up over
        workers); ``core_hours`` (wall time x cores / 3600); ``simulations`` and
        ``evaluations`` of one run; ``sims_per_s`` (simulations over wall time);
        ``same_population`` (every run at this count stored the populations of the first
        run at the smallest count) and ``population`` (a fingerprint of those populations).
    runs : pandas.DataFrame, optional
        One row per run: ``workers``, ``repeat``, ``wall_s``, ``simulations``,
        ``evaluations``, ``generations``, ``seed``, ``population``.
    threshold : float, default 0.7
        The efficiency the knee must keep.
    title : str, default ""
        What was measured, for the figure (e.g. the workload and the cluster).
    cores_per_worker : float, optional
        Threads per worker; default ``cores / workers`` of the table's first row.

    Raises
    ------
    InputError
        When the table lacks a column or the threshold is not in (0, 1].
    """

    def __init__(self, table: pd.DataFrame, runs: pd.DataFrame | None = None,
                 threshold: float = 0.7, title: str = "",
                 cores_per_worker: float | None = None):
        missing = [c for c in ("workers", "wall_s", "speedup", "efficiency") if c not in table]
        if missing:
            raise InputError(f"a scaling table needs the columns {', '.join(missing)}; "
                             f"it has {', '.join(map(str, table.columns))}.")
        self.table = table.sort_values("workers").reset_index(drop=True)
        self.runs = runs
        self.threshold = _check_threshold(threshold)
        self.title = title
        if cores_per_worker is None and "cores" in table and len(table):
            cores_per_worker = float(self.table.cores.iloc[0] / self.table.workers.iloc[0])
        self.cores_per_worker = cores_per_worker

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], threshold: float = 0.7,
                 title: str = "") -> ScalingResult:
        """Read a table written by :meth:`to_csv` (to plot it again, or with another
        threshold).

        Parameters
        ----------
        path : str or path-like
            The CSV file.
        threshold : float, default 0.7
            The efficiency the knee must keep.
        title : str, default ""
            For the figure.

        Returns
        -------
        ScalingResult
            Without the per-run table.

        Raises
        ------
        InputError
            When the file cannot be read or lacks a column.
        """
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the scaling table {os.fspath(path)!r}: {exc}") \
                from None
        return cls(table, threshold=threshold, title=title)

    @property
    def knee(self) -> int | None:
        """The largest worker count up to which efficiency stays >= :attr:`threshold`
        (:func:`find_knee`); None when even the smallest count is below it."""
        return find_knee(self.table.workers.tolist(), self.table.efficiency.tolist(),
                         self.threshold)

    @property
    def identical(self) -> bool:
        """Whether every run stored the same populations (the DYN determinism contract)."""
        if "same_population" not in self.table:
            return True
        return bool(self.table.same_population.astype(bool).all())

    @property
    def summary(self) -> str:
        """The knee as a sentence (:func:`knee_sentence`), and a warning when the runs'
        populations differed."""
        text = knee_sentence(self.table.workers.tolist(), self.table.efficiency.tolist(),
                             self.threshold, self.cores_per_worker) + "."
        if not self.identical:
            bad = self.table.workers[~self.table.same_population.astype(bool)].tolist()
            text += (f" WARNING: the populations at {', '.join(map(str, bad))} workers differ "
                     f"from those at {int(self.table.workers.iloc[0])}: the runs did not "
                     "analyse the same thing (does make_abc set a seed?), so the times are "
                     "not comparable.")
        return text

    def __repr__(self) -> str:
        return f"ScalingResult(workers={self.table.workers.tolist()}, knee={self.knee})"

    def to_string(self) -> str:
        """The table as aligned text, for printing.

        Returns
        -------
        str
            The main columns, numbers rounded.
        """
        t = self.table
        out = pd.DataFrame({"workers": t.workers.astype(int)})
        for column, heading, form in (
                ("cores", "cores", _fmt), ("wall_s", "wall time (s)", "{:.2f}".format),
                ("speedup", "speed-up", "{:.2f}".format),
                ("efficiency", "efficiency", "{:.2f}".format),
                ("core_hours", "core-hours", "{:.4f}".format),
                ("sims_per_s", "sims/s", "{:.1f}".format),
                ("same_population", "same population", lambda x: "yes" if bool(x) else "NO")):
            if column in t:
                out[heading] = t[column].map(form)
        return out.to_string(index=False)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table (:data:`COLUMNS`, one row per worker count) as CSV.

        Parameters
        ----------
        path : str or path-like
            The file to write (its folder must exist).

        Returns
        -------
        pathlib.Path
            The file written.

        Raises
        ------
        InputError
            When the file cannot be written.
        """
        path = Path(path)
        try:
            self.table.to_csv(path, index=False)
        except OSError as exc:
            raise InputError(f"cannot write the scaling table to {str(path)!r}: "
                             f"{exc.strerror or exc}; check that the folder exists and is "
                             "writable.") from None
        return path

    def plot(self, target: Any = None):
        """Draw wall time, speed-up and efficiency against workers (log2 axes, ideal lines,
        the threshold and the knee).

        Parameters
        ----------
        target : str, path-like, matplotlib Figure or sequence of three Axes, optional
            A file name: the figure is saved there (PNG, PDF or SVG, from the suffix).
            A ``Figure``: three panels are added to it. Three ``Axes``: one panel on each.
            Default: a new figure, returned.

        Returns
        -------
        matplotlib.figure.Figure
            The figure drawn on.

        Raises
        ------
        InputError
            When matplotlib is not installed (``pip install 'dabc[viz]'``), ``target`` is
            neither a path, a Figure nor three Axes, or the file cannot be written.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise InputError("plotting a scaling study needs matplotlib: pip install "
                             "'dabc[viz]' (or pip install matplotlib).") from None
        path = None
        if target is None or isinstance(target, str | os.PathLike):
            path = target
            fig = Figure(figsize=(13, 4.2), layout="constrained")
            axes = fig.subplots(1, 3)
        elif isinstance(target, Figure):
            fig, axes = target, target.subplots(1, 3)
        else:
            axes = list(target) if isinstance(target, Sequence | np.ndarray) else [target]
            if len(axes) != 3 or not all(hasattr(a, "plot") for a in axes):
                raise InputError("plot() draws three panels: give a file name, a matplotlib "
                                 f"Figure or three Axes, not {type(target).__name__}.")
            fig = axes[0].figure
        self._draw(fig, axes)
        if path is not None:
            try:
                fig.savefig(path, dpi=120)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot write the figure to {os.fspath(path)!r}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
        return fig

    def _draw(self, fig, axes) -> None:
        from matplotlib.ticker import FuncFormatter, NullLocator

        t = self.table
        w = t.workers.to_numpy(dtype=float)
        base, t_base = w[0], float(t.wall_s.iloc[0])
        knee = self.knee
        grid = np.geomspace(w.min(), w.max(), 50) if len(w) > 1 else w
        a_time, a_speed, a_eff = axes
        each_run = self.runs is not None and len(self.runs) > len(t)  # repeats: show them
        ticks = (w, [_fmt(n) for n in w])
        # runtime
        a_time.plot(grid, t_base * base / grid, "--", color="grey", label="ideal")
        if each_run:
            a_time.plot(self.runs.workers, self.runs.wall_s, ".", color="C0", alpha=0.4,
                        label="each run")
        a_time.plot(w, t.wall_s, "o-", color="C0", label="measured (median)")
        a_time.set_yscale("log")
        for axis in (a_time.yaxis.set_major_formatter, a_time.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
        a_time.set_ylabel("wall time (s)")
        a_time.set_title("Runtime")
        # speed-up
        a_speed.plot(grid, grid, "--", color="grey", label="ideal")
        a_speed.plot(w, t.speedup, "o-", color="C1", label="measured")
        a_speed.set_yscale("log", base=2)
        a_speed.set_ylabel("speed-up over 1 worker" if base == 1 else
                           f"speed-up (T_{_fmt(base)} x {_fmt(base)} / T_n)")
        a_speed.set_title("Speed-up")
        # efficiency
        a_eff.axhline(1.0, ls="--", color="grey", label="ideal")
        a_eff.axhline(self.threshold, ls=":", color="C3", label=f"threshold {self.threshold:g}")
        if each_run:
            each = t_base * base / self.runs.wall_s / self.runs.workers
            a_eff.plot(self.runs.workers, each, ".", color="C2", alpha=0.4, label="each run")
        a_eff.plot(w, t.efficiency, "o-", color="C2", label="measured (median)")
        for n, e in zip(w, t.efficiency, strict=True):
            a_eff.annotate(f"{e:.2f}", (n, e), textcoords="offset points", xytext=(0, 7),
                           ha="center", fontsize=8)
        if knee is not None:
            for ax in axes:
                ax.axvline(knee, color="C3", alpha=0.35, lw=6, zorder=0)
            a_eff.annotate(f"knee: {knee}", (knee, self.threshold), textcoords="offset points",
                           xytext=(4, -14), color="C3", fontsize=9)
        top = max(1.1, float(np.nanmax(t.efficiency)) + 0.1) if len(t) else 1.1
        a_eff.set_ylim(0, top)
        a_eff.set_ylabel("efficiency (speed-up / workers)")
        a_eff.set_title("Efficiency")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xticks(*ticks)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("workers")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        a_speed.set_yticks(*ticks)
        sentence = knee_sentence(t.workers.tolist(), t.efficiency.tolist(), self.threshold,
                                 self.cores_per_worker)
        title = f"{self.title or 'Scaling study'}\n{sentence}"
        if not self.identical:
            title += "\nWARNING: the populations differ between worker counts"
        fig.suptitle(title, fontsize=10, color="C3" if not self.identical else "black")


# --- the study -----------------------------------------------------------------------------
def parse_workers(workers: Sequence[int] | str) -> list[int]:
    """Worker counts from a sequence or a text such as ``"1,2,4,8"``: sorted, distinct,
    each at least 1.

    Parameters
    ----------
    workers : sequence of int or str
        The counts.

    Returns
    -------
    list of int
        Sorted, without duplicates.

    Raises
    ------
    InputError
        When a count is not a whole number of at least 1, or none is given.
    """
    items = workers.split(",") if isinstance(workers, str) else list(workers)
    out = set()
    for item in items:
        text = str(item).strip()
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or (not isinstance(item, str) and n != item) or n < 1:
            raise InputError(f"worker counts are whole numbers of at least 1 (e.g. 1,2,4,8); "
                             f"got {item!r}.")
        out.add(n)
    if not out:
        raise InputError("give at least one worker count, e.g. workers=(1, 2, 4, 8).")
    return sorted(out)


def fingerprint(history: History) -> str:
    """A digest of everything the determinism contract covers in a stored run: per
    generation its epsilon, simulation count, model probabilities, and every particle's
    parameters, weight, distance, statistics and id.

    Parameters
    ----------
    history : History
        The run.

    Returns
    -------
    str
        16 hexadecimal digits; equal for runs with identical populations.
    """
    h = hashlib.sha256()
    pops = history.get_all_populations()
    probs = history.get_model_probabilities()
    for t, eps, n in zip(pops.t, pops.epsilon, pops.n_simulations, strict=True):
        h.update(np.asarray([t, eps, n], dtype=float).tobytes())
        h.update(probs.loc[int(t)].to_numpy(dtype=float).tobytes())
        for m, arrays in sorted(history.get_arrays(int(t)).items()):
            h.update(str(m).encode())
            for key in ("theta", "weight", "distance", "stats", "id"):
                if key in arrays:
                    a = np.ascontiguousarray(arrays[key])
                    h.update(f"{key}{a.dtype.str}{a.shape}".encode())
                    h.update(a.tobytes())
    return h.hexdigest()[:16]


def _warm_up() -> None:
    """Run on each worker before timing. Its body is empty on purpose: to unpickle it, the
    worker imports this module, hence the engine, the samplers and storage, which the first
    task would otherwise import inside the timed run."""


def _scale(cluster, client, n: int, timeout: float) -> dict:
    """Scale ``cluster`` to ``n`` workers and wait until exactly ``n`` are connected."""
    cluster.scale(n)
    start = time.monotonic()
    reported = start
    while True:
        nthreads = client.nthreads()
        if len(nthreads) == n:
            break
        now = time.monotonic()
        if now - start > timeout:
            raise WorkerError(f"the cluster did not reach {n} workers within {timeout:.0f} s "
                              f"({len(nthreads)} connected); check that it can start that "
                              "many (for SLURM: squeue shows why jobs wait) or raise "
                              "worker_timeout.")
        if now - reported >= 10:
            log.info("scaling study: waiting for workers: %d of %d connected after %.0f s",
                     len(nthreads), n, now - start)
            reported = now
        time.sleep(0.1)
    if time.monotonic() - start > 1:
        log.info("scaling study: %s ready after %.1f s", _plural(n, "worker"),
                 time.monotonic() - start)
    if n:
        client.run(_warm_up)
    return nthreads


def _describe(cluster) -> str:
    name = type(cluster).__name__
    return "LocalCluster" if name == "QuietLocalCluster" else name  # dabc's loopback-only one


def scaling_study(make_abc: Callable[[Sampler], ABCSMC] | None = None,
                  observed: Mapping | None = None,
                  workers: Sequence[int] | str = (1, 2, 4, 8), cluster: Any = None, *,
                  workload: str = "sleep100", population_size: int | None = None,
                  seed: int = 1, repeats: int = 1, threshold: float = 0.7,
                  cores_per_worker: float | None = None, db: str | None = None,
                  worker_timeout: float = 600.0,
                  sampler_options: Mapping[str, Any] | None = None,
                  abc_progress: bool = False, **run_kwargs: Any) -> ScalingResult:
    """Run the same analysis at each worker count and measure how well it scales.

    For each count (smallest first; with ``repeats``, all counts once, then again, so that
    a machine's drifting load spreads over every count), the cluster is scaled to exactly
    that many workers, ``make_abc`` builds the analysis with a fresh
    :class:`~dabc.samplers.DaskDistributedSampler` on it, and ``abc.run(observed, db=...,
    **run_kwargs)`` is timed. Progress is logged on ``logging.getLogger("dabc.cluster")`` at
    INFO (each run's time and speed-up; waiting for workers every 10 s).

    Parameters
    ----------
    make_abc : callable, optional
        ``make_abc(sampler) -> ABCSMC``: builds the analysis, the same each time (same
        model, prior, population size and seed), with the sampler it is given. Default:
        the built-in ``workload``. An ABCSMC whose ``progress`` is None gets
        ``abc_progress``.
    observed : mapping, optional
        The observed data for ``abc.run``; required with ``make_abc``, ignored without.
    workers : sequence of int or str, default (1, 2, 4, 8)
        The worker counts (``"1,2,4,8"`` works too); run in increasing order.
    cluster : Dask cluster, optional
        Anything with ``scale(n)`` that a ``distributed.Client`` connects to:
        ``LocalCluster``, dask-jobqueue's clusters, :class:`dabc.cluster.SLURMCluster`, or
        a ``Client`` of such a cluster. It is scaled back to its worker count before the
        study when the study ends, and left open. Default: a local cluster of one-thread
        worker processes (:func:`dabc.samplers.dask.local_cluster`), started and closed by
        the study.
    workload : str, default "sleep100"
        The built-in analysis used without ``make_abc``: a key of :data:`WORKLOADS`
        (``sleep100``, ``sleep10``, ``cpu``, ``fast``).
    population_size : int, optional
        The built-in workload's particles per generation (default: the workload's).
    seed : int, default 1
        The built-in workload's seed.
    repeats : int, default 1
        Runs per worker count; the table reports the median wall time (and min, max).
    threshold : float, default 0.7
        The efficiency the knee must keep (above 0, at most 1).
    cores_per_worker : float, optional
        Cores each worker uses, for the cost in core-hours. Default: its thread count as
        the scheduler reports it.
    db : str, optional
        Database every run is stored in (one database holds many runs). Default: each run
        in its own temporary SQLite file, removed after the study.
    worker_timeout : float, default 600
        Seconds to wait for the cluster to reach a worker count (SLURM jobs may pend).
    sampler_options : mapping, optional
        Keyword arguments for each ``DaskDistributedSampler`` (``batch_size``, ...).
    abc_progress : bool, default False
        Show the ABC progress line of each run.
    **run_kwargs
        Passed to ``ABCSMC.run``: stopping rules such as ``max_generations``,
        ``minimum_epsilon``, ``max_total_simulations``. The built-in workloads default to
        their own ``max_generations``. A time-based rule (``max_walltime``) makes the runs
        differ, which the population check then reports.

    Returns
    -------
    ScalingResult
        The table, every run, the knee and a summary sentence.

    Raises
    ------
    InputError
        When a worker count, the threshold, ``repeats``, the workload or ``observed`` is
        unusable, ``make_abc`` does not return an ABCSMC, or ``cluster`` cannot be scaled.
    WorkerError
        When the cluster does not reach a worker count within ``worker_timeout``, or a
        run's workers fail.

    Warns
    -----
    Logs a WARNING on ``dabc.cluster.scaling`` when the runs' populations differ (the table
    flags the counts) or ``make_abc`` gave different seeds.

    Examples
    --------
    The built-in workload on a local cluster:

    >>> from dabc.cluster import scaling_study
    >>> result = scaling_study(workers=[1, 2, 4], workload="sleep10",
    ...                        population_size=50, max_generations=2)  # doctest: +SKIP
    >>> print(result.summary)  # doctest: +SKIP
    >>> result.to_csv("scaling.csv"); result.plot("scaling.png")  # doctest: +SKIP

    Your own analysis on SLURM:

    >>> def make_abc(sampler):
    ...     return dabc.ABCSMC(model, prior, population_size=500, sampler=sampler, seed=3)
    >>> with dabc.cluster.SLURMCluster(cores=1, memory="2GB") as cluster:  # doctest: +SKIP
    ...     result = scaling_study(make_abc, observed, workers=[4, 8, 16, 32, 64],
    ...                            cluster=cluster, max_generations=8)
    """
    counts = parse_workers(workers)
    threshold = _check_threshold(threshold)
    _check_count("repeats", repeats)
    if cores_per_worker is not None and not cores_per_worker > 0:
        raise InputError(f"cores_per_worker must be positive, got {cores_per_worker!r}.")
    make_abc, observed, what = _analysis(make_abc, observed, workload, population_size, seed,
                                         run_kwargs)
    if "db" in run_kwargs:
        raise InputError("give the database as scaling_study(..., db=...).")
    cluster, client, own = _cluster_and_client(cluster)
    own_client = client is None
    tmp = before = None
    records: list[dict] = []
    threads: dict[int, float] = {}
    try:
        if own_client:
            from distributed import Client

            client = Client(cluster)
        before = len(client.nthreads())  # restored at the end
        if db is None:
            tmp = tempfile.TemporaryDirectory(prefix="dabc-scaling-")
        title = f"{what} on {_describe(cluster)}"
        log.info("scaling study: %s, workers %s, %s", title, ",".join(map(str, counts)),
                 _plural(repeats, "repeat"))
        base_walls: list[float] = []  # the smallest count's wall times so far
        for r in range(repeats):
            for n in counts:
                nthreads = _scale(cluster, client, n, worker_timeout)
                threads[n] = statistics.median(nthreads.values())
                url = db if db is not None else \
                    f"sqlite:///{os.path.join(tmp.name, f'run-{n}-{r}.db')}"
                rec = {"workers": n, "repeat": r,
                       **_timed_run(client, make_abc, observed, url, sampler_options,
                                    abc_progress, run_kwargs)}
                records.append(rec)
                if n == counts[0]:
                    base_walls.append(rec["wall_s"])
                speedup = statistics.median(base_walls) * counts[0] / rec["wall_s"]
                log.info("scaling study: %s (repeat %d of %d): %.2f s, %d simulations, "
                         "speed-up %.2f, efficiency %.2f", _plural(n, "worker"), r + 1,
                         repeats, rec["wall_s"], rec["simulations"], speedup, speedup / n)
    finally:
        _give_back(cluster, client, own, own_client, before, worker_timeout)
        if tmp is not None:
            tmp.cleanup()
    runs = pd.DataFrame(records)
    title += f", {_plural(threads[counts[0]], 'thread')} per worker"
    table = _table(runs, counts, cores_per_worker, threads)
    if runs.seed.nunique() > 1:
        log.warning("scaling study: make_abc built analyses with different seeds (%s); pass "
                    "seed= to ABCSMC so that every count runs the same analysis",
                    ", ".join(map(str, runs.seed.unique())))
    result = ScalingResult(table, runs, threshold, title,
                           cores_per_worker if cores_per_worker is not None
                           else threads[counts[0]])
    if not result.identical:
        log.warning("scaling study: %s", result.summary.split("WARNING: ", 1)[-1])
    log.info("scaling study: %s", knee_sentence(table.workers.tolist(),
                                                table.efficiency.tolist(), threshold,
                                                result.cores_per_worker))
    return result


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a whole number of at least 1, got {value!r}.")


def _analysis(make_abc: Callable[[Sampler], ABCSMC] | None, observed: Mapping | None,
              workload: str, population_size: int | None, seed: int,
              run_kwargs: dict[str, Any]) -> tuple[Callable[[Sampler], ABCSMC], Mapping, str]:
    """``(make_abc, observed, what)``: the user's analysis, or the built-in ``workload``
    (whose ``max_generations`` then goes into ``run_kwargs`` unless given)."""
    if make_abc is not None:
        if not callable(make_abc):
            raise InputError("make_abc must be a function make_abc(sampler) -> ABCSMC, got "
                             f"{type(make_abc).__name__}.")
        if observed is None:
            raise InputError("scaling_study(make_abc, observed, ...) needs the observed data "
                             "for abc.run, e.g. {'y': 1.0}.")
        return make_abc, observed, getattr(make_abc, "__name__", "make_abc")
    if workload not in WORKLOADS:
        raise InputError(f"unknown workload {workload!r}; the built-in ones are "
                         f"{', '.join(WORKLOADS)}.")
    wl = WORKLOADS[workload]
    if population_size is not None:
        _check_count("population_size", population_size)
    run_kwargs.setdefault("max_generations", wl.generations)
    return (wl.make_abc(population_size, seed), wl.observed(),
            f"workload {wl.name} ({wl.description}), population "
            f"{population_size or wl.population_size}")


def _cluster_and_client(cluster: Any) -> tuple[Any, Any, bool]:
    """``(cluster, client or None, whether the study owns the cluster)`` for ``cluster=``."""
    from distributed import Client

    if cluster is None:
        return local_cluster(n_workers=0), None, True
    client = None
    if isinstance(cluster, Client):
        client, cluster = cluster, cluster.cluster
        if cluster is None:
            raise InputError("this Client is connected to a scheduler whose cluster object "
                             "lives elsewhere, so the study cannot scale it; give the cluster "
                             "object (LocalCluster, SLURMCluster, ...) as cluster=.")
    if not callable(getattr(cluster, "scale", None)):
        raise InputError(f"cluster= must have a scale(n) method (LocalCluster, "
                         f"SLURMCluster, ...), got {type(cluster).__name__}.")
    return cluster, client, False


def _timed_run(client: Any, make_abc: Callable[[Sampler], ABCSMC], observed: Mapping,
               url: str, sampler_options: Mapping[str, Any] | None, abc_progress: bool,
               run_kwargs: dict[str, Any]) -> dict[str, Any]:
    """One run of the analysis on ``client``'s workers: its wall time, counts and
    fingerprint."""
    sampler = DaskDistributedSampler(client, **dict(sampler_options or {}))
    abc = make_abc(sampler)
    if not isinstance(abc, ABCSMC):
        raise InputError(f"make_abc must return an ABCSMC, got {type(abc).__name__}.")
    if abc.sampler is not sampler:
        raise InputError("make_abc must build the ABCSMC with the sampler it is given "
                         "(ABCSMC(..., sampler=sampler)).")
    if abc.progress is None:
        abc.progress = abc_progress
    tic = time.perf_counter()
    history = abc.run(observed, db=url, **run_kwargs)
    wall = time.perf_counter() - tic
    pops = history.get_all_populations()
    rec = {"wall_s": wall, "simulations": int(pops.n_simulations.sum()),
           "evaluations": int(pops.n_evaluated.sum()), "generations": len(pops),
           "seed": abc.seed, "population": fingerprint(history)}
    history.engine.dispose()
    return rec


def _give_back(cluster: Any, client: Any, own: bool, own_client: bool, before: int | None,
               worker_timeout: float) -> None:
    """After the study: a user's cluster back at its worker count (SLURM jobs cost); the
    study's own workers retired, then its client and cluster closed."""
    if not own and before is not None:
        try:
            _scale(cluster, client, before, worker_timeout)
        except Exception as exc:  # noqa: BLE001 - never hide the study's own error
            log.warning("scaling study: could not scale the cluster back to %d workers: "
                        "%s", before, exc)
    if own and client is not None:
        try:  # workers that retire first close at once, not killed after 4 s
            _scale(cluster, client, 0, 30.0)
        except Exception as exc:  # noqa: BLE001 - closing kills them anyway
            log.debug("scaling study: retiring the workers before closing: %s", exc)
    if own_client and client is not None:
        client.close()
    if own:
        cluster.close()


def _table(runs: pd.DataFrame, counts: list[int], cores_per_worker: float | None,
           threads: dict[int, float]) -> pd.DataFrame:
    """One row per worker count from the runs (median wall time over repeats)."""
    reference = runs.population.iloc[0]  # the first run at the smallest count
    rows = []
    for n in counts:
        mine = runs[runs.workers == n]
        wall = float(mine.wall_s.median())
        cpw = cores_per_worker if cores_per_worker is not None else threads[n]
        first = mine.iloc[0]
        rows.append({"workers": n, "cores": n * cpw, "wall_s": wall,
                     "wall_s_min": float(mine.wall_s.min()),
                     "wall_s_max": float(mine.wall_s.max()), "repeats": len(mine),
                     "core_hours": wall * n * cpw / 3600,
                     "simulations": int(first.simulations),
                     "evaluations": int(first.evaluations),
                     "sims_per_s": first.simulations / wall if wall > 0 else math.nan,
                     "same_population": bool((mine.population == reference).all()),
                     "population": first.population})
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["speedup"] = base.wall_s * base.workers / table.wall_s
    table["efficiency"] = table.speedup / table.workers
    return table[list(COLUMNS)]
