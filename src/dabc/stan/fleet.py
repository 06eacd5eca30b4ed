"""sample_many: fit one or many Stan models to many data sets, one task per (model, data set)."""

from __future__ import annotations

import copy
import logging
import sys
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .artifact import stats
from .errors import StanEnvironmentError
from .fit import Fit, run_fit
from .model import StanModel

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger("dabc.stan")

_SHIPPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> shipped keys
_TABLE_COLUMNS = ["model", "dataset", "ok", "parameter", "mean", "sd", "mcse_mean", "ess_bulk",
                  "ess_tail", "r_hat", "q5", "q50", "q95", "seed", "seconds", "error"]


def ship(model: StanModel, client: Client) -> None:
    """Send ``model``'s compiled artifact to every worker of ``client`` once.

    Uses an idempotent Dask worker plugin keyed by the artifact's hash: calling this again (or
    running another fleet with the same model) sends nothing; workers that join later receive
    it automatically.

    Parameters
    ----------
    model
        The compiled model, in the process that created it (it carries the bytes).
    client
        A ``distributed.Client``.

    Raises
    ------
    StanEnvironmentError
        Saying which field differs, with both values, when a worker's environment cannot use
        the artifact.
    dabc.InputError
        When ``model`` carries no bytes here (it was unpickled from a task).
    """
    from ._dask import ArtifactPlugin

    key = (getattr(client.scheduler, "address", None), model.hash)
    done = _SHIPPED.setdefault(client, set())
    if key in done:  # the scheduler has it already: do not even upload it again
        return
    if model.artifact.data is None:
        raise InputError(f"{model!r} carries no compiled bytes here; ship it from the process "
                         "that created it.")
    logger.info("shipping Stan artifact %s (model %r, %.1f MB compressed) to the workers of "
                "%s", model.hash[:12], model.name, model.artifact.compressed_size / 1e6, key[0])
    try:
        client.register_plugin(ArtifactPlugin(model.artifact))
    except StanEnvironmentError:
        raise
    except Exception as exc:  # the worker's exception may arrive as a different class
        if "different environment" in str(exc):
            raise StanEnvironmentError(str(exc)) from None
        raise
    done.add(key)


def worker_stats(client: Client) -> dict[str, dict]:
    """:func:`dabc.stan.stats` of every worker of ``client``.

    Parameters
    ----------
    client
        A ``distributed.Client``.

    Returns
    -------
    dict
        Worker address -> that worker's :func:`~dabc.stan.stats`.
    """
    return client.run(stats)


class _Progress:
    """One rewritten stderr line: fits done, failures, elapsed time."""

    def __init__(self, total: int, enabled: bool | None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = bool(self.stream.isatty()) if enabled is None else bool(enabled)
        self.total, self.done, self.failed = total, 0, 0
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, fit: Fit) -> None:
        """Count ``fit`` and redraw the line (a failure gets a line of its own)."""
        self.done += 1
        self.failed += not fit.ok
        if not self.enabled:
            return
        if not fit.ok:
            self.stream.write(f"\r\033[Kfit {fit.model!r} / data set {fit.dataset!r} failed: "
                              f"{fit.error}\n")
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.done == self.total or not fit.ok:
            self._last = now
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(
                f"\r\033[Kstan fleet [{'#' * filled}{'.' * (width - filled)}] {self.done}/"
                f"{self.total} fits, {self.failed} failed, {now - self.start:.1f} s")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


