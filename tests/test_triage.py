"""The KilledWorker triage of the Dask sampler, without Dask.

:class:`~dask_abc.sampler.triage.KilledWorkerTriage` is driven here as the Dask
sampler drives it: ranges in flight end in ``KilledWorker`` (a suspect and a
quarantine), return unevaluated (deferred) or complete; once nothing is in flight,
suspects run alone, lowest first, and are bisected down to the index that kills
workers. The live runs with crashing workers are in test_dask.py.
"""

from __future__ import annotations

import pytest

from dask_abc.sampler.triage import Culprit, KilledWorkerTriage


class KilledWorker(Exception):
    """Stands for distributed.KilledWorker."""


def run_alone(triage: KilledWorkerTriage, crashes) -> list[tuple[int, int]]:
    """Evaluate every range the triage hands out alone until it hands out none; a range
    kills its worker if ``crashes(index)`` for one of its indices. The ranges run alone,
    in order; the ranges handed back at the end of the quarantine are appended last."""
    alone_ranges = []
    while True:
        ranges, alone = triage.next_ranges(in_flight=0)
        if not alone:
            return alone_ranges + ranges
        (start, count), = ranges
        alone_ranges.append((start, count))
        if any(crashes(i) for i in range(start, start + count)):
            assert triage.killed(start, count, alone=True, error=KilledWorker(start)) is False


def test_a_single_bad_index_is_found_and_blamed_when_the_population_needs_it():
    triage = KilledWorkerTriage(retries=1, t=3)
    assert triage.open
    # (0, 10) completes; (10, 10) ends in KilledWorker: a quarantine begins once
    assert triage.killed(10, 10, alone=False, error=KilledWorker()) is True
    assert not triage.open
    assert triage.next_ranges(in_flight=1) == ([], False)  # (0, 10) still runs
    run_alone(triage, crashes=lambda i: i == 13)
    assert triage.culprit.index == 13 and triage.culprit.times == 2
    assert isinstance(triage.culprit.error, KilledWorker)
    assert not triage.open  # nothing beyond the culprit is handed out
    assert triage.blame(population_complete=False) == triage.culprit
    assert triage.blame(population_complete=True) is None  # it lies beyond the population


def test_suspects_run_alone_lowest_first_and_are_bisected():
    triage = KilledWorkerTriage(retries=1)
    triage.killed(10, 10, alone=False, error=KilledWorker())
    order = run_alone(triage, crashes=lambda i: i == 13)
    assert order == [(10, 10),  # the suspect kills alone: halves
                     (10, 5),  # the lower half kills: halves (10, 2) and (12, 3)
                     (10, 2),  # completes
                     (12, 3),  # kills: (12, 1) and (13, 2)
                     (12, 1),  # completes
                     (13, 2),  # kills: (13, 1) and (14, 1)
                     (13, 1),  # kills once: retried
                     (13, 1)]  # kills again: the culprit; (14, 1) and (15, 5) are dropped


def test_a_suspect_that_completes_alone_was_innocent():
    triage = KilledWorkerTriage(retries=0)
    triage.killed(0, 8, alone=False, error=KilledWorker())
    triage.killed(8, 8, alone=False, error=KilledWorker())  # already in quarantine
    assert run_alone(triage, crashes=lambda i: False) == [(0, 8), (8, 8)]
    assert triage.open and triage.culprit is None
    assert triage.blame(population_complete=False) is None


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_an_index_is_the_culprit_after_retries_plus_one_crashes_alone(retries):
    triage = KilledWorkerTriage(retries=retries)
    triage.killed(5, 1, alone=False, error=KilledWorker())
    assert run_alone(triage, crashes=lambda i: i == 5) == [(5, 1)] * (retries + 1)
    assert triage.culprit == Culprit(5, retries + 1, triage.culprit.error)


def test_an_index_that_crashes_only_sometimes_is_not_blamed():
    triage = KilledWorkerTriage(retries=2)
    triage.killed(5, 1, alone=False, error=KilledWorker())
    crashes = iter([True, True, False])  # killed twice, then completes
    assert run_alone(triage, crashes=lambda i: next(crashes)) == [(5, 1)] * 3
    assert triage.culprit is None and triage.open


def test_ranges_returned_in_quarantine_come_back_lowest_first_below_the_culprit():
    triage = KilledWorkerTriage(retries=0)
    assert triage.defer(30, 10, alone=False) is False  # no quarantine: submit it again
    triage.killed(20, 10, alone=False, error=KilledWorker())
    # ranges that had not started return paused: kept for after the quarantine
    for start in (50, 0, 40, 10):
        assert triage.defer(start, 10, alone=False) is True
    assert triage.next_ranges(in_flight=0) == ([(20, 10)], True)
    assert triage.defer(20, 10, alone=True) is False  # a suspect alone goes again at once
    assert triage.next_ranges(in_flight=1) == ([], False)
    # the suspect completes: the quarantine ends, the deferred ranges come back in order
    assert triage.next_ranges(in_flight=0) == ([(0, 10), (10, 10), (40, 10), (50, 10)],
                                               False)
    assert triage.open


def test_the_lowest_culprit_wins_and_only_ranges_below_it_come_back():
    triage = KilledWorkerTriage(retries=0)
    triage.killed(40, 1, alone=False, error=KilledWorker())
    triage.killed(20, 1, alone=False, error=KilledWorker())
    for start in (0, 10, 30, 50):
        triage.defer(start, 10, alone=False)
    back = run_alone(triage, crashes=lambda i: i in (20, 40))
    assert back == [(20, 1), (0, 10), (10, 10)]  # (40, 1) is beyond the culprit: dropped
    assert triage.culprit.index == 20
    # a higher index that kills later does not replace it; a lower one does
    triage.killed(25, 1, alone=True, error=KilledWorker())
    assert triage.culprit.index == 20
    triage.killed(15, 1, alone=True, error=KilledWorker())
    assert triage.culprit.index == 15
