"""Evaluate in the calling process."""

from __future__ import annotations

from .. import config
from ..generation import GenerationSpec
from ..sample import SampleCollector
from .base import Sampler


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
    >>> sampler = SingleCoreSampler()
    """

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        chunk = int(config.get("single-core.chunk"))
        vectorized_chunk = int(config.get("single-core.vectorized-chunk"))
        chunk_seconds = float(config.get("single-core.chunk-seconds"))
        start, count = 0, 1  # one evaluation first, to time the model
        while not collector.done:
            if spec.any_vectorized:
                count = min(max(collector.evaluations_still_needed, chunk), vectorized_chunk)
            start, count = collector.fit_range(start, count)
            batch = spec.evaluate(start, count, needed=collector.n - collector.n_accepted)
            collector.add(batch)
            start = batch.stop
            per_eval = batch.seconds / max(batch.n_evaluated, 1)
            count = max(1, min(chunk, int(chunk_seconds / max(per_eval, 1e-9))))
