"""A stored generation as an ArviZ ``InferenceData``, with its weights kept.

:func:`to_inference_data` (also :meth:`dabc.History.to_inference_data` and ``dabc export
--format netcdf``) turns one generation of one model into the groups ArviZ expects:

``posterior``
    One variable per parameter, dimensions ``(chain, draw)`` with one chain: the stored
    particles (``resample=None``) or ``k`` equally weighted draws from them
    (``resample=k``).
``sample_stats``
    ``weight`` (normalised to sum to 1 over the draws), ``distance`` (each draw's distance
    to the observed data), ``particle`` (the stored particle's id) and, for a run with more
    than one model, ``model`` (the model index, ``m`` for every draw).
``observed_data``
    The observed summary statistics, as passed to ``ABCSMC.run`` (read with the data-only
    unpickler of :mod:`dabc.storage.observed`: no stored code runs).
``prior``
    As many draws from model ``m``'s prior as the posterior has, rebuilt from the run's
    stored JSON configuration (scipy.stats distributions by name and arguments), seeded from
    the run's seed and ``m``. A run whose configuration cannot be read without running code
    (the pickled format of dabc 0.1.0) has no prior group; a warning says so and
    ``attrs["prior"]`` gives the reason.

Every group's ``attrs`` (and the object's own) hold ``run_id``, ``generation``,
``epsilon``, ``model`` (name), ``model_index``, ``model_probability``, ``n_particles``,
``ess`` (Kish's effective sample size of the weights, 1/Σw²), ``weighted``, ``resample``
(``k``, 0 when not resampled), ``seed``, ``dabc_version`` (this dabc),
``run_dabc_version`` (the dabc that wrote the run), ``inference_library`` ("dabc") and
``note`` (what the draws are, in words, for whoever opens the file).
``weighted`` is 1 or 0, not a bool, because netCDF files cannot hold booleans.

Weights are never dropped silently
----------------------------------
An ABC-SMC population is a *weighted* sample. ArviZ treats every draw as equally weighted,
so with ``resample=None`` (the default) ``az.summary`` and ``az.plot_posterior`` of the
result are **unweighted** summaries of the particles, which is wrong for the posterior:
``attrs["weighted"]`` is then 1 and ``sample_stats.weight`` carries the weights, for
weighted summaries of your own. With ``resample=k`` the posterior holds ``k`` draws chosen
by systematic resampling (:func:`systematic_resample`), whose unweighted summaries estimate
the weighted ones; ``attrs["weighted"]`` is 0 and every weight is ``1/k``. The draws are
seeded from ``(run seed, t, m)``, so the same call gives the same draws, and put in random
order. ArviZ's ESS and MCSE of resampled draws overstate the information in them (duplicates
of one particle are not independent draws); ``attrs["ess"]`` is the particles' Kish ESS.

Choosing ``k``: the error resampling adds to a mean is at most ``sd/sqrt(k)``, so a large
``k`` (several times the number of particles) makes ArviZ's summaries match dabc's weighted
ones closely. For *plots* a ``k`` near ``attrs["ess"]`` is better: ArviZ picks its KDE
bandwidth for ``k`` independent draws, and with ``k`` much larger than the number of
particles, which it then repeats, the density looks bumpy.

ArviZ is optional (the ``viz`` extra: ``pip install "dabc[viz]"``) and imported only when
called. Writing netCDF (``InferenceData.to_netcdf``) needs h5netcdf (in the ``viz`` extra) or
netCDF4.
"""

from __future__ import annotations

import base64
import json
import logging
import warnings
from typing import Any

import numpy as np
import scipy.stats

from .._version import __version__
from ..errors import InputError
from .observed import load_observed

__all__ = ["prior_distributions", "systematic_resample", "to_inference_data"]

logger = logging.getLogger("dabc.storage")

# Stream tags: the resampled draws and the prior draws come from streams of their own,
# seeded from the run's seed, never the streams the run itself used.
_RESAMPLE_STREAM = 0x7265  # "re"
_PRIOR_STREAM = 0x7072  # "pr"
_CONFIG_VERSION = 1  # the newest stored-configuration version read here (engine.config)