class Fleet:
    """The fits of one :func:`sample_many` call.

    Iterate over it to get each :class:`Fit` as soon as it completes (iteration happens once;
    later iterations replay the finished fits). ``table``, ``fits``, ``failures`` and
    ``inference_data`` wait for the whole fleet. Each failed fit is logged (``dabc.stan``,
    WARNING) with Stan's message as it arrives.

    Parameters
    ----------
    keys
        The (model name, data set name) pairs, in the order given.
    source
        Yields the fits as they complete.
    progress
        The progress line to update.

    Attributes
    ----------
    wall_seconds : float or None
        Time from creation to the last fit (None until the fleet is done).
    """

    def __init__(self, keys: list[tuple[str, Any]], source: Iterator[Fit], progress: _Progress):
        self.keys = keys
        self._source = source
        self._progress = progress
        self._done: dict[tuple[str, Any], Fit] = {}
        self._order: list[Fit] = []
        self.wall_seconds: float | None = None
        self._start = time.perf_counter()

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[Fit]:
        yield from list(self._order)
        for fit in self._source:
            self._done[(fit.model, fit.dataset)] = fit
            self._order.append(fit)
            if not fit.ok:
                logger.warning("Stan fit of model %r to data set %r failed (%s): %s", fit.model,
                               fit.dataset, fit.error_type, fit.error)
            self._progress.update(fit)
            yield fit
        if self.wall_seconds is None:
            self.wall_seconds = time.perf_counter() - self._start

    def wait(self) -> Fleet:
        """Run the fleet to the end (if not iterated yet).

        Returns
        -------
        Fleet
            self.
        """
        for _ in self:
            pass
        return self

    @property
    def fits(self) -> list[Fit]:
        """All fits, in the order (model, data set) pairs were given."""
        self.wait()
        return [self._done[k] for k in self.keys]

    @property
    def failures(self) -> list[Fit]:
        """The fits that failed, each with Stan's message in ``error``."""
        return [f for f in self.fits if not f.ok]

    @property
    def inference_data(self) -> dict[tuple[str, Any], Any]:
        """ArviZ InferenceData of every successful fit, keyed by (model name, data set name)."""
        return {(f.model, f.dataset): f.inference_data for f in self.fits if f.ok}

    @property
    def table(self) -> pd.DataFrame:
        """Tidy table: one row per (model, data set, scalar quantity); a failed fit is one row
        with ``ok == False`` and Stan's message in ``error``."""
        parts = []
        for f in self.fits:
            if f.ok and f.summary is not None:
                df = f.summary.copy()
                df.insert(0, "ok", True)
                df["error"] = None
            else:
                df = pd.DataFrame({"ok": [False], "parameter": [None], "error": [f.error]})
            df.insert(0, "dataset", [f.dataset] * len(df))
            df.insert(0, "model", f.model)
            df["seed"], df["seconds"] = f.seed, f.seconds
            parts.append(df)
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        return table.reindex(columns=_TABLE_COLUMNS)


def _named_models(models) -> dict[str, StanModel]:
    if isinstance(models, StanModel):
        return {models.name: models}
    items = list(models.items()) if isinstance(models, Mapping) else [
        (getattr(m, "name", str(i)), m) for i, m in enumerate(models)]
    out: dict[str, StanModel] = {}
    for name, m in items:
        if not isinstance(m, StanModel):
            raise InputError(f"sample_many needs StanModel objects, got {type(m).__name__}.")
        name, k = str(name), 1
        while name in out:  # two models with the same name: label them model, model#2, ...
            k += 1
            name = f"{m.name}#{k}"
        out[name] = m
    if not out:
        raise InputError("sample_many needs at least one model.")
    return out


def _named_datasets(datasets) -> dict[Any, Mapping]:
    if isinstance(datasets, Mapping):
        if datasets and all(isinstance(v, Mapping) for v in datasets.values()):
            return dict(datasets)
        return {"data": datasets}  # a single data set
    if isinstance(datasets, Sequence) and not isinstance(datasets, str | bytes):
        return dict(enumerate(datasets))
    raise InputError("datasets must be a dict of data (one data set), a dict of name -> data, "
                     f"or a list of data dicts; got {type(datasets).__name__}.")


