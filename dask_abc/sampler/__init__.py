"""Samplers: where and when the evaluations of a generation run."""

from .base import Sampler, SamplerError, nr_cores_available
from .concurrent_future import ConcurrentFutureSampler
from .mapping import MappingSampler
from .multicore import (
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    MulticoreSampler,
)
from .singlecore import SingleCoreSampler


def default_sampler() -> Sampler:
    """The sampler used when ABCSMC gets none: :class:`MulticoreEvalParallelSampler`
    with one process per core (``$PYABC_NUM_PROCS`` or ``abc.multicore.n-procs``)."""
    return MulticoreEvalParallelSampler()


__all__ = [
    "ConcurrentFutureSampler",
    "MappingSampler",
    "MulticoreEvalParallelSampler",
    "MulticoreParticleParallelSampler",
    "MulticoreSampler",
    "Sampler",
    "SamplerError",
    "SingleCoreSampler",
    "default_sampler",
    "nr_cores_available",
]
