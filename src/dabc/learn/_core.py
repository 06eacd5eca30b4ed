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
           "step_size", "epoch_seed", "chunk_order", "converged", "kernel_input", "kernel_array",
           "prox_power"]


@dataclass(frozen=True)
class Problem:
    """Constants of one fit: loss code, number of outputs ``k``, penalty and step size.

    ``a1 = alpha * l1_ratio`` and ``a2 = alpha * (1 - l1_ratio)`` are the per-sample-scaled
    penalty weights; ``n_total`` is the global number of samples; ``colscale`` (sparse data
    only) is ``n_total / nnz(column)`` per column and ``0.0`` for columns without nonzeros
    (which the CSR kernel never touches: :func:`chunk_epoch` applies their penalty in closed
    form instead).
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


def kernel_array(a, dtype=np.float64) -> np.ndarray:
    """``a`` as a writeable, aligned, C-contiguous array of ``dtype``; copied only if it is not.

    Every array handed to a numba kernel goes through this (or :func:`kernel_input`), so each
    kernel sees one type per argument and keeps exactly one compiled signature: numba types a
    read-only, a Fortran-ordered or an ``int64``-instead-of-``int32`` array differently.
    """
    a = np.asarray(a)
    if (a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable
            or not a.flags.aligned):
        a = np.array(a, dtype=dtype, order="C", copy=True)
    return a


def kernel_input(X):
    """``X`` as the kernels take it: a float64 C-contiguous writeable array, or a canonical
    float64 CSR matrix with writeable ``int32`` indices (``int64`` only when the matrix has
    2**31 or more nonzeros or columns). No copy when ``X`` is already so."""
    if sp.issparse(X):
        return _as_csr(X)
    return kernel_array(X)


def prox_power(V: np.ndarray, n: int, step: float, a1: float, a2: float) -> np.ndarray:
    """``n`` successive coordinate prox steps ``v <- (sign(v) max(|v| - step a1, 0)) / (1 + step
    a2)`` in closed form: what ``n`` SAGA steps do to a coordinate whose feature is zero in all
    ``n`` rows (its gradient average is then zero too).

    With ``s = 1 / (1 + step a2)`` and ``u = |v|``, ``n`` steps give ``s^n u - step a1 (s + s^2
    + ... + s^n)`` while positive, else 0 (the sequence decreases, so it stays 0 once there).
    """
    V = np.asarray(V, dtype=np.float64)
    if n <= 0 or (a1 == 0.0 and a2 == 0.0) or V.size == 0:
        return V.copy()
    h = step * a2
    lg = np.log1p(h)
    sn = np.exp(-n * lg)  # s^n
    geom = float(n) if h == 0.0 else -np.expm1(-n * lg) / h  # s + ... + s^n
    u = sn * np.abs(V) - step * a1 * geom
    return np.sign(V) * np.maximum(u, 0.0)


def chunk_epoch(X, Y: np.ndarray, mem: np.ndarray | None, state: State, seed,
                problem: Problem) -> tuple[np.ndarray, State]:
    """One SAGA pass over the rows of one chunk, in a seeded random order.

    ``X`` is a dense array or a CSR matrix (the kernel is chosen per chunk by type), ``Y`` the
    (n_rows, m) float targets, ``mem`` the chunk's gradient memory (``None``: zeros), ``state``
    the weights and gradient averages. Returns the new memory and state; the inputs are not
    modified, so this is a pure function of its arguments (suitable as a Dask task).

    For CSR chunks the columns without nonzeros in the whole data set (``colscale == 0``) get
    the ``n_rows``-fold prox of :func:`prox_power`, exactly what the dense kernel does to them.
    """
    W, b, gbar, gbar_b = (np.array(a, dtype=np.float64, order="C", copy=True) for a in state)
    n = X.shape[0]
    mem = (np.zeros((n, problem.k)) if mem is None
           else np.array(mem, dtype=np.float64, order="C", copy=True))
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    Y = kernel_array(Y)
    step, a1, a2 = float(problem.step), float(problem.a1), float(problem.a2)
    args = (1.0 / float(problem.n_total), step, a1, a2, int(problem.loss),
            bool(problem.fit_intercept))
    if sp.issparse(X):
        X = _as_csr(X)
        colscale = kernel_array(problem.colscale)
        saga_epoch_csr(X.data, X.indices, X.indptr, Y, order, colscale, W, b, mem, gbar,
                       gbar_b, *args)
        empty = np.flatnonzero(colscale == 0.0)
        if empty.size:
            W[:, empty] = prox_power(W[:, empty], n, step, a1, a2)
    else:
        saga_epoch_dense(kernel_array(X), Y, order, W, b, mem, gbar, gbar_b, *args)
    return mem, (W, b, gbar, gbar_b)


def _as_csr(X) -> sp.csr_matrix:
    """Canonical float64 CSR (sorted, no duplicate indices), writeable, with ``int32`` index
    arrays when they fit (else ``int64``); no copy when ``X`` already is so."""
    X = sp.csr_matrix(X) if not (sp.isspmatrix_csr(X) or X.format == "csr") else X
    copied = False
    if X.dtype != np.float64:
        X = X.astype(np.float64)
        copied = True
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
        copied = True
    idx = np.int32 if max(X.nnz, X.shape[1]) < np.iinfo(np.int32).max else np.int64
    arrays = (X.data, X.indices, X.indptr)
    ok = [a.flags.c_contiguous and a.flags.writeable and a.flags.aligned for a in arrays]
    if not all(ok) or X.indices.dtype != idx or X.indptr.dtype != idx:
        if not copied:
            X = X.copy()
        X.data = kernel_array(X.data)
        X.indices = kernel_array(X.indices, idx)
        X.indptr = kernel_array(X.indptr, idx)
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
    return G, np.ascontiguousarray(np.asarray(X.T @ G).T), G.sum(axis=0)


def penalty(W: np.ndarray, a1: float, a2: float) -> float:
    """``a1 |W|_1 + a2/2 |W|_F^2``."""
    return a1 * float(np.abs(W).sum()) + 0.5 * a2 * float(np.sum(W * W))


def converged(W_old: np.ndarray, b_old: np.ndarray, W: np.ndarray, b: np.ndarray, tol: float,
              b_scale: float) -> bool:
    """The stopping rule: weights by scikit-learn's criterion, intercepts on their own scale.

    Weights (as in scikit-learn's ``_sag_fast``): ``max|W - W_old| <= tol max|W|``, or no
    change at all when ``W`` is zero. Intercepts: ``max|b - b_old| <= tol max(max|b|,
    b_scale)``, ``b_scale`` the natural scale of an intercept (the callers pass the largest
    standard deviation of the regression targets, ``1`` logit for classifiers), so that a large
    intercept does not hide moving weights and all-zero weights (strong L1) do not stop the
    run while the intercepts still move. ``tol < 0`` never converges.
    """
    if tol < 0:
        return False
    dw = float(np.max(np.abs(W - W_old))) if W.size else 0.0
    sw = float(np.max(np.abs(W))) if W.size else 0.0
    db = float(np.max(np.abs(b - b_old))) if b.size else 0.0
    sb = max(float(np.max(np.abs(b))) if b.size else 0.0, float(b_scale))
    w_ok = dw <= tol * sw if sw > 0.0 else dw == 0.0
    b_ok = db <= tol * sb if sb > 0.0 else db == 0.0
    return w_ok and b_ok
