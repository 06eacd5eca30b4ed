"""Dask and Redis clusters on SLURM, and how many workers are worth it.

- :class:`SLURMCluster`: dask-jobqueue's ``SLURMCluster`` with secure, walltime-aware
  defaults: TLS without a shared filesystem, the dashboard on loopback, workers that retire
  before their job's walltime, a preflight check of the request against the partition, and
  the reason SLURM gives for pending jobs reported while they wait.
- Grab mode (``dabc cluster up/status/down``, :func:`connect`): a cluster that stays up for
  interactive work; batch mode (``dabc cluster batch``): one job that runs a script with its
  own scheduler (Dask) or ``redis-server`` (Redis) and workers.
- :func:`scaling_study` (``dabc scaling``): wall time, speed-up, efficiency and cost at each
  worker count, and the knee beyond which more workers are not worth it.

Everything here needs the ``cluster`` extra (``pip install 'dabc[cluster]'``:
dask-jobqueue and cryptography). The names are loaded on first use, so ``import
dabc.cluster`` costs nothing until one of them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {  # public name -> module (each helper module adds its own names here)
    "TLSMaterial": "tls",
    "SLURMCluster": "slurm",
    "InsecureClusterWarning": "slurm",
    "connect": "grab",
    "scaling_study": "scaling",
    "ScalingResult": "scaling",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (``dask_jobqueue`` is slow to import)."""
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'dabc.cluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
