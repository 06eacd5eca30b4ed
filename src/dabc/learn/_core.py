"""Pure building blocks shared by the in-memory and the Dask SAGA drivers.

Everything here is a pure function of its arguments: inputs are never modified (the kernels'
in-place updates happen on copies) and randomness comes only from an explicit seed, so a chunk
task gives the same result wherever and however often it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, logsumexp, softmax

from .kernels import LOGISTIC, MULTINOMIAL, SQUARED, saga_epoch_csr, saga_epoch_dense

__all__ = ["Problem", "State", "chunk_epoch", "chunk_stats", "chunk_loss", "chunk_grad_table",
           "step_size", "epoch_seed", "chunk_order", "max_relative_change"]


@dataclass(frozen=True)
class Problem:
    """Constants of one fit: loss code, number of outputs ``k``, penalty and step size.

    ``a1 = alpha * l1_ratio`` and ``a2 = alpha * (1 - l1_ratio)`` are the per-sample-scaled
    penalty weights; ``n_total`` is the global number of samples; ``colscale`` (sparse data
    only) is ``n_total / nnz(column)`` per column (``inf`` for empty columns, never used).
    """

    loss: int
    k: int
    a1: float
    a2: float
    step: float
    n_total: int
    fit_intercept: bool
    colscale: np.ndarray | None = None


State = tuple  # (W (k, p), b (k,), gbar (k, p), gbar_b (k,)), all float64


def step_size(loss: int, max_sq_norm: float, fit_intercept: bool) -> float:
    """``1 / (3 L)`` with ``L`` the largest per-sample Lipschitz constant of the loss gradient.

    ``L = c (max_i |x_i|^2 + fit_intercept)`` with ``c = 1`` for the squared loss, ``1/4`` for
    the binary and ``1/2`` for the multinomial logistic loss (the largest eigenvalue of the
    softmax Hessian is at most 1/2). The L2 penalty is handled by the proximal step, so it does
    not enter ``L``. ``1/(3L)`` is the step of the SAGA convergence theorem (Defazio et al.).
    """
    c = {SQUARED: 1.0, LOGISTIC: 0.25, MULTINOMIAL: 0.5}[loss]
    lip = c * (float(max_sq_norm) + float(fit_intercept))
    return 1.0 / (3.0 * lip) if lip > 0 else 1.0


def epoch_seed(seed: int, epoch: int, chunk: int) -> np.random.SeedSequence:
    """The seed of one chunk task: independent streams per (fit seed, epoch, chunk)."""
    return np.random.SeedSequence([int(seed), int(epoch), int(chunk)])


def chunk_order(seed: int, epoch: int, n_chunks: int) -> np.ndarray:
    """The order in which the chunks are visited in ``epoch`` (a seeded permutation)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(
        n_chunks)


def chunk_epoch(X, Y: np.ndarray, mem: np.ndarray | None, state: State, seed,
                problem: Problem) -> tuple[np.ndarray, State]:
    """One SAGA pass over the rows of one chunk, in a seeded random order.

    ``X`` is a dense array or a CSR matrix (the kernel is chosen per chunk by type), ``Y`` the
    (n_rows, m) float targets, ``mem`` the chunk's gradient memory (``None``: zeros), ``state``
    the weights and gradient averages. Returns the new memory and state; the inputs are not
    modified, so this is a pure function of its arguments (suitable as a Dask task).
    """
    W, b, gbar, gbar_b = (np.array(a, dtype=np.float64, copy=True) for a in state)
    n = X.shape[0]
    mem = (np.zeros((n, problem.k)) if mem is None
           else np.array(mem, dtype=np.float64, copy=True))
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    args = (1.0 / problem.n_total, problem.step, problem.a1, problem.a2, problem.loss,
            problem.fit_intercept)
    if sp.issparse(X):
        X = _as_csr(X)
        saga_epoch_csr(X.data, X.indices, X.indptr, Y, order, problem.colscale, W, b, mem, gbar,
                       gbar_b, *args)
    else:
        saga_epoch_dense(np.ascontiguousarray(X, dtype=np.float64), Y, order, W, b, mem, gbar,
                         gbar_b, *args)
    return mem, (W, b, gbar, gbar_b)


def _as_csr(X) -> sp.csr_matrix:
    """Canonical float64 CSR (sorted, no duplicate indices) without copying when possible."""
    X = sp.csr_matrix(X) if not (sp.isspmatrix_csr(X) or X.format == "csr") else X
    if X.dtype != np.float64:
        X = X.astype(np.float64)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def chunk_stats(X) -> tuple[int, float, np.ndarray | None, bool]:
    """(rows, largest squared row norm, per-column nonzero counts or None, all finite)."""
    if sp.issparse(X):
        X = _as_csr(X)
        sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
        counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)
        finite = bool(np.isfinite(X.data).all())
    else:
        X = np.asarray(X, dtype=np.float64)
        sq = np.einsum("ij,ij->i", X, X)
        counts = None
        finite = bool(np.isfinite(X).all())
    return X.shape[0], float(sq.max()) if sq.size else 0.0, counts, finite


def predictions(X, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``X W^T + b`` as a dense (n, k) array, for dense or sparse ``X``."""
    Z = X @ W.T
    return np.asarray(Z) + b


def chunk_loss(X, Y: np.ndarray, W: np.ndarray, b: np.ndarray, loss: int) -> float:
    """Sum over the chunk's rows of the per-sample loss (not averaged)."""
    Z = predictions(X, W, b)
    if loss == SQUARED:
        return 0.5 * float(np.sum((Z - Y) ** 2))
    if loss == LOGISTIC:
        z, y = Z[:, 0], Y[:, 0]
        return float(np.sum(np.logaddexp(0.0, z) - y * z))
    lab = Y[:, 0].astype(np.intp)
    return float(np.sum(logsumexp(Z, axis=1) - Z[np.arange(Z.shape[0]), lab]))


def chunk_grad_table(X, Y: np.ndarray, W: np.ndarray, b: np.ndarray, loss: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient memory at ``(W, b)`` and its sums: ``(mem, sum_i g_i x_i^T, sum_i g_i)``."""
    Z = predictions(X, W, b)
    if loss == SQUARED:
        G = Z - Y
    elif loss == LOGISTIC:
        G = expit(Z) - Y
    else:
        G = softmax(Z, axis=1)
        G[np.arange(G.shape[0]), Y[:, 0].astype(np.intp)] -= 1.0
    return G, np.asarray(X.T @ G).T, G.sum(axis=0)


def penalty(W: np.ndarray, a1: float, a2: float) -> float:
    """``a1 |W|_1 + a2/2 |W|_F^2``."""
    return a1 * float(np.abs(W).sum()) + 0.5 * a2 * float(np.sum(W * W))


def max_relative_change(W_old: np.ndarray, b_old: np.ndarray, W: np.ndarray, b: np.ndarray
                        ) -> float:
    """``max |change| / max |weight|`` over coefficients and intercepts (0 if both are 0)."""
    old = np.concatenate([W_old.ravel(), b_old.ravel()])
    new = np.concatenate([W.ravel(), b.ravel()])
    change = float(np.max(np.abs(new - old))) if new.size else 0.0
    scale = float(np.max(np.abs(new))) if new.size else 0.0
    if scale == 0.0:
        return 0.0 if change == 0.0 else np.inf
    return change / scale
