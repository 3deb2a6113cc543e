"""Which index range kills workers: the quarantine of ranges that ended in ``KilledWorker``.

Dask ends a task in ``KilledWorker`` when it was on
``distributed.scheduler.allowed-failures`` + 1 workers that died, whether it ran
there or only waited in the worker's queue. Such a range is only a *suspect*,
and the generation goes into quarantine: no new ranges, and the ranges
submitted so far that have not started return unevaluated (they are
*deferred*, handed out again afterwards). Once every range has returned, each
suspect is evaluated alone, lowest index first (nothing else of the generation
runs, so if its worker dies, it was running there). A suspect that completes
alone is used like any other result; one that kills workers alone is split in
halves, each evaluated alone in turn. A single index that kills workers alone
``retries`` + 1 times is the *culprit*: only ranges below it still matter, and
the run stops naming it once everything below it has been evaluated without
completing the population (exactly when a single-core run would evaluate it).

This module knows nothing of Dask: the sampler reports outcomes and submits
what :meth:`KilledWorkerTriage.next_ranges` says.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

logger = logging.getLogger("dask_abc")

Range = tuple[int, int]  # (start, count)


@dataclass(frozen=True)
class Culprit:
    """An index that killed workers each of the ``times`` it ran alone (last ``error``)."""

    index: int
    times: int
    error: BaseException


class KilledWorkerTriage:
    """The quarantine of one generation (see the module's docstring).

    Parameters
    ----------
    retries : int
        A single index that kills workers alone this many times more than once is
        the culprit (``abc.dask.killed-worker-retries``).
    t : int
        The generation, for the log.

    Examples
    --------
    Index 3 of the range (0, 4) kills every worker it runs on:

    >>> triage = KilledWorkerTriage(retries=0)
    >>> triage.killed(0, 4, alone=False, error=RuntimeError("KilledWorker"))  # quarantine
    True
    >>> triage.next_ranges(in_flight=0)  # once nothing else runs: the suspect alone
    ([(0, 4)], True)
    >>> triage.killed(0, 4, alone=True, error=RuntimeError("KilledWorker"))  # halves
    False
    >>> triage.next_ranges(0), triage.next_ranges(0)  # (0, 2) completes alone, (2, 2) not
    (([(0, 2)], True), ([(2, 2)], True))
    >>> triage.killed(2, 2, alone=True, error=RuntimeError("KilledWorker"))
    False
    >>> triage.next_ranges(0), triage.next_ranges(0)  # (2, 1) completes, (3, 1) not
    (([(2, 1)], True), ([(3, 1)], True))
    >>> triage.killed(3, 1, alone=True, error=RuntimeError("KilledWorker"))
    False
    >>> triage.next_ranges(0), triage.open  # quarantine over, nothing new beyond index 3
    (([], False), False)
    >>> triage.blame(population_complete=False).index
    3
    """

    def __init__(self, retries: int, t: int | None = None):
        self.retries = int(retries)
        self.t = t
        self.quarantine = False
        self.suspects: list[Range] = []  # a heap: the lowest runs alone first
        self.deferred: list[Range] = []  # ranges that returned unevaluated in quarantine
        self.killed_alone: dict[int, int] = {}  # index -> KilledWorker when it ran alone
        self.culprit: Culprit | None = None  # the lowest index that killed workers too often

    @property
    def open(self) -> bool:
        """Whether new ranges may be handed out (no quarantine, no culprit)."""
        return not self.quarantine and self.culprit is None

    def killed(self, start: int, count: int, alone: bool, error: BaseException) -> bool:
        """A range ended in ``KilledWorker``: a suspect, halves of it, or a culprit.

        Returns whether a quarantine begins now (the ranges submitted so far that have
        not started should then return unevaluated).
        """
        if not alone:  # maybe it only waited on a worker that another range killed
            heapq.heappush(self.suspects, (start, count))
            if self.quarantine:
                return False
            self.quarantine = True
            logger.info("generation %s: indices %d..%d ended in %r; new ranges wait until "
                        "the suspects have been evaluated alone", self.t, start,
                        start + count - 1, error)
            return True
        if count > 1:  # it kills workers alone: which of its indices does?
            half = count // 2
            heapq.heappush(self.suspects, (start, half))
            heapq.heappush(self.suspects, (start + half, count - half))
            return False
        times = self.killed_alone[start] = self.killed_alone.get(start, 0) + 1
        if times <= self.retries:
            heapq.heappush(self.suspects, (start, count))
        elif self.culprit is None or start < self.culprit.index:
            self.culprit = Culprit(start, times, error)
            logger.info("generation %s: index %d killed workers each time it ran alone",
                        self.t, start)
        return False

    def defer(self, start: int, count: int, alone: bool) -> bool:
        """A range returned unevaluated (paused, cancelled, or on a worker without the
        spec): whether the quarantine keeps it for later; if not, submit it again now."""
        if self.quarantine and not alone:
            self.deferred.append((start, count))
            return True
        return False

    def next_ranges(self, in_flight: int) -> tuple[list[Range], bool]:
        """The ranges to submit now, and whether they run alone; ``([], False)`` if none.

        In quarantine with nothing in flight: the lowest suspect, alone; with no suspect
        left, the quarantine ends and the deferred ranges come back, lowest first.
        """
        if self.culprit is not None:  # the population cannot pass the culprit
            index = self.culprit.index
            self.suspects = [r for r in self.suspects if r[0] < index]
            heapq.heapify(self.suspects)
            self.deferred = [r for r in self.deferred if r[0] < index]
        if not self.quarantine or in_flight:
            return [], False
        if self.suspects:
            return [heapq.heappop(self.suspects)], True
        self.quarantine = False
        deferred, self.deferred = sorted(self.deferred), []
        return deferred, False

    def blame(self, population_complete: bool) -> Culprit | None:
        """The culprit, if the population needs it: every range has returned and the
        population is still incomplete."""
        return None if population_complete else self.culprit
