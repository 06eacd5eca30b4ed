"""numba kernels: one SAGA epoch over the rows of a dense array or a CSR matrix.

The kernels work on the *prediction-space* gradient memory of a linear model: for sample ``i``
with prediction ``z_i = W x_i + b`` (``k`` outputs) the gradient of its loss with respect to
``W`` is ``g_i x_i^T`` where ``g_i = dloss/dz`` has only ``k`` numbers. So the memory of a
chunk is an ``(n_rows, k)`` array, and the gradient average is ``gbar = (1/n) sum_i g_i x_i^T``
(``n`` the *global* number of samples) plus ``gbar_b = (1/n) sum_i g_i`` for the intercept.

One SAGA step on sample ``j`` (Defazio et al. 2014, proximal form)::

    g  = dloss(W x_j + b, y_j)
    W <- prox_{step * R}(W - step * ((g - mem_j) x_j^T + gbar))
    gbar += (g - mem_j) x_j^T / n ;  mem_j = g

with ``R(w) = a1 |w|_1 + a2/2 |w|_2^2`` applied coordinate-wise (soft-threshold, then shrink).
The CSR kernel is the sparse proximal SAGA of Pedregosa, Leblond & Lacoste-Julien (2017): it
touches only the coordinates in the support of ``x_j``, scaling ``gbar`` and the penalty of
coordinate ``c`` by ``d_c = n / nnz(column c)``, which keeps the step unbiased and has the same
fixed point, at ``O(nnz(x_j))`` cost per step instead of ``O(n_features)``.

Loss codes: ``0`` squared (``0.5 |z - y|^2``, ``y`` real, ``k`` outputs), ``1`` binary logistic
(``y`` in {0, 1}, ``k = 1``), ``2`` multinomial logistic (``y[0]`` the class index, ``k``
classes). All kernels are compiled with ``cache=True`` (on-disk cache) and mutate their array
arguments in place; the callers in :mod:`dabc.learn.saga` copy when they need purity.

Compilations are counted per process (:func:`compile_counts`) so that tests can check that a
worker compiles or loads each kernel once, not once per task or per deserialisation.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import event as _numba_event

__all__ = ["saga_epoch_dense", "saga_epoch_csr", "compile_counts", "KERNELS"]

SQUARED, LOGISTIC, MULTINOMIAL = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _loss_grad(z, y, loss, g):
    """Write ``dloss/dz`` for one sample into ``g``."""
    k = z.shape[0]
    if loss == 0:
        for o in range(k):
            g[o] = z[o] - y[o]
    elif loss == 1:
        t = z[0]
        if t >= 0.0:
            p = 1.0 / (1.0 + math.exp(-t))
        else:
            e = math.exp(t)
            p = e / (1.0 + e)
        g[0] = p - y[0]
    else:
        m = z[0]
        for o in range(1, k):
            if z[o] > m:
                m = z[o]
        s = 0.0
        for o in range(k):
            g[o] = math.exp(z[o] - m)
            s += g[o]
        label = int(y[0])
        for o in range(k):
            g[o] = g[o] / s
        g[label] -= 1.0


@numba.njit(cache=True, nogil=True, inline="always")
def _prox(v, thresh, shrink):
    """Proximal operator of ``thresh |w| + (1/shrink - 1)/2 w^2`` (soft-threshold, shrink)."""
    if v > thresh:
        return (v - thresh) * shrink
    if v < -thresh:
        return (v + thresh) * shrink
    return 0.0


@numba.njit(cache=True, nogil=True)
def saga_epoch_dense(X, Y, order, W, b, mem, gbar, gbar_b, inv_n, step, a1, a2, loss,
                     fit_intercept):
    """One SAGA pass over the rows ``order`` of the dense C-contiguous array ``X``.

    ``W`` (k, p), ``b`` (k,), ``mem`` (n_rows, k), ``gbar`` (k, p), ``gbar_b`` (k,) are updated
    in place; ``inv_n`` is one over the global number of samples.
    """
    k = W.shape[0]
    p = X.shape[1]
    z = np.empty(k)
    g = np.empty(k)
    dg = np.empty(k)
    thresh = step * a1
    shrink = 1.0 / (1.0 + step * a2)
    for t in range(order.shape[0]):
        i = order[t]
        x = X[i]
        for o in range(k):
            acc = b[o]
            for c in range(p):
                acc += W[o, c] * x[c]
            z[o] = acc
        _loss_grad(z, Y[i], loss, g)
        for o in range(k):
            dg[o] = g[o] - mem[i, o]
            mem[i, o] = g[o]
        for o in range(k):
            d = dg[o]
            dn = d * inv_n
            for c in range(p):
                xc = x[c]
                W[o, c] = _prox(W[o, c] - step * (d * xc + gbar[o, c]), thresh, shrink)
                gbar[o, c] += dn * xc
            if fit_intercept:
                b[o] -= step * (d + gbar_b[o])
                gbar_b[o] += dn


@numba.njit(cache=True, nogil=True)
def saga_epoch_csr(data, indices, indptr, Y, order, colscale, W, b, mem, gbar, gbar_b, inv_n,
                   step, a1, a2, loss, fit_intercept):
    """One sparse proximal SAGA pass over the rows ``order`` of a CSR matrix.

    ``colscale[c] = n / nnz(column c)`` over the whole data set (global counts); the other
    arguments are as in :func:`saga_epoch_dense`.
    """
    k = W.shape[0]
    z = np.empty(k)
    g = np.empty(k)
    dg = np.empty(k)
    for t in range(order.shape[0]):
        i = order[t]
        lo = indptr[i]
        hi = indptr[i + 1]
        for o in range(k):
            acc = b[o]
            for q in range(lo, hi):
                acc += W[o, indices[q]] * data[q]
            z[o] = acc
        _loss_grad(z, Y[i], loss, g)
        for o in range(k):
            dg[o] = g[o] - mem[i, o]
            mem[i, o] = g[o]
        for o in range(k):
            d = dg[o]
            dn = d * inv_n
            for q in range(lo, hi):
                c = indices[q]
                xc = data[q]
                s = colscale[c]
                v = W[o, c] - step * (d * xc + s * gbar[o, c])
                W[o, c] = _prox(v, step * a1 * s, 1.0 / (1.0 + step * a2 * s))
                gbar[o, c] += dn * xc
            if fit_intercept:
                b[o] -= step * (d + gbar_b[o])
                gbar_b[o] += dn


KERNELS = {"saga_epoch_dense": saga_epoch_dense, "saga_epoch_csr": saga_epoch_csr,
           "_loss_grad": _loss_grad}

_compiled = {name: 0 for name in KERNELS}
_names = {id(disp): name for name, disp in KERNELS.items()}


class _CompileListener(_numba_event.Listener):
    """numba event listener counting compilations of the dabc kernels in this process.

    numba fires ``numba:compile`` only on a disk-cache miss, once per compiled signature of
    any dispatcher (also for user functions and for callees compiled with their caller); only
    the events whose dispatcher is one of :data:`KERNELS` are counted.
    """

    def on_start(self, event) -> None:
        data = event.data or {}
        name = _names.get(id(data.get("dispatcher")))
        if name is not None and KERNELS[name] is data.get("dispatcher"):
            _compiled[name] += 1

    def on_end(self, event) -> None:
        pass


_numba_event.register("numba:compile", _CompileListener())


def compile_counts() -> dict:
    """Per-process counts for the dabc kernels: compilations and disk-cache loads since import.

    ``_loss_grad`` is compiled together with the first epoch kernel that is compiled (it is
    linked into the cached epoch kernels, so a cache load of those leaves it at zero). A
    process that has run one dense and one CSR chunk task holds one signature of each epoch
    kernel; any later task must leave all numbers fixed.

    Returns
    -------
    dict
        ``compiled``: numba compilations of the dabc kernels (those of ``KERNELS``; numba
        only compiles on a disk-cache miss; other dispatchers in the process are not
        counted); ``cache_loads``: signatures of the dabc kernels loaded from the on-disk
        cache; ``signatures``: the signatures the dabc kernels hold now; ``per_kernel``: the
        same three numbers for each kernel, by name.

    Examples
    --------
    Run on a Dask worker, it tells whether a fit compiled there or loaded from the cache:

    >>> from dabc.learn import compile_counts
    >>> sorted(compile_counts())
    ['cache_loads', 'compiled', 'per_kernel', 'signatures']
    """
    per = {}
    for name, disp in KERNELS.items():
        per[name] = {"compiled": _compiled[name],
                     "cache_loads": int(sum(disp.stats.cache_hits.values())),
                     "signatures": len(disp.signatures)}
    return {"compiled": sum(v["compiled"] for v in per.values()),
            "cache_loads": sum(v["cache_loads"] for v in per.values()),
            "signatures": sum(v["signatures"] for v in per.values()),
            "per_kernel": per}
