"""Block-sequential SAGA over the row chunks of a Dask array.

An epoch visits the row chunks one after another (in a seeded order); the task for chunk ``c``
is :func:`dabc.learn._core.chunk_epoch` (through :func:`_chunk_task`), a pure function of

* the chunk ``X_c`` (already on a worker: ``X`` is persisted once),
* its targets ``Y_c`` (a task of its own on the worker that holds ``X_c``, so that the
  scheduler can recompute it if that worker is lost; the same for the initial state),
* its gradient memory (the output of the previous epoch's task for chunk ``c``, so it never
  leaves that worker),
* the *state*: weights, intercepts and the gradient averages (``k x n_features`` numbers, the
  only data that travels from chunk to chunk), and a seed derived from ``(random_state, epoch,
  chunk)``.

Each chunk task is pinned (softly, ``allow_other_workers=True``) to the worker that holds its
chunk; its output (memory, state) stays there as the next epoch's input for the chunk, and
only the state is extracted (on that worker, by a tiny task) and sent on to the next chunk.
Averages divide by the global number of samples. The client fetches only the state at the end
of an epoch (to test convergence), while the next epoch is already queued.

Without a ``distributed`` client the same tasks run in this process, in the same order and
with the same seeds, so both give identical weights.
"""

from __future__ import annotations

import operator
import uuid
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import column_or_1d

from .._compat.dask_array import chunk_meta
from . import _core

__all__ = ["validate_dask", "solve_dask", "total_loss", "map_rows"]


def _client():
    """The current ``distributed`` client, or ``None`` (then tasks run in this process)."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - dask without distributed
        return None
    try:
        return default_client()
    except ValueError:
        return None


def validate_dask(est, X, y, reset: bool) -> tuple[Any, np.ndarray]:
    """Check a Dask ``X`` (2-D, numeric, known row chunks) and bring ``y`` to numpy.

    ``X`` is rechunked to a single column chunk (whole rows per chunk) but not computed; ``y``
    (``n x k`` numbers, small next to ``X``) is computed if it is a Dask array. Sets or checks
    ``n_features_in_`` like scikit-learn's ``validate_data``. Non-finite values in ``X`` are
    reported by the first pass over the chunks (:func:`solve_dask`).
    """
    name = type(est).__name__
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D Dask array X, got {X.ndim} dimensions.")
    if np.dtype(X.dtype).kind not in "biuf":
        raise ValueError(f"{name}: X must be numeric, got dtype {X.dtype}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(f"{name}: X has unknown chunk sizes; call X.compute_chunk_sizes() "
                         f"first.")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if hasattr(y, "compute"):
        y = y.compute()
    y = np.asarray(y)
    if is_classifier(est):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # DataConversionWarning, as scikit-learn
        if y.ndim != 1:
            raise ValueError(f"{name}: y must be 1-D class labels, got shape {y.shape}.")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"{name}: y has shape {y.shape}, expected ({X.shape[0]},) or "
                         f"({X.shape[0]}, k) to match X with {X.shape[0]} rows.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: X has shape {X.shape}; need at least 1 sample and "
                         f"1 feature.")
    if np.dtype(y.dtype).kind in "fc" and not np.isfinite(y).all():
        raise ValueError(f"{name}: y contains NaN or infinity.")
    if reset:
        est.n_features_in_ = X.shape[1]
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {name} is expecting "
                         f"{est.n_features_in_} features as input.")
    return X, y


def _row_slices(X) -> list[slice]:
    ends = np.cumsum((0,) + tuple(int(c) for c in X.chunks[0]))
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _combine_stats(stats) -> tuple[int, float, np.ndarray | None]:
    n = sum(s[0] for s in stats)
    max_sq = max(s[1] for s in stats)
    if not all(s[3] for s in stats):
        raise ValueError("Input X contains NaN or infinity.")
    counts = None
    if stats[0][2] is not None:
        counts = np.sum([s[2] for s in stats], axis=0)
    return n, max_sq, counts


def _problem(loss, k, a1, a2, fit_intercept, stats) -> _core.Problem:
    n, max_sq, counts = _combine_stats(stats)
    colscale = None
    if counts is not None:
        colscale = np.where(counts > 0, n / np.maximum(counts, 1), 0.0)
    return _core.Problem(loss=loss, k=k, a1=a1, a2=a2,
                         step=_core.step_size(loss, max_sq, fit_intercept), n_total=n,
                         fit_intercept=fit_intercept, colscale=colscale)


def _initial_state(W, b, k, tables, n, fit_intercept):
    if tables is None:
        return (W, b, np.zeros_like(W), np.zeros(k))
    gbar = np.sum([t[0] for t in tables], axis=0) / n
    gbar_b = np.sum([t[1] for t in tables], axis=0) / n if fit_intercept else np.zeros(k)
    return (W, b, gbar, gbar_b)


def _identity(x):
    return x


def _table_sums(X, Y, W, b, loss):
    """(memory, (sum g x^T, sum g)) at ``(W, b)``: the first stays, the second travels."""
    G, S, s = _core.chunk_grad_table(X, Y, W, b, loss)
    return G, (S, s)


def _chunk_task(X, Y, previous, state, seed, problem):
    """Dask task of one chunk and epoch: ``previous`` is this chunk's output of the previous
    epoch (or of the gradient-table pass, or ``None``), whose first item is the memory."""
    mem = None if previous is None else previous[0]
    return _core.chunk_epoch(X, Y, mem, state, seed, problem)


def _kernel_chunks(X):
    """``X`` with every chunk in the kernels' input form (:func:`_core.kernel_input`): done
    once per fit, in the graph, instead of in every epoch's task."""
    return X.map_blocks(_core.kernel_input, dtype=np.float64,
                        meta=chunk_meta(X, dtype=np.float64))


