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

    def _set_particles(self, theta, weights):
        theta = np.asarray(theta, dtype=float)
        w = np.asarray(weights, dtype=float)
        w = w / w.sum()
        self.theta, self.w = theta, w
        self.cum = np.cumsum(w)
        self.cum[-1] = 1.0
        self.dim = theta.shape[1]

    def _pick(self, rng) -> int:
        return int(np.searchsorted(self.cum, rng.random(), side="right"))

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


def _mixture_logpdf(x, centres, logw, chols, chunk=2048):
    """log sum_j w_j N(x; centres_j, L_j L_j^T); ``chols`` is one (d, d) or one per centre."""
    x = np.atleast_2d(x)
    d = x.shape[1]
    if chols.ndim == 2:
        return _shared_mixture_logpdf(x, centres, np.exp(logw), chols, chunk)
    inv = np.linalg.inv(chols)
    logdet = np.log(np.abs(np.diagonal(chols, axis1=1, axis2=2))).sum(axis=1)
    const = -0.5 * d * np.log(2 * np.pi) - logdet
    out = np.empty(len(x))
    for s in range(0, len(x), chunk):
        diff = x[s:s + chunk, None, :] - centres[None, :, :]  # (c, M, d)
        z = np.einsum("jkl,cjl->cjk", inv, diff)
        out[s:s + chunk] = logsumexp(logw + const - 0.5 * (z**2).sum(axis=2), axis=1)
    return out


def _shared_mixture_logpdf(x, centres, w, chol, chunk):
    """The mixture density with one covariance: whitened distances, one exp and one matmul.

    Each row is shifted by its smallest distance before exponentiating, so no row underflows.
    """
    d = x.shape[1]
    inv = np.linalg.inv(chol)
    z, c = x @ inv.T, centres @ inv.T
    const = -0.5 * d * np.log(2 * np.pi) - np.log(np.abs(np.diag(chol))).sum()
    c2 = (c**2).sum(axis=1)
    out = np.empty(len(x))
    for s in range(0, len(x), chunk):
        zs = z[s:s + chunk]
        if d == 1:
            d2 = (zs - c.T) ** 2
        else:
            d2 = (zs**2).sum(axis=1)[:, None] + c2[None, :] - 2 * zs @ c.T
            np.maximum(d2, 0, out=d2)
        low = d2.min(axis=1)
        d2 -= low[:, None]
        d2 *= -0.5
        np.exp(d2, out=d2)
        out[s:s + chunk] = np.log(d2 @ w) - 0.5 * low + const
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

    Raises
    ------
    InputError
        When ``bandwidth`` is neither rule.

    See Also
    --------
    LocalTransition : One covariance per particle, for curved or multi-modal posteriors.

    Examples
    --------
    >>> import dabc
    >>> transition = dabc.MultivariateNormalTransition(scaling=0.8, bandwidth="scott")
    >>> # dabc.ABCSMC(model, prior, transition=transition)
    """

    def __init__(self, scaling: float = 1.0, bandwidth: str = "silverman"):
        if bandwidth not in ("silverman", "scott"):
            raise InputError(f"bandwidth must be 'silverman' or 'scott', not {bandwidth!r}.")
        self.scaling, self.bandwidth = scaling, bandwidth

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``scaling``, ``bandwidth``.

        Returns
        -------
        dict
        """
        return {"scaling": self.scaling, "bandwidth": self.bandwidth}

    def fit(self, theta, weights):
        self._set_particles(theta, weights)
        n_eff = 1 / (self.w**2).sum()
        d = self.dim
        if self.bandwidth == "silverman":
            factor = (4 / (d + 2)) ** (1 / (d + 4)) * n_eff ** (-1 / (d + 4))
        else:
            factor = n_eff ** (-1 / (d + 4))
        cov = _weighted_cov(self.theta, self.w) if len(self.theta) > 1 else np.eye(d)
        self.cov = cov * (factor * self.scaling) ** 2
        self.chol = _safe_cholesky(self.cov)
        self._chol_t = self.chol.T.copy()

    def propose(self, rng):
        return self.theta[self._pick(rng)] + rng.standard_normal(self.dim) @ self._chol_t

    def propose_many(self, n, rng):
        idx = np.searchsorted(self.cum, rng.random(n), side="right")
        return self.theta[idx] + rng.standard_normal((n, self.dim)) @ self._chol_t

    def logpdf(self, x):
        return _mixture_logpdf(x, self.theta, np.log(self.w), self.chol)


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

    See Also
    --------
    MultivariateNormalTransition : One covariance for all particles (the default).

    Examples
    --------
    >>> import dabc
    >>> transition = dabc.LocalTransition(k_fraction=0.1)
    >>> # dabc.ABCSMC(model, prior, transition=transition)
    """

    def __init__(self, k: int | None = None, k_fraction: float = 0.25, scaling: float = 1.0):
        self.k, self.k_fraction, self.scaling = k, k_fraction, scaling

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments: ``k``, ``k_fraction``, ``scaling``.

        Returns
        -------
        dict
        """
        return {"k": self.k, "k_fraction": self.k_fraction, "scaling": self.scaling}

    def fit(self, theta, weights):
        from scipy.spatial import cKDTree

        self._set_particles(theta, weights)
        n, d = self.theta.shape
        k = self.k or max(int(self.k_fraction * n), d + 1)
        k = max(min(k, n), 1)
        _, nn = cKDTree(self.theta).query(self.theta, k=k)
        nn = np.asarray(nn).reshape(n, k)
        neigh = self.theta[nn]  # (n, k, d)
        diff = neigh - neigh.mean(axis=1, keepdims=True)
        covs = np.einsum("nki,nkj->nij", diff, diff) / max(k - 1, 1)
        fallback = np.cov(self.theta.T).reshape(d, d) if n > 1 else np.eye(d)
        covs = covs * self.scaling**2 + 1e-10 * np.diag(np.diag(fallback) + 1e-12)[None]
        self.chols = np.stack([_safe_cholesky(c) for c in covs])

    def propose(self, rng):
        j = self._pick(rng)
        return self.theta[j] + self.chols[j] @ rng.standard_normal(self.dim)

    def propose_many(self, n, rng):
        idx = np.searchsorted(self.cum, rng.random(n), side="right")
        z = rng.standard_normal((n, self.dim))
        return self.theta[idx] + np.einsum("nij,nj->ni", self.chols[idx], z)

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
