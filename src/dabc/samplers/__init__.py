"""Samplers: where simulations run. All follow the DYN or STAT determinism contract."""

from .base import Batch, DynamicScheduler, Sampler, SampleResult, StaticScheduler, WorkRequest
from .futures import ConcurrentFutureSampler
from .mapping import MappingSampler
from .multicore import MulticoreEvalParallelSampler, MulticoreParticleParallelSampler
from .single import SingleCoreSampler

__all__ = [
    "Batch", "ConcurrentFutureSampler", "DynamicScheduler", "MappingSampler",
    "MulticoreEvalParallelSampler", "MulticoreParticleParallelSampler", "SampleResult",
    "Sampler", "SingleCoreSampler", "StaticScheduler", "WorkRequest",
]
