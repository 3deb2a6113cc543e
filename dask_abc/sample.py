"""Assemble a population from batch results that arrive in any order.

The population of a generation is the ``n`` accepted evaluations with the
smallest indices; its evaluation count is the n-th accepted index + 1. A
:class:`SampleCollector` tracks which index ranges have been evaluated and is
done as soon as the contiguous prefix ``[0, P)`` holds ``n`` acceptances (or
reaches ``max_eval``).

With ``model_errors="reject"`` a generation's failed evaluations are those among its
first ``n_evaluations`` (the evaluations that count as its cost, identical for every
sampler); a generation whose first ``max(n, 100)`` evaluations (at most ``max_eval``)
all fail raises :class:`~dask_abc.model.AllEvaluationsFailed`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .generation import BatchResult, first_failures
from .model import AllEvaluationsFailed, ModelError
from .particles import Particles
from .ranges import pop_consecutive


@dataclass(kw_only=True)
class Sample(Particles):
    """The population of one generation as the collector determined it: its
    :class:`~dask_abc.particles.Particles` in index order (weights unnormalised)."""

    n_evaluations: int  # n-th accepted index + 1, or max_eval if incomplete
    all_sum_stats: np.ndarray | None
    complete: bool  # n accepted before max_eval
    evaluations_performed: int  # everything that ran, excess included
    failed_samples: int  # failed evaluations among the first n_evaluations
    first_failures: tuple[ModelError, ...]  # the errors of the first few of them


class SampleCollector:
    """Collect :class:`BatchResult` objects until the population is determined.

    Parameters
    ----------
    n : int
        The population size.
    max_eval : float
        Stop the generation after this many evaluations (from the minimum
        acceptance rate); the sample is then incomplete.
    restored : iterable of BatchResult
        Batches evaluated before (a checkpoint of this generation); samplers
        skip their ranges (:meth:`fit_range`).
    on_batch : callable, optional
        Called with every new batch (not with restored ones or duplicates),
        e.g. to stream it to the database.
    acceptance_rate_hint : float, optional
        The acceptance rate expected before this generation's first results
        (the previous generation's); see :attr:`acceptance_rate_estimate`.

    Examples
    --------
    >>> c = SampleCollector(n=2, acceptance_rate_hint=0.1)
    >>> c.done, c.evaluations_still_needed
    (False, 20)
    >>> c.fit_range(0, 10)
    (0, 10)
    """

    def __init__(self, n: int, max_eval: float = np.inf, restored: Iterable[BatchResult] = (),
                 on_batch: Callable[[BatchResult], None] | None = None,
                 acceptance_rate_hint: float | None = None):
        self.n = n
        self.max_eval = max_eval
        self.acceptance_rate_hint = acceptance_rate_hint
        self.prefix = 0  # [0, prefix) evaluated completely
        self.prefix_accepted = 0
        self.evaluations_performed = 0
        # every distinct range, in the prefix or beyond it
        self.evaluated_seen = self.accepted_seen = 0
        self._waiting: dict[int, BatchResult] = {}  # start -> batch beyond the prefix
        self._waiting_starts: list[int] = []  # sorted keys of _waiting
        self._batches: list[BatchResult] = []  # batches inside the prefix
        self.n_batches = 0
        # the first evaluations that, if all of them fail, end the run
        self.failure_window = int(min(max(n, 100), max_eval))
        self._window_failed = 0  # failures among them, in the prefix
        self.all_failed = False
        self.n_restored = 0  # evaluations restored from a checkpoint
        self.on_batch = None
        for batch in sorted(restored, key=lambda b: b.start):
            self.add(batch)
            self.n_restored += batch.n_evaluated
        self.on_batch = on_batch

    @property
    def done(self) -> bool:
        return (self.prefix_accepted >= self.n or self.prefix >= self.max_eval
                or self.all_failed)

    @property
    def n_accepted(self) -> int:
        """Acceptances inside the contiguous prefix."""
        return self.prefix_accepted

    @property
    def rate_is_measured(self) -> bool:
        """Whether :attr:`acceptance_rate_estimate` comes from this generation's results
        (50 evaluations, or an acceptance), not from the hint."""
        return self.evaluated_seen >= 50 or self.accepted_seen > 0

    @property
    def acceptance_rate_estimate(self) -> float:
        """The acceptance rate seen so far in this generation, else the hint, else 1.

        Every range returned counts, not only the contiguous prefix: on a big cluster the
        prefix stays short for long while hundreds of ranges beyond it have returned, and
        the previous generation's rate (the hint) is usually too high.
        """
        if self.rate_is_measured:
            return max(self.accepted_seen, 1) / self.evaluated_seen
        return self.acceptance_rate_hint or 1.0

    @property
    def evaluations_still_needed(self) -> int:
        """Expected evaluations beyond the prefix until the population is complete (at
        least 1)."""
        return max(1, math.ceil((self.n - self.n_accepted) / self.acceptance_rate_estimate))

    def add(self, batch: BatchResult) -> None:
        self.evaluations_performed += batch.n_evaluated
        self.n_batches += 1
        if batch.n_evaluated == 0 or batch.stop <= self.prefix or batch.start in self._waiting:
            return  # an empty or duplicate result
        self.evaluated_seen += batch.n_evaluated
        self.accepted_seen += batch.n_accepted
        if self.on_batch is not None:
            self.on_batch(batch)
        self._waiting[batch.start] = batch
        bisect.insort(self._waiting_starts, batch.start)
        for b in pop_consecutive(self._waiting, self.prefix, until=lambda: self.done):
            self._waiting_starts.remove(b.start)
            self._batches.append(b)
            self.prefix = b.stop
            self.prefix_accepted += b.n_accepted
            self._window_failed += int(np.count_nonzero(b.failed < self.failure_window))
            self.all_failed = (self.prefix >= self.failure_window
                               and self._window_failed >= self.failure_window)

    def fit_range(self, start: int, count: int) -> tuple[int, int]:
        """The range to hand out instead of ``[start, start + count)``: moved past indices
        already evaluated, cut before the next evaluated range and at ``max_eval``.

        Outside a resumed generation this is ``(start, count)`` (capped at ``max_eval``):
        only restored batches lie beyond the ranges a sampler has handed out.
        """
        start = max(start, self.prefix)
        k = bisect.bisect_right(self._waiting_starts, start)
        if k and self._waiting[self._waiting_starts[k - 1]].stop > start:  # inside a batch
            start = self._waiting[self._waiting_starts[k - 1]].stop
            while k < len(self._waiting_starts) and self._waiting_starts[k] == start:
                start = self._waiting[self._waiting_starts[k]].stop
                k += 1
        end = min(start + count, self.max_eval)
        if k < len(self._waiting_starts):
            end = min(end, self._waiting_starts[k])
        return int(start), int(max(end - start, 0))

    def result(self) -> Sample:
        if not self.done:
            raise RuntimeError("SampleCollector.result() before the population is complete")
        if self.all_failed:
            first, = first_failures(self._batches, keep=1)
            raise AllEvaluationsFailed(first.model, first.parameter, first.index, first.t,
                                       first.cause, self.failure_window)
        b = BatchResult.concat(self._batches)
        n = self.n
        complete = b.n_accepted >= n
        n_eval = int(b.index[n - 1]) + 1 if complete else int(min(self.prefix, self.max_eval))
        keep = slice(0, n) if complete else np.flatnonzero(b.index < n_eval)
        failed = b.failed[b.failed < n_eval]  # the prefix starts at index 0
        all_sum_stats = None
        if b.all_sum_stats is not None:  # failed evaluations have no statistics
            all_sum_stats = np.delete(b.all_sum_stats[:n_eval], failed, axis=0)
        return Sample(
            n_evaluations=n_eval,
            all_sum_stats=all_sum_stats,
            complete=complete,
            evaluations_performed=self.evaluations_performed,
            failed_samples=len(failed),
            first_failures=first_failures(self._batches, below=n_eval),
            **b.columns(keep),
        )
