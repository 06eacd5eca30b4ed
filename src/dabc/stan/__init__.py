"""Stan model fleets: compile once, ship the compiled artifact to each worker once, fit many.

- :class:`StanModel` compiles a Stan program (PyStan 3's httpstan, or CmdStanPy when CmdStan is
  installed) and keeps the compiled file as compressed bytes with a SHA-256 hash.
- :func:`sample_many` fits models to data sets on a Dask cluster (or in this process), one task
  per (model, data set), results as they complete, a tidy table and ArviZ InferenceData.
- :func:`stan_simulator` turns a Stan program's generated quantities into a dabc ABC model.

No filesystem is shared: every worker writes the artifact into its own cache directory.

Modules, each importing only those before it: ``errors`` (the three exceptions); the backends
``_httpstan`` (its use of httpstan internals behind :mod:`dabc._compat.httpstan`) and
``_cmdstan``; ``artifact`` (the compiled file as bytes, the cache directory, counters);
``fit`` (one fit's result and task); ``model`` (compilation, :class:`StanModel`);
``simulator``; ``_dask`` (the worker plugins, which need ``distributed``); ``fleet``
(:func:`sample_many`). Logging goes to ``logging.getLogger("dabc.stan")``: compilations,
artifacts shipped, received and materialised, failed fits.
"""

from .artifact import Artifact, cache_dir, materialise, reset_stats, set_cache_dir, stats
from .errors import StanDataError, StanEnvironmentError, StanFitError
from .fit import Fit, summarise
from .fleet import Fleet, sample_many, ship, worker_stats
from .model import StanModel
from .simulator import StanSimulator, stan_simulator

__all__ = [
    "Artifact", "Fit", "Fleet", "PrivateCacheDir", "StanDataError", "StanEnvironmentError",
    "StanFitError", "StanModel", "StanSimulator", "cache_dir", "materialise", "reset_stats",
    "sample_many", "set_cache_dir", "ship", "stan_simulator", "stats", "summarise",
    "worker_stats",
]


def __getattr__(name: str) -> type:
    # PrivateCacheDir subclasses a distributed class: import Dask only when it is asked for
    if name == "PrivateCacheDir":
        from ._dask import PrivateCacheDir

        return PrivateCacheDir
    raise AttributeError(f"module 'dabc.stan' has no attribute {name!r}")
