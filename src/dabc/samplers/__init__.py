"""Samplers: where simulations run. All follow the DYN or STAT determinism contract.

The Redis and Dask samplers import their libraries only when used (extras ``redis`` and
``dask``), so the core installs without them.
"""

from .base import Batch, DynamicScheduler, Sampler, SampleResult, StaticScheduler, WorkRequest
from .dask import DaskDistributedSampler
from .futures import ConcurrentFutureSampler
from .mapping import MappingSampler
from .multicore import MulticoreEvalParallelSampler, MulticoreParticleParallelSampler
from .redis import RedisEvalParallelSampler, RedisStaticSampler
from .single import SingleCoreSampler

__all__ = [
    "Batch", "ConcurrentFutureSampler", "DaskDistributedSampler", "DynamicScheduler",
    "MappingSampler", "MulticoreEvalParallelSampler", "MulticoreParticleParallelSampler",
    "RedisEvalParallelSampler", "RedisStaticSampler", "SampleResult", "Sampler",
    "SingleCoreSampler", "StaticScheduler", "WorkRequest",
]
