"""dabc: distributed approximate Bayesian computation (ABC-SMC).

The same script runs on one core, all cores of a machine, or a cluster, and gives the same
answer for the same seed.

Layers
------
The subpackages form one-way layers; a module may import from its own subpackage and from any
layer below its own, never from a layer above or from a sibling in the same layer::

    cli                                   (top: argument parsing and printing)
    dabc (this file)                      (re-exports the public names of the layers below)
    cluster, viz                          (cluster set-ups, plots: future subpackages)
    engine                                (ABC-SMC: priors, distances, epsilons, the loop)
    samplers, storage, learn, stan        (independent of each other)
    _compat                               (doors to other libraries' private APIs)
    errors, _version                      (import nothing from dabc)

``__main__`` sits above ``cli``. Nothing in the package imports the package root ``dabc``
(neither ``import dabc`` nor ``from .. import X`` reaching this file): the root imports the
engine and the samplers, so a lower module importing it would import the layers above itself.
``engine`` knows ``samplers`` through the contract in ``dabc.samplers.base`` (and names
the default sampler), and no sampler knows the engine. Within each subpackage the modules
import each other without a cycle. ``tests/test_layers.py`` checks all of this on every
import statement of ``src/dabc``: at module level, inside functions and under
``if TYPE_CHECKING:``.

Logging
-------
dabc logs through ``logging.getLogger("dabc")`` and its children (``dabc.engine``,
``dabc.samplers``, ``dabc.storage``, ``dabc.stan``, ...): dead workers and re-queued tasks,
re-sent work, backup tasks, a generation's first failed evaluation, storage errors. It adds
only a ``NullHandler``; see the records with e.g. ``logging.basicConfig(level="INFO")``.
"""

import logging as _logging

from ._version import __version__ as __version__
from .engine import (
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
    RunInterrupted,
    Transition,
    vectorized,
)
from .errors import DabcError, InputError, ModelError, WorkerError
from .samplers import (
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
from .storage import History

_logging.getLogger("dabc").addHandler(_logging.NullHandler())

__all__ = [
    "ABCSMC", "AdaptivePNormDistance", "ConcurrentFutureSampler", "ConstantEpsilon",
    "DabcError", "DaskDistributedSampler", "Distance", "Epsilon", "EpsilonStallWarning",
    "FunctionDistance", "History", "InputError", "LearnedStatisticsDistance", "ListEpsilon",
    "LocalTransition",
    "MappingSampler", "MedianEpsilon", "ModelError", "MulticoreEvalParallelSampler",
    "MulticoreParticleParallelSampler", "MultivariateNormalTransition", "PNormDistance",
    "Prior", "QuantileEpsilon", "RV", "RedisEvalParallelSampler", "RedisStaticSampler",
    "RunInterrupted", "Sampler", "SingleCoreSampler", "Transition", "WorkerError", "vectorized",
]
