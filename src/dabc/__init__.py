"""dabc: distributed approximate Bayesian computation (ABC-SMC).

The same script runs on one core, all cores of a machine, or a cluster, and gives the same
answer for the same seed.
"""

__version__ = "0.1.0"

from .engine import (  # noqa: E402
    ABCSMC,
    RV,
    AdaptivePNormDistance,
    ConstantEpsilon,
    Distance,
    Epsilon,
    EpsilonStallWarning,
    FunctionDistance,
    LearnedStatisticsDistance,
    ListEpsilon,
    LocalTransition,
    MedianEpsilon,
    MultivariateNormalTransition,
    PNormDistance,
    Prior,
    QuantileEpsilon,
    Transition,
    vectorized,
)
from .errors import DabcError, InputError, ModelError, WorkerError  # noqa: E402
from .samplers import (  # noqa: E402
    ConcurrentFutureSampler,
    DaskDistributedSampler,
    MappingSampler,
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    RedisEvalParallelSampler,
    RedisStaticSampler,
    Sampler,
    SingleCoreSampler,
)
from .storage import History  # noqa: E402

__all__ = [
    "ABCSMC", "AdaptivePNormDistance", "ConcurrentFutureSampler", "ConstantEpsilon",
    "DabcError", "DaskDistributedSampler", "Distance", "Epsilon", "EpsilonStallWarning",
    "FunctionDistance", "History", "InputError", "LearnedStatisticsDistance", "ListEpsilon",
    "LocalTransition",
    "MappingSampler", "MedianEpsilon", "ModelError", "MulticoreEvalParallelSampler",
    "MulticoreParticleParallelSampler", "MultivariateNormalTransition", "PNormDistance",
    "Prior", "QuantileEpsilon", "RV", "RedisEvalParallelSampler", "RedisStaticSampler",
    "Sampler", "SingleCoreSampler", "Transition", "WorkerError", "vectorized",
]
