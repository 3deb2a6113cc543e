"""dask-abc: likelihood-free Bayesian inference by ABC-SMC, parallel and distributed.

The public API keeps pyABC's names and call shapes: ``import dask_abc as pyabc``.
"""

from . import (
    config,  # noqa: F401  (registers the dask.config defaults)
    sampler,
    visualization,  # matplotlib is imported only when a plot is drawn
)
from .acceptor import Acceptor, FunctionAcceptor, UniformAcceptor
from .batch_random import BatchRandom
from .distance import (
    AdaptivePNormDistance,
    Distance,
    FunctionDistance,
    PNormDistance,
    median_absolute_deviation,
    standard_deviation,
)
from .epsilon import ConstantEpsilon, Epsilon, ListEpsilon, MedianEpsilon, QuantileEpsilon
from .generation import GenerationSpec
from .inference import ABCSMC, SetupChangedError
from .model import (
    AllEvaluationsFailed,
    FunctionModel,
    Model,
    ModelError,
    VectorizedModel,
    vectorized,
)
from .model import FunctionModel as SimpleModel
from .observers import GenerationObserver, GenerationOutcome
from .parameters import Parameter
from .populationstrategy import ConstantPopulationSize
from .random_variables import RV, BoundedRV, Distribution, LowerBoundDecorator, RVBase
from .reproducibility import GlobalRandomStateWarning
from .storage import DatabaseError, History, RunLockedError
from .sumstat import SumStatError, identity
from .transition import (
    LocalTransition,
    ModelPerturbationKernel,
    MultivariateNormalTransition,
    Transition,
    scott_rule_of_thumb,
    silverman_rule_of_thumb,
)
from .utils import create_sqlite_db_id

__version__ = "0.1.0"

__all__ = [
    "ABCSMC",
    "Acceptor",
    "BatchRandom",
    "AdaptivePNormDistance",
    "AllEvaluationsFailed",
    "BoundedRV",
    "ConstantPopulationSize",
    "ConstantEpsilon",
    "DatabaseError",
    "Distance",
    "Distribution",
    "Epsilon",
    "FunctionAcceptor",
    "FunctionDistance",
    "FunctionModel",
    "GenerationObserver",
    "GenerationOutcome",
    "GenerationSpec",
    "GlobalRandomStateWarning",
    "History",
    "ListEpsilon",
    "LocalTransition",
    "LowerBoundDecorator",
    "MedianEpsilon",
    "Model",
    "ModelError",
    "ModelPerturbationKernel",
    "MultivariateNormalTransition",
    "PNormDistance",
    "Parameter",
    "QuantileEpsilon",
    "RV",
    "RVBase",
    "RunLockedError",
    "SetupChangedError",
    "SimpleModel",
    "SumStatError",
    "Transition",
    "UniformAcceptor",
    "VectorizedModel",
    "create_sqlite_db_id",
    "identity",
    "median_absolute_deviation",
    "sampler",
    "scott_rule_of_thumb",
    "silverman_rule_of_thumb",
    "standard_deviation",
    "vectorized",
    "visualization",
]
