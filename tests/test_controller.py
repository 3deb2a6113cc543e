"""The range controller of the Dask and broker samplers: sizes that scale with the slots."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from dask_abc.generation import BatchResult
from dask_abc.sample import SampleCollector
from dask_abc.sampler.controller import BatchController

SETTINGS = {"abc.dask.target-task-seconds": 0.3, "abc.dask.max-task-rate": 200,
            "abc.dask.min-task-seconds": 0.02, "abc.dask.speculative-sd": 2,
            "abc.dask.hint-uncertainty": 0.25, "abc.dask.initial-batch-size": 1}


def controller(seconds_per_evaluation: float) -> BatchController:
    c = BatchController("auto", prefix="dask")
    c.seconds, c.evaluated = 10 * seconds_per_evaluation, 10
    return c


def batch(start: int, count: int, accepted: int) -> BatchResult:
    idx = np.arange(start, start + accepted)
    z = np.zeros(accepted)
    return BatchResult(start, count, idx, z.astype(int), z[:, None], z, z + 1, z[:, None])


@pytest.mark.parametrize("slots, seconds, longest", [(2, 0.01, 30), (200, 0.1, 10),
                                                     (1000, 1.0, 5)])
def test_a_fresh_generation_gets_one_range_per_slot_within_the_task_rate(slots, seconds,
                                                                         longest):
    """What the hint says is almost surely needed goes out at once, in about one range
    per slot; no range is longer than max(0.3 s, slots / 200 per s) of work."""
    with dask.config.set(SETTINGS):
        c = controller(seconds)
        n, hint = 1000, 0.5  # mean 2000 evaluations, sd 25 % of it: needed = 1000
        ranges = c.ranges(SampleCollector(n), 0, 0, 2 * slots, hint, slots)
        sizes = [count for _, count in ranges]
        starts = [start for start, _ in ranges]
        assert starts == [0, *np.cumsum(sizes)[:-1]]  # contiguous from 0
        assert max(sizes) <= longest
        covered = ranges[-1][0] + ranges[-1][1]
        assert covered >= 1000  # everything almost surely needed is out
        if 1000 / slots <= longest:  # one wave: a range per slot, spread in length
            certain = [s for (a, s) in ranges if a < 1000]
            assert len(certain) <= slots + 1
            assert min(certain) >= max(certain) // 2 - 1


def test_ranges_beyond_the_certain_part_wait_for_the_window_and_stop_at_the_limit():
    with dask.config.set(SETTINGS):
        c = controller(0.1)
        collector = SampleCollector(100)
        collector.add(batch(0, 400, 50))  # a measured rate of 1/8: 400 more expected
        out = c.ranges(collector, 400, 200, 200, None, slots=100)
        # 200 ranges are out, as many as the window allows: only the certain part
        assert out and out[-1][0] + out[-1][1] < 400 + 400
        rest = c.ranges(collector, 400, 0, 10**6, None, slots=100)
        enough = rest[-1][0] + rest[-1][1]
        assert 400 + 400 < enough < 400 + 400 * 1.6  # mean + 2 sd, no further
        assert c.ranges(collector, enough, 5, 10**6, None, slots=100) == []  # enough out


def test_fixed_sizes_fill_the_window_and_unknown_speed_one_range_per_slot():
    """Before the first result, one short range per slot: on a thousand slots, a
    second wave of one-evaluation tasks would only load the scheduler."""
    with dask.config.set(SETTINGS):
        assert BatchController(7).ranges(SampleCollector(10), 0, 1, 3, None) == [(0, 7),
                                                                                 (7, 7)]
        unknown = BatchController("auto")
        assert unknown.ranges(SampleCollector(10), 0, 0, 4, None, slots=2) == [(0, 1), (1, 1)]
        assert unknown.ranges(SampleCollector(10), 2, 1, 4, None, slots=2) == [(2, 1)]
        assert len(unknown.ranges(SampleCollector(5000), 0, 0, 2000, None, slots=1000)) == 1000


def test_nothing_out_and_nothing_expected_still_hands_out_a_range():
    """An estimate that says the population is complete while it is not must not stall
    the sampler."""
    with dask.config.set(SETTINGS):
        c = controller(0.1)
        collector = SampleCollector(10)
        collector.add(batch(0, 1000, 9))  # 9 of 10 accepted: about 111 more expected
        assert c.ranges(collector, 5000, 0, 10, None, slots=4)  # far beyond: still one
