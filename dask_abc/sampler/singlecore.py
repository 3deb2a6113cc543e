"""Evaluate in the calling process."""

from __future__ import annotations

from .. import config
from ..generation import GenerationSpec
from ..sample import SampleCollector
from .base import Sampler, evaluations_still_needed


class SingleCoreSampler(Sampler):
    """Evaluate every index in this process, in order.

    Proposals are drawn for ``abc.single-core.chunk`` indices at once
    (vectorised); simulations stop at the n-th acceptance, so no simulation
    runs in excess. Vectorised models get ranges of the evaluations expected
    to complete the population, up to ``abc.single-core.vectorized-chunk``.

    Examples
    --------
    >>> sampler = SingleCoreSampler()
    """

    def _run(self, spec: GenerationSpec, collector: SampleCollector, acceptance_rate_hint):
        chunk = int(config.get("single-core.chunk"))
        vectorized_chunk = int(config.get("single-core.vectorized-chunk"))
        start = 0
        while not collector.done:
            count = chunk
            if spec.any_vectorized:
                expected = evaluations_still_needed(collector, acceptance_rate_hint)
                count = min(max(expected, chunk), vectorized_chunk)
            count = int(min(count, collector.max_eval - start))
            batch = spec.evaluate(start, count, needed=collector.n - collector.n_accepted)
            collector.add(batch)
            start = batch.stop
