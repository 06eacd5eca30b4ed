"""The ABC-SMC engine: priors, models, distances, epsilon schedules, transitions."""

from .checkpoint import RunInterrupted
from .distance import AdaptivePNormDistance, Distance, FunctionDistance, PNormDistance
from .epsilon import ConstantEpsilon, Epsilon, ListEpsilon, MedianEpsilon, QuantileEpsilon
from .learned import LearnedStatisticsDistance
from .model import vectorized
from .prior import RV, Prior
from .smc import ABCSMC, EpsilonStallWarning
from .transition import LocalTransition, MultivariateNormalTransition, Transition

__all__ = [
    "ABCSMC", "RV", "AdaptivePNormDistance", "ConstantEpsilon", "Distance", "Epsilon",
    "EpsilonStallWarning", "FunctionDistance", "LearnedStatisticsDistance", "ListEpsilon",
    "LocalTransition",
    "MedianEpsilon", "MultivariateNormalTransition", "PNormDistance", "Prior",
    "QuantileEpsilon", "RunInterrupted", "Transition", "vectorized",
]