def sample_many(
    models: StanModel | Sequence[StanModel] | Mapping[str, StanModel],
    datasets: Mapping | Sequence[Mapping],
    client: Client | None = None,
    chains: int = 4,
    draws: int = 1000,
    seed: int | None = None,
    *,
    warmup: int | None = None,
    progress: bool | None = None,
    sampler_args: Mapping | None = None,
) -> Fleet:
    """Fit every model to every data set, one task per (model, data set).

    Parameters
    ----------
    models
        A :class:`StanModel`, a list of them, or a dict name -> StanModel.
    datasets
        One data dict, a list of data dicts (named 0, 1, ...) or a dict name -> data dict.
    client
        A ``distributed.Client``. Each model's compiled artifact is shipped once per worker;
        each task runs its chains one after another in one thread (use workers with one thread
        each: the cluster provides the parallelism). None runs the fits here, one by one.
    chains, draws, warmup
        NUTS chains per fit, saved draws per chain, warm-up iterations (default: ``draws``).
    seed
        Root seed; each task gets its own seed spawned from it (``numpy.random.SeedSequence``),
        so results do not depend on scheduling.
    progress
        Show a progress bar on stderr (default: when stderr is a terminal).
    sampler_args
        Further Stan NUTS arguments (``delta``, ``max_depth``, ...), the same for every fit.

    Returns
    -------
    Fleet
        Iterate it for fits as they complete, or use ``.table`` (tidy pandas table) and
        ``.inference_data`` (ArviZ, per fit). A fit that fails is reported with Stan's message
        (``Fit.error``, the table's ``error`` column, a ``dabc.stan`` log record) and does not
        stop the others.

    Raises
    ------
    dabc.InputError
        When models are not StanModels, datasets are not data dicts, or chains/draws/warmup
        are out of range.
    StanEnvironmentError
        When a worker's environment cannot use a model's artifact (naming what differs).

    Examples
    --------
    >>> fleet = sample_many(model, {"a": data_a, "b": data_b}, client=client,
    ...                     seed=1)  # doctest: +SKIP
    >>> fleet.table[["dataset", "parameter", "mean", "r_hat"]]  # doctest: +SKIP
    """
    named_models, named_data = _named_models(models), _named_datasets(datasets)
    if int(chains) < 1 or int(draws) < 1 or (warmup is not None and int(warmup) < 0):
        raise InputError(f"chains and draws must be >= 1 and warmup >= 0, got chains={chains}, "
                         f"draws={draws}, warmup={warmup}.")
    pairs = [(mname, m, dname, d) for mname, m in named_models.items()
             for dname, d in named_data.items()]
    children = np.random.SeedSequence(seed).spawn(len(pairs))
    seeds = [int(c.generate_state(1)[0] % (2**31 - 1)) for c in children]
    opts = dict(chains=int(chains), draws=int(draws), warmup=warmup,
                sampler_args=dict(sampler_args or {}))
    keys = [(mname, dname) for mname, _, dname, _ in pairs]
    bar = _Progress(len(pairs), progress)

    def label(m: StanModel, mname: str) -> StanModel:
        if m.name == mname:
            return m
        m2 = copy.copy(m)
        m2.name = mname
        return m2

    if client is None:
        def local() -> Iterator[Fit]:
            for (mname, m, dname, d), s in zip(pairs, seeds, strict=True):
                yield run_fit(label(m, mname), dname, d, seed=s, **opts)

        return Fleet(keys, local(), bar)

    from distributed import as_completed

    for m in {id(m): m for m in named_models.values()}.values():
        ship(m, client)
    futures = {}
    for i, ((mname, m, dname, d), s) in enumerate(zip(pairs, seeds, strict=True)):
        fut = client.submit(run_fit, label(m, mname), dname, d, seed=s, pure=False,
                            key=f"dabc-stan-fit-{i}-{m.hash[:8]}-{time.time_ns()}", **opts)
        futures[fut] = (mname, dname, s)

    def remote() -> Iterator[Fit]:
        for fut in as_completed(list(futures)):
            mname, dname, s = futures.pop(fut)
            if fut.status == "error":  # the task itself died (e.g. the worker crashed)
                exc = fut.exception()
                yield Fit(model=mname, dataset=dname, seed=s, chains=opts["chains"],
                          draws=opts["draws"], ok=False, error=f"{type(exc).__name__}: {exc}",
                          error_type=type(exc).__name__)
            else:
                yield fut.result()
            fut.release()

    return Fleet(keys, remote(), bar)
