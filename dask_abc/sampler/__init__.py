"""Samplers: where and when the evaluations of a generation run."""

from .base import Sampler, SamplerError, nr_cores_available
from .broker import ActorEvalParallelSampler, BrokerSampler, RedisEvalParallelSampler
from .concurrent_future import ConcurrentFutureSampler
from .dask_distributed import DaskDistributedSampler
from .mapping import MappingSampler
from .multicore import (
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    MulticoreSampler,
)
from .singlecore import SingleCoreSampler


def default_sampler() -> Sampler:
    """The sampler used when ABCSMC gets none: a :class:`DaskDistributedSampler` on the
    current default Dask client if there is one (so ``Client(SLURMCluster(...))``
    then ``smc.run()`` uses the cluster), else :class:`MulticoreEvalParallelSampler`
    with one process per core (``$PYABC_NUM_PROCS`` or ``abc.multicore.n-procs``)."""
    from distributed import Client

    try:
        return DaskDistributedSampler(Client.current())
    except ValueError:  # no client
        return MulticoreEvalParallelSampler()


__all__ = [
    "ActorEvalParallelSampler",
    "BrokerSampler",
    "ConcurrentFutureSampler",
    "DaskDistributedSampler",
    "MappingSampler",
    "MulticoreEvalParallelSampler",
    "MulticoreParticleParallelSampler",
    "MulticoreSampler",
    "RedisEvalParallelSampler",
    "Sampler",
    "SamplerError",
    "SingleCoreSampler",
    "default_sampler",
    "nr_cores_available",
]
