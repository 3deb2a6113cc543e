"""Assemble a population from batch results that arrive in any order.

The population of a generation is the ``n`` accepted evaluations with the
smallest indices; its evaluation count is the n-th accepted index + 1. A
:class:`SampleCollector` tracks which index ranges have been evaluated and is
done as soon as the contiguous prefix ``[0, P)`` holds ``n`` acceptances (or
reaches ``max_eval``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generation import BatchResult


@dataclass
class Sample:
    """The population of one generation, in index order."""

    n_evaluations: int  # n-th accepted index + 1, or max_eval if incomplete
    index: np.ndarray
    model: np.ndarray
    theta: np.ndarray
    distance: np.ndarray
    weight: np.ndarray
    sum_stats: np.ndarray
    all_sum_stats: np.ndarray | None
    complete: bool  # n accepted before max_eval
    evaluations_performed: int  # everything that ran, excess included

    @property
    def n_accepted(self) -> int:
        return len(self.index)


class SampleCollector:
    """Collect :class:`BatchResult` objects until the population is determined.

    Parameters
    ----------
    n : int
        The population size.
    max_eval : float
        Stop the generation after this many evaluations (from the minimum
        acceptance rate); the sample is then incomplete.

    Examples
    --------
    >>> c = SampleCollector(n=2)
    >>> c.done
    False
    """

    def __init__(self, n: int, max_eval: float = np.inf):
        self.n = n
        self.max_eval = max_eval
        self.prefix = 0  # [0, prefix) evaluated completely
        self.prefix_accepted = 0
        self.evaluations_performed = 0
        self._waiting: dict[int, BatchResult] = {}  # start -> batch beyond the prefix
        self._batches: list[BatchResult] = []  # batches inside the prefix
        self.n_batches = 0

    @property
    def done(self) -> bool:
        return self.prefix_accepted >= self.n or self.prefix >= self.max_eval

    @property
    def n_accepted(self) -> int:
        """Acceptances inside the contiguous prefix."""
        return self.prefix_accepted

    def add(self, batch: BatchResult) -> None:
        self.evaluations_performed += batch.n_evaluated
        self.n_batches += 1
        if batch.n_evaluated == 0 or batch.stop <= self.prefix:
            return  # an empty or duplicate result
        self._waiting[batch.start] = batch
        while self.prefix in self._waiting and not self.done:
            b = self._waiting.pop(self.prefix)
            self._batches.append(b)
            self.prefix = b.stop
            self.prefix_accepted += b.n_accepted

    def result(self) -> Sample:
        if not self.done:
            raise RuntimeError("SampleCollector.result() before the population is complete")
        batches = self._batches

        def cat(attr):
            return np.concatenate([getattr(b, attr) for b in batches])

        index, n = cat("index"), self.n
        complete = len(index) >= n
        n_eval = int(index[n - 1]) + 1 if complete else int(min(self.prefix, self.max_eval))
        keep = slice(0, n) if complete else np.flatnonzero(index < n_eval)
        all_stats = None
        if batches and batches[0].all_sum_stats is not None:
            all_stats = np.concatenate([b.all_sum_stats for b in batches])[:n_eval]
        return Sample(
            n_evaluations=n_eval,
            index=index[keep],
            model=cat("model")[keep],
            theta=cat("theta")[keep],
            distance=cat("distance")[keep],
            weight=cat("weight")[keep],
            sum_stats=cat("sum_stats")[keep],
            all_sum_stats=all_stats,
            complete=complete,
            evaluations_performed=self.evaluations_performed,
        )
