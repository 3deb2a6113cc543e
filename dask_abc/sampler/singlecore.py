"""Evaluate in the calling process."""

from __future__ import annotations

from ..generation import GenerationSpec
from ..sample import SampleCollector
from .base import Sampler
from .policy import Chunks


class SingleCoreSampler(Sampler):
    """Evaluate every index in this process, in order.

    Proposals are drawn for ``abc.single-core.chunk`` indices at once
    (vectorised), fewer for slow models so that a chunk lasts at most
    ``abc.single-core.chunk-seconds`` (a chunk is the unit of a checkpoint: a
    killed run repeats at most one); simulations stop at the n-th
    acceptance, so no simulation runs in excess. Vectorised models get ranges
    of the evaluations expected to complete the population, up to
    ``abc.single-core.vectorized-chunk``.

    Examples
    --------
    >>> SingleCoreSampler().policy
    Chunks()
    """

    def __init__(self, check_max_eval: bool = False):
        super().__init__(check_max_eval)
        self.policy = Chunks()

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        self.policy.vectorized = spec.any_vectorized
        handed_out = 0
        while not collector.done:
            (start, count), = self.policy.ranges(collector, handed_out, in_flight=0, window=1)
            batch = spec.evaluate(start, count, needed=collector.n - collector.n_accepted)
            collector.add(batch)
            self.policy.observe(batch)
            handed_out = batch.stop