def solve_dask(X, Y: np.ndarray, loss: int, k: int, W: np.ndarray, b: np.ndarray, a1: float,
               a2: float, fit_intercept: bool, max_iter: int, tol: float, seed: int,
               partial: bool, b_scale: float) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Run SAGA epochs over the row chunks of ``X``; returns ``(W, b, epochs, converged)``.

    ``partial``: the memory starts at the exact gradients at ``(W, b)`` (one extra pass);
    otherwise at zero. ``b_scale``: see :func:`dabc.learn._core.converged`.
    """
    client = _client()
    if client is None:
        return _solve_local(X, Y, loss, k, W, b, a1, a2, fit_intercept, max_iter, tol, seed,
                            partial, b_scale)
    from distributed import futures_of, wait

    rows = _row_slices(X)
    nb = len(rows)
    Xp = client.persist(_kernel_chunks(X))
    by_key = {f.key: f for f in futures_of(Xp)}
    xb = [by_key[(Xp.name, c, 0)] for c in range(nb)]
    wait(xb)
    who = client.who_has(xb)
    home = [list(who[f.key]) or None for f in xb]
    tag = uuid.uuid4().hex[:10]

    def submit(fn, *args, key: str, where=None):
        return client.submit(fn, *args, key=f"saga-{key}-{tag}", workers=where,
                             allow_other_workers=where is not None, pure=False)

    # tasks, not scatter: the scheduler keeps their inputs and can recompute a lost result
    yb = [submit(_core.kernel_array, np.array(Y[r]), key=f"y-{c}", where=home[c])
          for c, r in enumerate(rows)]

    stats = client.gather([submit(_core.chunk_stats, xb[c], key=f"stats-{c}", where=home[c])
                           for c in range(nb)])
    problem = _problem(loss, k, a1, a2, fit_intercept, stats)
    n = problem.n_total
    [problem_f] = client.scatter([problem], broadcast=True, hash=False)
    mem: list[Any] = [None] * nb
    tables = None
    if partial:
        tabs = [submit(_table_sums, xb[c], yb[c], W, b, loss, key=f"table-{c}", where=home[c])
                for c in range(nb)]
        mem = tabs  # (memory, sums): the memory part is read by _chunk_task
        tables = client.gather([submit(operator.getitem, tabs[c], 1, key=f"sums-{c}",
                                       where=home[c]) for c in range(nb)])
    state_f = submit(_identity, _initial_state(W, b, k, tables, n, fit_intercept),
                     key="init-state")

    def submit_epoch(epoch: int, state):
        for c in _core.chunk_order(seed, epoch, nb):
            # the whole output (memory, state) stays on the chunk's worker as the next
            # epoch's input for this chunk; only its state part is extracted and sent on
            mem[c] = submit(_chunk_task, xb[c], yb[c], mem[c], state,
                            _core.epoch_seed(seed, epoch, c), problem_f,
                            key=f"epoch-{epoch}-{c}", where=home[c])
            state = submit(operator.getitem, mem[c], 1, key=f"state-{epoch}-{c}",
                           where=home[c])
        return state

    try:
        ahead = submit_epoch(0, state_f)
        for epoch in range(max_iter):
            current = ahead
            ahead = submit_epoch(epoch + 1, current) if epoch + 1 < max_iter else None
            W_new, b_new = current.result()[:2]
            if _core.converged(W, b, W_new, b_new, tol, b_scale):
                return W_new, b_new, epoch + 1, True
            W, b = W_new, b_new
        return W, b, max_iter, False
    finally:
        if ahead is not None:
            ahead.cancel()


def _solve_local(X, Y, loss, k, W, b, a1, a2, fit_intercept, max_iter, tol, seed, partial,
                 b_scale):
    """:func:`solve_dask` without a cluster: the same pure tasks, run in this process."""
    rows = _row_slices(X)
    X = _kernel_chunks(X).persist(scheduler="sync")
    xb = [X.blocks[c].compute(scheduler="sync") for c in range(len(rows))]
    yb = [_core.kernel_array(np.array(Y[r])) for r in rows]
    problem = _problem(loss, k, a1, a2, fit_intercept, [_core.chunk_stats(x) for x in xb])
    mem: list[Any] = [None] * len(xb)
    tables = None
    if partial:
        out = [_table_sums(x, y, W, b, loss) for x, y in zip(xb, yb, strict=True)]
        mem = [o[0] for o in out]
        tables = [o[1] for o in out]
    state = _initial_state(W, b, k, tables, problem.n_total, fit_intercept)
    for epoch in range(max_iter):
        for c in _core.chunk_order(seed, epoch, len(xb)):
            mem[c], state = _core.chunk_epoch(xb[c], yb[c], mem[c], state,
                                              _core.epoch_seed(seed, epoch, c), problem)
        if _core.converged(W, b, state[0], state[1], tol, b_scale):
            return state[0], state[1], epoch + 1, True
        W, b = state[0], state[1]
    return W, b, max_iter, False


def total_loss(X, Y: np.ndarray, W: np.ndarray, b: np.ndarray, loss: int) -> float:
    """Sum of the per-sample losses over all chunks (computed on the current scheduler)."""
    import dask

    parts = [dask.delayed(_core.chunk_loss)(X.blocks[c, 0], Y[r], W, b, loss)
             for c, r in enumerate(_row_slices(X))]
    return float(sum(dask.compute(*parts)))


def map_rows(fn, X, cols: int | None, dtype) -> Any:
    """Apply a row-wise numpy prediction ``fn`` to every row chunk of ``X`` (lazily).

    ``cols``: ``None`` for a 1-D result per chunk, else the number of output columns.
    """
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if cols is None:
        return X.map_blocks(_rows_or_empty, fn, (), dtype, dtype=dtype, drop_axis=1,
                            chunks=(X.chunks[0],), meta=np.empty((0,), dtype=dtype))
    return X.map_blocks(_rows_or_empty, fn, (cols,), dtype, dtype=dtype,
                        chunks=(X.chunks[0], (cols,)), meta=np.empty((0, 0), dtype=dtype))


def _rows_or_empty(block, fn, tail: tuple, dtype):
    """``fn(block)``, or an empty result for a chunk without rows (which scikit-learn's input
    validation would reject)."""
    if block.shape[0] == 0:
        return np.empty((0, *tail), dtype=dtype)
    return fn(block)
