"""Transitions: the perturbation kernels that propose new parameters from a population."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import logsumexp

from ..errors import InputError


def _safe_cholesky(cov: np.ndarray) -> np.ndarray:
    cov = np.atleast_2d(cov)
    jitter = 1e-12 * max(float(np.trace(cov)) / len(cov), 1e-12)
    for _ in range(12):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            jitter *= 100
    return np.diag(np.sqrt(np.maximum(np.diag(cov), 1e-12)))


def _batched_cholesky(covs: np.ndarray) -> np.ndarray:
    """``_safe_cholesky`` of each matrix of a (M, d, d) stack, in one LAPACK call where it can.

    The same first jitter as ``_safe_cholesky`` (so the factors are the same); matrices that
    still fail go through ``_safe_cholesky`` one by one.
    """
    d = covs.shape[-1]
    jitter = 1e-12 * np.maximum(np.trace(covs, axis1=1, axis2=2) / d, 1e-12)
    try:
        return np.linalg.cholesky(covs + jitter[:, None, None] * np.eye(d))
    except np.linalg.LinAlgError:
        return np.stack([_safe_cholesky(c) for c in covs])


def _centres(theta: np.ndarray, w: np.ndarray, max_centres: int | None):
    """At most ``max_centres`` mixture centres for a weighted population (weights sum to 1).

    Up to ``max_centres`` particles: the population itself. Beyond: a deterministic
    systematic resample (:func:`_systematic_counts`); each particle drawn becomes one centre,
    weighted by how many times it was drawn over ``max_centres``.
    """
    if max_centres is None or len(theta) <= max_centres:
        return theta, w
    counts = _systematic_counts(w, max_centres)
    keep = np.flatnonzero(counts)
    return theta[keep], counts[keep] / max_centres


def _systematic_counts(w: np.ndarray, m: int) -> np.ndarray:
    """How often each particle is drawn by ``m`` evenly spaced points ``(i + 1/2) / m`` of the
    weights' cumulative sum (in the population's order): ``floor`` or ``ceil`` of ``w_i m``."""
    cum = np.cumsum(w)
    cum[-1] = 1.0
    idx = np.searchsorted(cum, (np.arange(m) + 0.5) / m, side="right")
    return np.bincount(idx, minlength=len(w))


def _guide_table(cum: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(lo, hi, size)`` for :meth:`Transition._pick_many`: the buckets ``[k/size,
    (k+1)/size)`` of [0, 1), ``size`` a power of two, about 8 per entry of ``cum``; ``lo[k]``
    counts the entries ``<= k/size``, ``hi[k]`` those ``< (k+1)/size``. Any ``u`` of bucket k
    has between ``lo[k]`` and ``hi[k]`` entries ``<= u``: where the two are equal (no entry
    inside the bucket), that is its index."""
    size = 1 << max(4, min(20, int(np.ceil(np.log2(8 * max(len(cum), 1))))))
    # q = cum * size is exact (a power of two); an entry is <= k/size iff ceil(q) <= k, and
    # < (k+1)/size iff floor(q) <= k: two counts and cumulative sums, no search
    q = np.clip(cum * size, 0, size)
    lo = np.cumsum(np.bincount(np.ceil(q).astype(np.intp), minlength=size + 1)[:size])
    hi = np.cumsum(np.bincount(np.floor(q).astype(np.intp), minlength=size + 1)[:size])
    return lo, hi, size


def _check_max_centres(max_centres) -> int | None:
    if max_centres is None:
        return None
    if isinstance(max_centres, bool) or not isinstance(max_centres, (int, np.integer)) \
            or max_centres < 1:
        raise InputError(f"max_centres must be a positive int or None (every particle a "
                         f"centre), not {max_centres!r}.")
    return int(max_centres)