def _arviz():
    """ArviZ, imported lazily and without its FutureWarning about an upcoming refactor."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError:
        raise InputError('to_inference_data needs ArviZ, which is not installed. Install it '
                         'with: pip install "dabc[viz]"') from None
    return arviz


def systematic_resample(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` equally weighted draws by systematic resampling.

    One uniform ``u`` in ``[0, 1/k)`` places ``k`` evenly spaced points ``u + j/k`` on the
    cumulative distribution of the normalised weights; point ``j`` selects the particle whose
    step of the CDF it falls in. So particle ``i`` is drawn ``floor(k w_i)`` or
    ``ceil(k w_i)`` times: every count differs from ``k w_i`` by less than 1 (a multinomial
    draw only matches it on average), and a particle of weight 0 is never drawn.

    Parameters
    ----------
    weights : numpy.ndarray
        Non-negative weights of the particles (1-d), not necessarily normalised, with a
        positive finite sum.
    k : int
        How many draws (at least 1).
    rng : numpy.random.Generator
        The random stream (one uniform is drawn from it).

    Returns
    -------
    numpy.ndarray
        ``k`` particle indices (int64), ascending.

    Raises
    ------
    InputError
        When ``k`` < 1, or the weights are empty, negative, not finite or sum to 0.

    Examples
    --------
    >>> idx = systematic_resample(np.array([0.5, 0.25, 0.25]), 4, np.random.default_rng(0))
    >>> np.bincount(idx, minlength=3).tolist()
    [2, 1, 1]
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"The number of resampled draws must be an integer >= 1, not {k!r}.")
    w = np.asarray(weights, dtype=float).ravel()
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError("Systematic resampling needs non-negative, finite weights with a "
                         f"positive sum (got {w.size} weights, sum {w.sum() if w.size else 0}).")
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0  # no rounding shortfall: every point below 1 finds a particle
    points = (rng.random() + np.arange(int(k))) / int(k)
    idx = np.searchsorted(cdf, points, side="right")
    return np.minimum(idx, w.size - 1).astype(np.int64)


# -- the prior, from the stored JSON configuration ------------------------------------------
def _decode(v: Any) -> Any:
    """A value of the stored configuration with its JSON tags ($float, $array, $dict) decoded."""
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) == 1 and next(iter(v)).startswith("$"):
        tag, body = next(iter(v.items()))
        if tag == "$float":
            return float(body)
        if tag == "$array":
            return np.frombuffer(base64.b64decode(body["data"]),
                                 dtype=np.dtype(body["dtype"])).reshape(body["shape"]).copy()
        if tag == "$dict":
            return {k: _decode(x) for k, x in body.items()}
        raise ValueError(f"a prior argument is stored as {tag!r}, which is not plain data")
    return {k: _decode(x) for k, x in v.items()}


def prior_distributions(config: bytes, m: int = 0) -> dict[str, Any]:
    """Model ``m``'s prior, rebuilt from a run's stored configuration without running code.

    The configuration (``History.config``) is JSON naming each parameter's scipy.stats
    distribution and its arguments (see :mod:`dabc.engine.config`); this rebuilds the frozen
    distributions from those fields alone, never unpickling anything.

    Parameters
    ----------
    config : bytes
        The run's ``config`` column.
    m : int, default 0
        The model index.

    Returns
    -------
    dict of str to scipy.stats frozen distribution
        Parameter name -> distribution, in the model's parameter order.

    Raises
    ------
    InputError
        When the configuration is in the pickled format of dabc 0.1.0, is of a newer format
        version, is not a dabc configuration, has no model ``m``, or names a distribution or
        arguments scipy.stats does not accept.

    Examples
    --------
    >>> prior = prior_distributions(history.config, m=0)     # doctest: +SKIP
    >>> prior["x"].mean(), prior["x"].std()                   # doctest: +SKIP
    (0.0, 1.0)
    """
    blob = bytes(config)
    if blob.lstrip()[:1] != b"{":
        raise InputError("This run's configuration is in the pickled format of dabc 0.1.0, "
                         "which cannot be read without running the code it holds, so its "
                         "prior cannot be rebuilt here.")
    try:
        doc = json.loads(blob.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The stored configuration is not valid JSON ({exc}); the database "
                         "is damaged.") from exc
    if not isinstance(doc, dict) or doc.get("format") != "dabc-config":
        raise InputError("The stored configuration is not a 'dabc-config' document.")
    version = doc.get("version")
    if not isinstance(version, int) or version > _CONFIG_VERSION:
        raise InputError(f"The stored configuration has format version {version!r}; this "
                         f"dabc reads versions up to {_CONFIG_VERSION}. Upgrade dabc (pip "
                         "install -U dabc).")
    priors = doc.get("priors")
    if not isinstance(priors, list) or not 0 <= m < len(priors):
        raise InputError(f"The stored configuration has no prior for model {m}.")
    out = {}
    for f in priors[m]:
        try:
            name, args, kwargs = (str(f["distribution"]), _decode(f.get("args", [])),
                                  _decode(f.get("kwargs", {})))
            dist = getattr(scipy.stats, name, None)
            if not isinstance(dist, scipy.stats.rv_continuous | scipy.stats.rv_discrete):
                raise ValueError(f"scipy.stats has no distribution {name!r}")
            frozen = dist(*args, **kwargs)
            frozen.support()
        except Exception as exc:  # scipy raises many types for bad arguments
            raise InputError(f"The stored prior of parameter {f.get('parameter')!r} of model "
                             f"{m} cannot be rebuilt: {exc}.") from exc
        out[str(f["parameter"])] = frozen
    return out


# -- the InferenceData --------------------------------------------------------------------
def _stored_generations(history) -> list[int]:
    return [int(t) for t in history.get_all_populations()["t"]]


def _resolve(history, t: int | None, m: int) -> int:
    stored = _stored_generations(history)
    if not stored:
        raise InputError(f"Run {history.id} has no stored generation yet; run it first.")
    if t is None:
        return stored[-1]
    if isinstance(t, bool) or not isinstance(t, int | np.integer):
        raise InputError(f"The generation t must be an integer or None (the last), not {t!r}.")
    gen = stored[-1] + 1 + int(t) if t < 0 else int(t)
    if gen not in stored:
        raise InputError(f"Run {history.id} has no generation {t}; stored generations are "
                         f"{stored[0]}..{stored[-1]} (or None for the last, negative counts "
                         "from the end).")
    return gen


def to_inference_data(history: Any, t: int | None = None, m: int = 0,
                      resample: int | None = None) -> Any:
    """Generation ``t`` of model ``m`` of a stored run as an ``arviz.InferenceData``.

    The groups and attributes are described in :mod:`dabc.storage.inference_data`. With
    ``resample=None`` the posterior holds the weighted particles, and ArviZ summaries of it
    are **unweighted** (``attrs["weighted"] == 1``; the weights are in
    ``sample_stats.weight``). Pass ``resample=k`` for ``k`` equally weighted draws by
    systematic resampling, reproducible from the run's seed, whose ArviZ summaries estimate
    the weighted posterior.

    Parameters
    ----------
    history : History
        A :class:`~dabc.History` opened on the run (typed ``Any`` here only because
        ``History.to_inference_data`` calls this module: an import back would be a cycle).
    t : int, optional
        The generation; default the last, negative counts from the end.
    m : int, default 0
        The model index.
    resample : int, optional
        The number of equally weighted draws to make; default None: the particles as
        stored, with their weights.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``sample_stats``, ``observed_data`` and ``prior`` (the last
        missing for a run stored by dabc 0.1.0).

    Raises
    ------
    InputError
        When ArviZ is not installed (``pip install "dabc[viz]"``), the run has no generation
        ``t``, ``m`` is not a model of the run or has no particles in generation ``t``,
        ``resample`` is not an integer >= 1, or the stored observed data would run code.
    CorruptGenerationError
        When generation ``t`` is stored but cannot be read back.

    Examples
    --------
    >>> import arviz as az                                      # doctest: +SKIP
    >>> idata = to_inference_data(dabc.History("runs.db"), resample=4000)   # doctest: +SKIP
    >>> az.summary(idata, kind="stats")                         # doctest: +SKIP
    """
    if resample is not None and (isinstance(resample, bool)
                                 or not isinstance(resample, int | np.integer) or resample < 1):
        raise InputError(f"resample must be None (keep the weighted particles) or a number of "
                         f"draws >= 1, not {resample!r}.")
    az = _arviz()
    names = history.model_names
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or not 0 <= m < len(names):
        raise InputError(f"Run {history.id} has {len(names)} model"
                         f"{'s' if len(names) != 1 else ''} (m = 0..{len(names) - 1}); "
                         f"m={m!r} is not one of them.")
    m = int(m)
    gen = _resolve(history, t, m)
    arrays = history.get_arrays(gen, m).get(m)
    if arrays is None or len(arrays["weight"]) == 0:
        probs = history.get_model_probabilities()
        alive = [j for j in range(probs.shape[1]) if probs.loc[gen].iloc[j] > 0]
        raise InputError(f"Model {m} ({names[m]!r}) has no particles in generation {gen} of "
                         f"run {history.id} (its probability is 0 there); choose a model that "
                         f"has some (m in {alive}) or an earlier generation.")
    pars = history.param_names[m]
    theta = np.asarray(arrays["theta"], dtype=float)[:, :len(pars)]
    w = np.asarray(arrays["weight"], dtype=float)
    w = w / w.sum()
    dist = np.asarray(arrays["distance"], dtype=float)
    ids = np.asarray(arrays["id"], dtype=np.int64) if "id" in arrays \
        else np.arange(len(w), dtype=np.int64)
    seed = int(history.seed)
    if resample is not None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, gen, m, _RESAMPLE_STREAM]))
        idx = systematic_resample(w, int(resample), rng)
        idx = idx[rng.permutation(idx.size)]
        theta, dist, ids = theta[idx], dist[idx], ids[idx]
        weights = np.full(idx.size, 1.0 / idx.size)
    else:
        weights = w
    n = len(weights)
    posterior = {p: theta[None, :, j] for j, p in enumerate(pars)}
    sample_stats = {"weight": weights[None, :], "distance": dist[None, :],
                    "particle": ids[None, :]}
    if len(names) > 1:
        sample_stats["model"] = np.full((1, n), m, dtype=np.int64)
    observed = {str(k): np.asarray(v) for k, v in
                load_observed(history.observed, trust=False).items()}
    groups: dict[str, Any] = {"posterior": posterior, "sample_stats": sample_stats,
                              "observed_data": observed}
    pops = history.get_all_populations().set_index("t")
    prob = float(history.get_model_probabilities().loc[gen].iloc[m])
    ess = float(1.0 / np.sum(w**2))
    attrs: dict[str, Any] = {
        "inference_library": "dabc", "dabc_version": __version__,
        "run_dabc_version": str(history._run_row().get("version") or ""),
        "run_id": int(history.id), "generation": int(gen),
        "epsilon": float(pops.loc[gen, "epsilon"]), "model": str(names[m]),
        "model_index": m, "model_probability": prob, "n_particles": int(len(w)),
        "ess": ess, "weighted": 0 if resample is not None else 1,
        "resample": int(resample or 0), "seed": seed,
        "note": (f"{resample} equally weighted draws from the {len(w)} weighted particles "
                 "by systematic resampling" if resample is not None else
                 "weighted particles: ArviZ summaries of this posterior are UNWEIGHTED; the "
                 "weights are sample_stats.weight (or export with resample=k)"),
    }
    try:
        prior = prior_distributions(history.config, m)
    except InputError as exc:
        logger.warning("run %s: no prior group in the InferenceData: %s", history.id, exc)
        attrs["prior"] = f"missing: {exc}"
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, m, _PRIOR_STREAM]))
        groups["prior"] = {p: np.asarray(prior[p].rvs(size=n, random_state=rng),
                                         dtype=float)[None, :] for p in pars}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        idata = az.from_dict(**groups)
    for g in idata.groups():
        getattr(idata, g).attrs.update(attrs)
    if hasattr(idata, "attrs"):
        idata.attrs.update(attrs)
    logger.debug("run %s generation %d model %d as InferenceData: %d draws (%s)", history.id,
                 gen, m, n, f"resampled from {len(w)}" if resample else "weighted")
    return idata
