"""Range-sizing policies: Auto (Dask, brokers, multicore) sizes that scale with the slots,
and the fixed, STAT and DYN sizes."""

from __future__ import annotations

import dataclasses

import dask
import numpy as np
import pytest

from dask_abc.generation import BatchResult
from dask_abc.sample import SampleCollector
from dask_abc.sampler.policy import Auto, Dynamic, FixedSize, Static, policy_for

SETTINGS = {"abc.dask.target-task-seconds": 0.3, "abc.dask.max-task-rate": 200,
            "abc.dask.min-task-seconds": 0.02, "abc.dask.speculative-sd": 2,
            "abc.dask.hint-uncertainty": 0.25, "abc.dask.initial-batch-size": 1}


def controller(seconds_per_evaluation: float) -> Auto:
    c = Auto("dask")
    c.speed.seconds, c.speed.evaluated = 10 * seconds_per_evaluation, 10
    return c


def batch(start: int, count: int, accepted: int) -> BatchResult:
    idx = np.arange(start, start + accepted)
    z = np.zeros(accepted)
    return BatchResult(start=start, n_evaluated=count, index=idx, model=z.astype(int),
                       theta=z[:, None], distance=z, weight=z + 1, sum_stats=z[:, None])


@pytest.mark.parametrize("slots, seconds, longest", [(2, 0.01, 30), (200, 0.1, 10),
                                                     (1000, 1.0, 5)])
def test_a_fresh_generation_gets_one_range_per_slot_within_the_task_rate(slots, seconds,
                                                                         longest):
    """What the hint says is almost surely needed goes out at once, in about one range
    per slot; no range is longer than max(0.3 s, slots / 200 per s) of work."""
    with dask.config.set(SETTINGS):
        c = controller(seconds)
        n, hint = 1000, 0.5  # mean 2000 evaluations, sd 25 % of it: needed = 1000
        ranges = c.ranges(SampleCollector(n, acceptance_rate_hint=hint), 0, 0, 2 * slots,
                          slots)
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
        out = c.ranges(collector, 400, 200, 200, slots=100)
        # 200 ranges are out, as many as the window allows: only the certain part
        assert out and out[-1][0] + out[-1][1] < 400 + 400
        rest = c.ranges(collector, 400, 0, 10**6, slots=100)
        enough = rest[-1][0] + rest[-1][1]
        assert 400 + 400 < enough < 400 + 400 * 1.6  # mean + 2 sd, no further
        assert c.ranges(collector, enough, 5, 10**6, slots=100) == []  # enough out


def test_fixed_sizes_fill_the_window_and_unknown_speed_one_range_per_slot():
    """Before the first result, one short range per slot: on a thousand slots, a
    second wave of one-evaluation tasks would only load the scheduler."""
    with dask.config.set(SETTINGS):
        assert FixedSize(7).ranges(SampleCollector(10), 0, 1, 3) == [(0, 7), (7, 7)]
        unknown = Auto()
        assert unknown.ranges(SampleCollector(10), 0, 0, 4, slots=2) == [(0, 1), (1, 1)]
        assert unknown.ranges(SampleCollector(10), 2, 1, 4, slots=2) == [(2, 1)]
        assert len(unknown.ranges(SampleCollector(5000), 0, 0, 2000, slots=1000)) == 1000


def test_nothing_out_and_nothing_expected_still_hands_out_a_range():
    """An estimate that says the population is complete while it is not must not stall
    the sampler."""
    with dask.config.set(SETTINGS):
        c = controller(0.1)
        collector = SampleCollector(10)
        collector.add(batch(0, 1000, 9))  # 9 of 10 accepted: about 111 more expected
        assert c.ranges(collector, 5000, 0, 10, slots=4)  # far beyond: still one


def test_policy_for_maps_every_batch_size_and_rejects_the_rest():
    assert isinstance(policy_for(3), FixedSize) and policy_for(3).n == 3
    assert isinstance(policy_for("dynamic"), Dynamic) and policy_for("dynamic").n == 1
    assert isinstance(policy_for("static"), Static)
    auto = policy_for("auto", section="broker")
    assert isinstance(auto, Auto) and auto.section == "broker"
    assert policy_for(auto) is auto
    for bad in (0, -1, 2.5, True, "fast", None):
        with pytest.raises(ValueError, match="batch_size must be"):
            policy_for(bad)


def test_fixed_and_dynamic_sizes_fill_the_window_and_skip_restored_ranges():
    assert Dynamic().ranges(SampleCollector(10), 3, 0, 3) == [(3, 1), (4, 1), (5, 1)]
    assert FixedSize(4).ranges(SampleCollector(10), 0, 3, 3) == []  # the window is full
    restored = SampleCollector(10, restored=[batch(4, 4, 1)])
    assert FixedSize(4).ranges(restored, 0, 0, 3) == [(0, 4), (8, 4), (12, 4)]
    assert FixedSize(4).ranges(SampleCollector(10, max_eval=6), 0, 0, 3) == [(0, 4), (4, 2)]


def test_static_gives_each_free_slot_a_share_of_the_expected_work():
    """STAT: each free slot a share over the slots of the evaluations expected (n / rate)
    beyond those handed out (guided), or the expected work split evenly at once (a
    round); at most one range per slot out, and one index per free slot once nothing
    more is expected."""
    collector = SampleCollector(100, acceptance_rate_hint=0.25)  # 400 expected
    assert Static().ranges(collector, 0, 0, 10, slots=4) == [(0, 100), (100, 75),
                                                           (175, 57), (232, 42)]
    assert Static(guided=False).ranges(collector, 0, 0, 10, slots=4) == [
        (0, 100), (100, 100), (200, 100), (300, 100)]
    assert Static(guided=False).ranges(collector, 0, 0, 10, slots=3) == [
        (0, 134), (134, 134), (268, 132)]
    assert Static().ranges(collector, 100, 3, 10, slots=4) == [(100, 75)]  # one slot free
    assert Static().ranges(collector, 0, 4, 10, slots=4) == []  # every slot busy
    assert Static().ranges(collector, 400, 3, 10, slots=4) == [(400, 1)]  # beyond: 1
    collector.add(batch(0, 100, 10))  # a measured rate of 1/10: 900 more expected
    assert Static().ranges(collector, 400, 2, 10, slots=2) == []
    assert Static().ranges(collector, 400, 1, 10, slots=2) == [(400, 300)]


def test_auto_learns_the_speed_with_decay_and_caps_ranges():
    """The time per evaluation is one decaying estimate: the latest batches weigh most.
    A range holds at most max-batch-size indices."""
    c = Auto("dask")
    c.observe(dataclasses.replace(batch(0, 10, 0), seconds=10.0))
    assert c.speed.seconds_per_evaluation == pytest.approx(1.0)
    for k in range(60):
        c.observe(dataclasses.replace(batch(10 + k, 10, 0), seconds=0.1))
    assert c.speed.seconds_per_evaluation == pytest.approx(0.01, rel=0.05)
    with dask.config.set({**SETTINGS, "abc.dask.max-batch-size": 5}):
        ranges = c.ranges(SampleCollector(1000, acceptance_rate_hint=0.5), 0, 0, 4, slots=2)
        assert max(count for _, count in ranges) == 5


@pytest.mark.parametrize("section", ["dask", "broker", "multicore"])
def test_auto_reads_its_own_section(section):
    with dask.config.set({f"abc.{section}.target-task-seconds": 0.7,
                          f"abc.{section}.max-task-rate": 100}):
        assert Auto(section).task_seconds(2) == 0.7
        assert Auto(section).task_seconds(700) == 7.0