def _nearest(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` nearest points of each point (itself included), shape (n, k).

    A KD-tree (``scipy.spatial.cKDTree``): O(n log n) to build, O(k log n) per query on
    average in few dimensions, never all pairs.
    """
    from scipy.spatial import cKDTree

    n = len(points)
    _, nn = cKDTree(points).query(points, k=k)
    return np.asarray(nn).reshape(n, k)


def _weighted_cov(theta: np.ndarray, w: np.ndarray) -> np.ndarray:
    mean = w @ theta
    diff = theta - mean
    return (diff * w[:, None]).T @ diff / max(1 - (w**2).sum(), 1e-12)


class Transition:
    """Base class of the perturbation kernels: how a generation proposes its parameters.

    Before each generation after the first, the engine calls :meth:`fit` with the previous
    generation's accepted parameters and weights (one transition per model). Workers then
    call :meth:`propose` or :meth:`propose_many`, which pick a particle by weight and perturb
    it, and the engine weights each accepted proposal by prior density over :meth:`logpdf`,
    the density of the whole proposal mixture. A kernel too narrow explores the posterior
    slowly and can miss parts of it; one too wide wastes simulations on proposals that are
    rejected. The built-in kernels are Gaussian mixtures centred on the weighted particles:
    :class:`MultivariateNormalTransition` (one covariance for all) and
    :class:`LocalTransition` (one per particle, from its neighbours).

    A subclass implements :meth:`fit`, :meth:`propose`, :meth:`propose_many` and
    :meth:`logpdf`; it is stored with a run as code unless registered with
    :func:`dabc.engine.config.register_component`.

    See Also
    --------
    MultivariateNormalTransition : One Gaussian covariance for all particles (the default).
    LocalTransition : One covariance per particle, from its nearest neighbours.

    Examples
    --------
    What the engine does with a kernel between two generations:

    >>> import numpy as np
    >>> import dabc
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(100, 2))                  # last generation's particles
    >>> kernel = dabc.MultivariateNormalTransition()
    >>> kernel.fit(theta, np.full(100, 0.01))
    >>> kernel.propose_many(5, rng).shape                   # 5 proposals
    (5, 2)
    >>> kernel.logpdf(theta[:3]).shape                      # their density, for the weights
    (3,)
    """

    factored_density: bool = True
    """Whether :meth:`logpdf` of the built-in kernels evaluates the shared-covariance
    mixture in factored form (one matrix product per block of rows; runs of stream scheme
    3, :mod:`dabc.engine.work`). The engine sets it to False for runs started under an
    older scheme, which then resume with the arithmetic they started with."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_guide", None)  # a per-process table (_pick_many), rebuilt on first use
        return state

    def fit(self, theta: np.ndarray, weights: np.ndarray) -> None:
        """Fit the kernel to a weighted population.

        Parameters
        ----------
        theta : numpy.ndarray
            The accepted parameters, shape (n, dim), in the prior's parameter order.
        weights : numpy.ndarray
            Their importance weights, shape (n,), non-negative (normalised here).
        """
        raise NotImplementedError

    def _set_particles(self, theta, weights, max_centres: int | None = None):
        """Normalise, keep at most ``max_centres`` centres; return the whole population."""
        theta = np.asarray(theta, dtype=float)
        w = np.asarray(weights, dtype=float)
        w = w / w.sum()
        self.theta, self.w = _centres(theta, w, max_centres)
        self.cum = np.cumsum(self.w)
        self.cum[-1] = 1.0
        self.dim = theta.shape[1]
        return theta, w

    def _pick(self, rng) -> int:
        return int(np.searchsorted(self.cum, rng.random(), side="right"))

    def _pick_many(self, u: np.ndarray) -> np.ndarray:
        """``searchsorted(self.cum, u, side="right")`` for uniforms ``u`` in [0, 1): the
        same indices, through a guide table (:func:`_guide_table`) built once per fit in
        each process, which settles most of them without a binary search (whose branches a
        processor mispredicts for random keys: about 20 us for 256 of them)."""
        guide = self.__dict__.get("_guide")
        if guide is None or guide[0] is not self.cum:
            guide = self._guide = (self.cum, *_guide_table(self.cum))
        _, lo, hi, size = guide
        k = (u * size).astype(np.intp)  # exact: size is a power of two
        idx = lo[k]
        unsettled = np.flatnonzero(idx != hi[k])
        if len(unsettled):
            idx[unsettled] = np.searchsorted(self.cum, u[unsettled], side="right")
        return idx

    def propose(self, rng: np.random.Generator) -> np.ndarray:
        """One proposal: pick a particle by weight and perturb it.

        Parameters
        ----------
        rng : numpy.random.Generator
            The evaluation's own random stream.

        Returns
        -------
        numpy.ndarray
            The proposed parameters, shape (dim,).
        """
        raise NotImplementedError

    def propose_many(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` proposals at once (for vectorized models and STAT slots).

        Parameters
        ----------
        n : int
            Number of proposals.
        rng : numpy.random.Generator
            The block's own random stream.

        Returns
        -------
        numpy.ndarray
            The proposed parameters, shape (n, dim).
        """
        raise NotImplementedError

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density of the proposal mixture at each row of ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            Parameters, shape (m, dim).

        Returns
        -------
        numpy.ndarray
            Shape (m,): the log of the weighted sum of the kernels' densities.
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments of this transition, by name (how stored runs describe it).

        Returns
        -------
        dict
            Keyword arguments that rebuild an equivalent transition.

        Raises
        ------
        NotImplementedError
            For classes that cannot be described by their arguments; stored runs keep them
            as code (see :mod:`dabc.engine.config`).
        """
        raise NotImplementedError(f"{type(self).__qualname__} is stored as code.")

    def get_state(self) -> dict[str, Any]:
        """What this transition learned during the run, by field name (none by default: it is refit
        from the previous population before every generation).

        Returns
        -------
        dict
        """
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (after ``__init__``).

        Parameters
        ----------
        state : mapping
            The fields returned by :meth:`get_state`.

        Raises
        ------
        InputError
            When ``state`` holds fields this transition does not know.
        """
        if state:
            raise InputError(f"{type(self).__qualname__} has no learned state, but the stored "
                             f"run gives it {sorted(state)}; the database is damaged.")


def _mixture_logpdf(x, centres, logw, chols, chunk=2048, factored=False):
    """log sum_j w_j N(x; centres_j, L_j L_j^T); ``chols`` is one (d, d) or one per centre.

    ``factored`` (one covariance only): :func:`_factored_mixture_logpdf`, else the
    arithmetic of stream schemes 1 and 2 (:func:`_shared_mixture_logpdf`)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    d = x.shape[1]
    # centred on the centres' mean: no cancellation in the distances for far-off locations
    ref = centres.mean(axis=0)
    x, centres = x - ref, centres - ref
    if chols.ndim == 2:
        if factored:
            return _factored_mixture_logpdf(x, centres, np.exp(logw), chols)
        return _shared_mixture_logpdf(x, centres, np.exp(logw), chols, chunk)
    m = len(centres)
    inv = np.linalg.inv(chols)  # z_j = inv_j (x - c_j) is standard normal under kernel j
    logdet = np.log(np.abs(np.diagonal(chols, axis1=1, axis2=2))).sum(axis=1)
    const = logw - 0.5 * d * np.log(2 * np.pi) - logdet
    # every centre's whitening in one matrix: x @ stack = [inv_1 x, ..., inv_M x], one GEMM
    stack = inv.transpose(2, 0, 1).reshape(d, m * d)
    offset = np.einsum("jkl,jl->jk", inv, centres)
    rows = max(1, min(chunk, 2**21 // (m * d)))  # about 16 MB of z per block of rows
    out = np.empty(len(x))
    for s in range(0, len(x), rows):
        z = (x[s:s + rows] @ stack).reshape(-1, m, d)
        z -= offset
        out[s:s + rows] = logsumexp(const - 0.5 * np.einsum("cjk,cjk->cj", z, z), axis=1)
    return out


_LOWEST_EXPONENT = -700.0
"""Exponents below this are raised to it before ``exp`` (see :func:`_factored_mixture_logpdf`)."""


def _factored_mixture_logpdf(x, centres, w, chol, block=2**17):
    """The mixture density with one covariance, in factored form (stream scheme 3).

    With whitened points ``z_i`` and centres ``c_j``, the exponent of kernel j at point i
    is ``z_i . c_j - |c_j|^2 / 2 - |z_i|^2 / 2``: one matrix product of ``[z, 1, a]`` by
    ``[c; b; 1]`` gives a whole block of exponents, already shifted per row (``a`` holds
    the row's shift), then one exp and one matrix-vector product with the weights. Each
    row is shifted by its largest exponent (in one dimension, that of the nearest centre,
    found by bisection), so no row underflows; the points are centred on the centres'
    mean by the caller, which bounds the cancellation in the exponent to about 1e-13.
    Exponents below -700 count as -700: a far kernel then adds ``w_j * 1e-304`` instead of
    a slow subnormal or 0, which changes no sum whose nearest term is above 1e-288.
    Blocks of ``block`` exponents stay in cache. For 1,000 particles: 1.6 times faster than
    the unfactored form in one dimension, 3 to 5 times in 2 to 10.
    """
    n, d = x.shape
    inv = np.linalg.inv(chol)
    z, c = x @ inv.T, centres @ inv.T
    const = -0.5 * d * np.log(2 * np.pi) - np.log(np.abs(np.diag(chol))).sum()
    m = len(c)
    right = np.empty((d + 2, m))
    right[:d] = c.T
    right[d] = -0.5 * (c * c).sum(axis=1)
    right[d + 1] = 1.0
    left = np.empty((n, d + 2))
    left[:, :d] = z
    left[:, d] = 1.0
    left[:, d + 1] = -0.5 * (z * z).sum(axis=1)
    if d == 1:  # the nearest centre's exponent: no pass over the block for the row maximum
        shift = -0.5 * _nearest_squared(z[:, 0], np.sort(c[:, 0]))
        left[:, d + 1] -= shift
    rows = max(1, min(n, block // max(m, 1)))
    out = np.empty(n)
    buf = np.empty((rows, m))  # one buffer: a fresh block each time would be mmapped anew
    # no exponent (after the shift) is below -(|z_i| + max_j |c_j|)^2 / 2: blocks whose
    # bound stays above the limit need no clamping pass
    reach = np.sqrt((z * z).sum(axis=1)) + np.sqrt((c * c).sum(axis=1).max(initial=0.0))
    for s in range(0, n, rows):
        e = np.matmul(left[s:s + rows], right, out=buf[:min(rows, n - s)])
        if d == 1:
            top = shift[s:s + rows]
        else:
            top = e.max(axis=1)
            e -= top[:, None]
        # exp of an argument below -708 (a result that is subnormal or 0) takes 8-50 times
        # longer than of one above; such a kernel's share is below 1e-300 of the nearest's
        if 0.5 * reach[s:s + rows].max() ** 2 > -_LOWEST_EXPONENT:
            np.maximum(e, _LOWEST_EXPONENT, out=e)
        np.exp(e, out=e)
        out[s:s + rows] = np.log(e @ w) + top + const
    return out


def _shared_mixture_logpdf(x, centres, w, chol, chunk):
    """The mixture density with one covariance: whitened distances, one exp and one matmul.

    Each row is shifted by its smallest distance before exponentiating, so no row underflows.
    """
    d = x.shape[1]
    inv = np.linalg.inv(chol)
    z, c = x @ inv.T, centres @ inv.T
    const = -0.5 * d * np.log(2 * np.pi) - np.log(np.abs(np.diag(chol))).sum()
    if d == 1:
        return _shared_mixture_logpdf_1d(z[:, 0], c[:, 0], w, const, chunk)
    c2 = (c**2).sum(axis=1)
    out = np.empty(len(x))
    for s in range(0, len(x), chunk):
        zs = z[s:s + chunk]
        d2 = (zs**2).sum(axis=1)[:, None] + c2[None, :] - 2 * zs @ c.T
        np.maximum(d2, 0, out=d2)
        low = d2.min(axis=1)
        d2 -= low[:, None]
        d2 *= -0.5
        np.exp(d2, out=d2)
        out[s:s + chunk] = np.log(d2 @ w) - 0.5 * low + const
    return out


def _nearest_squared(z, srt):
    """The squared distance from each of ``z`` to its nearest value in the sorted ``srt``
    (rounding is monotone, so it is the minimum over all of them)."""
    k = np.searchsorted(srt, z)
    return np.minimum((z - srt[np.maximum(k - 1, 0)]) ** 2,
                      (z - srt[np.minimum(k, len(srt) - 1)]) ** 2)


def _shared_mixture_logpdf_1d(z, c, w, const, chunk, block_bytes=2**20):
    """:func:`_shared_mixture_logpdf` in one dimension (``z``, ``c``: whitened points and
    centres, 1-d), with the same floating-point operations, so the same bits.

    Each row's smallest squared distance comes from the nearest centres in sorted order
    (rounding is monotone, so it is the minimum over all centres: no pass over the
    matrix), and the element-wise steps run on blocks of rows that stay in cache; the
    weighted sum is still one matrix-vector product over each chunk.
    """
    m = len(c)
    out = np.empty(len(z))
    srt = np.sort(c)
    rows = max(1, block_bytes // (8 * max(m, 1)))
    ct = c[None, :]
    for s in range(0, len(z), chunk):
        zs = z[s:s + chunk]
        low = _nearest_squared(zs, srt)
        e = np.empty((len(zs), m))
        for r in range(0, len(zs), rows):
            b = e[r:r + rows]
            np.subtract(zs[r:r + rows, None], ct, out=b)
            np.square(b, out=b)
            b -= low[r:r + rows, None]
            b *= -0.5
            np.exp(b, out=b)
        out[s:s + chunk] = np.log(e @ w) - 0.5 * low + const
    return out


class MultivariateNormalTransition(Transition):
    """Gaussian kernel with the population's weighted covariance scaled by a bandwidth rule
    (the default transition).

    A proposal picks a particle by weight and adds a Gaussian perturbation whose covariance
    is the population's weighted covariance times ``(factor * scaling)**2``, where the
    bandwidth factor follows Silverman's or Scott's rule for the effective sample size
    ``n_eff = 1 / sum(w**2)`` in ``dim`` dimensions: Silverman's
    ``(4 / (dim + 2))**(1 / (dim + 4)) * n_eff**(-1 / (dim + 4))``, Scott's
    ``n_eff**(-1 / (dim + 4))``.

    Parameters
    ----------
    scaling : float, default 1.0
        Multiplies the bandwidth: above 1 explores more widely (more rejections), below 1
        stays closer to the particles (risks missing parts of the posterior).
    bandwidth : {"silverman", "scott"}, default "silverman"
        The bandwidth rule.
    max_centres : int or None, default 1000
        The most mixture components (see Notes). None: one per particle, whatever the
        population size.

    Raises
    ------
    InputError
        When ``bandwidth`` is neither rule, or ``max_centres`` is not a positive int or None.

    See Also
    --------
    LocalTransition : One covariance per particle, for curved or multi-modal posteriors.

    Notes
    -----
    Cost. A new particle's weight needs the proposal density, a sum over every mixture
    component: with one component per particle that is O(n) per particle and O(n²) per
    generation (pyABC's way). Cutting the sum short is no way out: for the proposal density
    to 1e-12 relative error, a KD-tree search must still visit a share of the population
    (measured on Gaussian populations of 10⁵ particles, median over proposals: about half of
    them in 1 dimension, a sixth in 10, a twentieth in 30), and even at 1e-6 the number of
    terms grows almost in proportion to n. So beyond ``max_centres``
    particles the mixture is built on ``max_centres`` centres taken from the population by
    deterministic systematic resampling (each centre weighted by how often it was drawn), and
    the bandwidth rule uses the centres' effective sample size; the covariance is still the
    whole population's. The proposal is then a different (slightly wider) kernel, but its
    density is computed exactly, so the importance weights are exact for the proposal used
    and the weighted population targets the same ABC posterior: only the acceptance rate
    and the weights' spread can change. Populations up to
    ``max_centres`` are handled exactly as before. The cost per particle of proposing and
    weighting is then O(min(n, max_centres)), not O(n).

    Examples
    --------
    >>> import dabc
    >>> transition = dabc.MultivariateNormalTransition(scaling=0.8, bandwidth="scott")
    >>> # dabc.ABCSMC(model, prior, transition=transition)
    """

    def __init__(self, scaling: float = 1.0, bandwidth: str = "silverman",
                 max_centres: int | None = 1000):
        if bandwidth not in ("silverman", "scott"):
            raise InputError(f"bandwidth must be 'silverman' or 'scott', not {bandwidth!r}.")
        self.scaling, self.bandwidth = scaling, bandwidth
        self.max_centres = _check_max_centres(max_centres)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``scaling``, ``bandwidth``, ``max_centres``.

        Returns
        -------
        dict
        """
        return {"scaling": self.scaling, "bandwidth": self.bandwidth,
                "max_centres": self.max_centres}

    def fit(self, theta, weights):
        full, w_full = self._set_particles(theta, weights, getattr(self, "max_centres", None))
        n_eff = 1 / (self.w**2).sum()
        d = self.dim
        if self.bandwidth == "silverman":
            factor = (4 / (d + 2)) ** (1 / (d + 4)) * n_eff ** (-1 / (d + 4))
        else:
            factor = n_eff ** (-1 / (d + 4))
        cov = _weighted_cov(full, w_full) if len(full) > 1 else np.eye(d)
        self.cov = cov * (factor * self.scaling) ** 2
        self.chol = _safe_cholesky(self.cov)
        self._chol_t = self.chol.T.copy()

    def propose(self, rng):
        return self.theta[self._pick(rng)] + rng.standard_normal(self.dim) @ self._chol_t

    def propose_many(self, n, rng):
        idx = self._pick_many(rng.random(n))
        return self.theta[idx] + rng.standard_normal((n, self.dim)) @ self._chol_t

    def logpdf(self, x):
        return _mixture_logpdf(x, self.theta, np.log(self.w), self.chol,
                               factored=self.factored_density)


class LocalTransition(Transition):
    """Each particle perturbs with the covariance of its k nearest neighbours.

    Adapts to curved or multi-modal posteriors, where one global covariance is too wide: a
    particle in a narrow ridge proposes along the ridge, and particles of two separate modes
    do not propose into the gap between them.

    Parameters
    ----------
    k : int, optional
        Neighbours per particle (the particle itself included), capped at the population
        size. Default: ``k_fraction`` of the population, at least ``dim + 1``.
    k_fraction : float, default 0.25
        The share of the population used as neighbours when ``k`` is not given.
    scaling : float, default 1.0
        Multiplies the standard deviations of each local covariance.
    max_centres : int or None, default 1000
        The most mixture components. Beyond this many particles, the kernel is fitted to
        ``max_centres`` centres resampled from the population, as
        :class:`MultivariateNormalTransition` explains (its Notes), and ``k`` and
        ``k_fraction`` count centres. None: one component per particle.

    Raises
    ------
    InputError
        When ``max_centres`` is not a positive int or None.

    See Also
    --------
    MultivariateNormalTransition : One covariance for all particles (the default).

    Notes
    -----
    The neighbours come from a KD-tree (``scipy.spatial.cKDTree``), never from all pairs.
    Fitting costs O(M k d²) for M centres, and the proposal density
    O(M d²) per particle; with at most ``max_centres`` centres neither grows with the
    population. The proposal density is computed exactly, so the importance weights are.

    Examples
    --------
    >>> import dabc
    >>> transition = dabc.LocalTransition(k_fraction=0.1)
    >>> # dabc.ABCSMC(model, prior, transition=transition)
    """

    def __init__(self, k: int | None = None, k_fraction: float = 0.25, scaling: float = 1.0,
                 max_centres: int | None = 1000):
        self.k, self.k_fraction, self.scaling = k, k_fraction, scaling
        self.max_centres = _check_max_centres(max_centres)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``k``, ``k_fraction``, ``scaling``, ``max_centres``.

        Returns
        -------
        dict
        """
        return {"k": self.k, "k_fraction": self.k_fraction, "scaling": self.scaling,
                "max_centres": self.max_centres}

    def fit(self, theta, weights):
        self._set_particles(theta, weights, getattr(self, "max_centres", None))
        n, d = self.theta.shape
        k = self.k or max(int(self.k_fraction * n), d + 1)
        k = max(min(k, n), 1)
        neigh = self.theta[_nearest(self.theta, k)]  # (n, k, d)
        diff = neigh - neigh.mean(axis=1, keepdims=True)
        covs = np.matmul(diff.transpose(0, 2, 1), diff) / max(k - 1, 1)
        fallback = np.cov(self.theta.T).reshape(d, d) if n > 1 else np.eye(d)
        covs = covs * self.scaling**2 + 1e-10 * np.diag(np.diag(fallback) + 1e-12)[None]
        self.chols = _batched_cholesky(covs)

    def propose(self, rng):
        j = self._pick(rng)
        return self.theta[j] + self.chols[j] @ rng.standard_normal(self.dim)

    def propose_many(self, n, rng):
        idx = self._pick_many(rng.random(n))
        z = rng.standard_normal((n, self.dim))
        out = self.theta[idx]
        rows = max(1, 2**20 // self.dim**2)  # gather at most about 8 MB of factors at once
        for s in range(0, n, rows):
            out[s:s + rows] += np.einsum("nij,nj->ni", self.chols[idx[s:s + rows]],
                                         z[s:s + rows])
        return out

    def logpdf(self, x):
        return _mixture_logpdf(x, self.theta, np.log(self.w), self.chols)


def as_transition(transition) -> Transition:
    """The transition a run uses for the ``transition=`` argument.

    Parameters
    ----------
    transition : Transition or None
        None gives :class:`MultivariateNormalTransition`; a Transition is used as is.

    Returns
    -------
    Transition

    Raises
    ------
    InputError
        When ``transition`` is neither.
    """
    if transition is None:
        return MultivariateNormalTransition()
    if isinstance(transition, Transition):
        return transition
    raise InputError(f"transition must be a dabc Transition, got {transition!r}.")
