"""Samplers: where simulations run. All follow the DYN or STAT determinism contract.

``base`` holds the contract a backend implements; ``scheduling`` the DYN and STAT
schedulers every backend uses; ``worker`` the worker side (load the work, run a task).
The Redis and Dask samplers import their libraries only when used (extras ``redis`` and
``dask``), so the core installs without them.
"""

from .base import Batch, Sampler, SampleResult, Task, Work, WorkRequest
from .dask import DaskDistributedSampler
from .futures import ConcurrentFutureSampler
from .mapping import MappingSampler
from .multicore import MulticoreEvalParallelSampler, MulticoreParticleParallelSampler
from .redis import RedisEvalParallelSampler, RedisStaticSampler
from .scheduling import DynamicScheduler, StaticScheduler
from .single import SingleCoreSampler

__all__ = [
    "Batch", "ConcurrentFutureSampler", "DaskDistributedSampler", "DynamicScheduler",
    "MappingSampler", "MulticoreEvalParallelSampler", "MulticoreParticleParallelSampler",
    "RedisEvalParallelSampler", "RedisStaticSampler", "SampleResult", "Sampler",
    "SingleCoreSampler", "StaticScheduler", "Task", "Work", "WorkRequest",
]
