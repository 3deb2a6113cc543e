"""Range sizing: how many indices each range a sampler hands out holds.

Every sampler hands out ``(start, count)`` ranges of a generation's indices
and holds one :class:`RangePolicy` (``sampler.policy``) that decides them:

- :class:`FixedSize` ``(n)``: ranges of ``n`` indices, as many as the
  sampler's window allows (an integer ``batch_size``).
- :class:`Dynamic`: DYN, one index per range (``batch_size="dynamic"``).
- :class:`Static`: STAT, the evaluations still expected split into shares
  over the slots (``batch_size="static"``).
- :class:`Chunks`: one range at a time in the calling process, as long as
  ``abc.single-core.chunk-seconds`` (``SingleCoreSampler``).
- :class:`Auto`: between the two, from the measured time per evaluation and
  the acceptance rate (``batch_size="auto"``; settings ``abc.<section>.*``).

:func:`policy_for` maps a sampler's ``batch_size`` argument to a policy. The
time per evaluation is one decaying estimate per policy (:class:`SpeedEstimate`),
fed by the sampler with every batch it receives (:meth:`RangePolicy.observe`);
the acceptance rate is the collector's
(:attr:`~dask_abc.sample.SampleCollector.acceptance_rate_estimate`).

Examples
--------
>>> from dask_abc.sample import SampleCollector
>>> policy_for(7).ranges(SampleCollector(10), handed_out=0, in_flight=0, window=2)
[(0, 7), (7, 7)]
>>> policy_for("static").ranges(SampleCollector(10), handed_out=0, in_flight=0, window=4,
...                             slots=4)
[(0, 3), (3, 2), (5, 2), (7, 1)]
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .. import config
from ..generation import BatchResult
from ..sample import SampleCollector

#: What ``batch_size`` accepts besides a positive integer or a :class:`RangePolicy`.
NAMED = ("auto", "static", "dynamic")


class SpeedEstimate:
    """The time per evaluation, from a decaying sum over the batches seen: recent ones
    (the current generation) weigh most, and it carries over to the next generation
    (a model's speed changes little between them).

    Examples
    --------
    >>> speed = SpeedEstimate()
    >>> speed.seconds_per_evaluation is None
    True
    """

    def __init__(self):
        self.seconds = 0.0
        self.evaluated = 0.0

    def observe(self, batch: BatchResult) -> None:
        """Learn from one returned batch."""
        self.seconds = 0.9 * self.seconds + batch.seconds
        self.evaluated = 0.9 * self.evaluated + batch.n_evaluated

    @property
    def seconds_per_evaluation(self) -> float | None:
        """Seconds per evaluation, None before the first batch."""
        return self.seconds / self.evaluated if self.evaluated else None


class RangePolicy:
    """Base of the range-sizing policies.

    A sampler calls :meth:`ranges` whenever it may hand out more work, and
    :meth:`observe` with every batch it receives. ``window`` is the number of
    ranges the sampler wants out (queued or running) at most, ``slots`` the
    number of simulations that run at once; policies may queue beyond the
    window work that is almost surely needed (:class:`Auto`).
    """

    def __init__(self):
        self.speed = SpeedEstimate()

    def observe(self, batch: BatchResult) -> None:
        """Learn the time per evaluation from one returned batch."""
        self.speed.observe(batch)

    def ranges(self, collector: SampleCollector, handed_out: int, in_flight: int,
               window: float, slots: int = 1) -> list[tuple[int, int]]:
        """New ``(start, count)`` ranges from ``handed_out`` on (never beyond
        ``collector.max_eval``, never over evaluated ones), with ``in_flight`` ranges
        out on ``slots`` slots."""
        raise NotImplementedError

    @staticmethod
    def _cut(collector: SampleCollector, handed_out: int, size: Callable[[int], int],
             more: Callable[[int, int], bool]) -> list[tuple[int, int]]:
        """Ranges of ``size(start)`` from ``handed_out`` while ``more(ranges so far,
        handed out)``."""
        new: list[tuple[int, int]] = []
        while handed_out < collector.max_eval and more(len(new), handed_out):
            start, count = collector.fit_range(handed_out, size(handed_out))
            if count:
                new.append((start, count))
            handed_out = start + count
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FixedSize(RangePolicy):
    """Ranges of ``n`` indices, until ``window`` ranges are out.

    Examples
    --------
    >>> from dask_abc.sample import SampleCollector
    >>> FixedSize(4).ranges(SampleCollector(10), 0, in_flight=1, window=3)
    [(0, 4), (4, 4)]
    """

    def __init__(self, n: int):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"a range size must be a positive integer, got {n!r}")
        self.n = n

    def ranges(self, collector, handed_out, in_flight, window, slots=1):
        return self._cut(collector, handed_out, lambda _: self.n,
                         lambda k, _: in_flight + k < window)

    def __repr__(self) -> str:
        return f"FixedSize({self.n})"


class Dynamic(FixedSize):
    """DYN: one index per range, handed out as slots free up (pyABC's eval-parallel).

    Examples
    --------
    Two free slots get one index each, from index 5 on:

    >>> from dask_abc.sample import SampleCollector
    >>> policy, collector = Dynamic(), SampleCollector(n=10)
    >>> policy.ranges(collector, handed_out=5, in_flight=0, window=2)
    [(5, 1), (6, 1)]
    """

    def __init__(self):
        super().__init__(1)

    __repr__ = RangePolicy.__repr__


class Static(RangePolicy):
    """STAT: every free slot gets a share of the evaluations still expected
    (:attr:`~dask_abc.sample.SampleCollector.evaluations_still_needed`) beyond those
    handed out; one index when none are expected (the estimate was too high).

    At most one range per slot is out, whatever the window. Few messages, suited
    to fast models; with slow ones the last ranges may run past the population's
    end.

    Parameters
    ----------
    guided : bool
        Each range is an even share over the slots of what is left beyond it
        (guided self-scheduling: ranges shrink, so the slots finish together and
        the last ranges are short); else the work still expected is split evenly
        over the slots at once (a synchronous round, as in
        :class:`~dask_abc.sampler.MappingSampler`).

    Examples
    --------
    >>> from dask_abc.sample import SampleCollector
    >>> Static().ranges(SampleCollector(10), 0, in_flight=0, window=4, slots=2)
    [(0, 5), (5, 3)]
    >>> Static(guided=False).ranges(SampleCollector(10), 0, in_flight=0, window=4, slots=2)
    [(0, 5), (5, 5)]
    """

    def __init__(self, guided: bool = True):
        super().__init__()
        self.guided = guided

    def ranges(self, collector, handed_out, in_flight, window, slots=1):
        slots = max(slots, 1)
        end = collector.prefix + collector.evaluations_still_needed

        def share(at: int) -> int:
            return math.ceil((end - (at if self.guided else handed_out)) / slots)

        return self._cut(collector, handed_out, lambda at: max(1, min(share(at), end - at)),
                         lambda k, _: in_flight + k < min(window, slots))

    def __repr__(self) -> str:
        return "Static()" if self.guided else "Static(guided=False)"


class Chunks(RangePolicy):
    """One range at a time in the calling process (:class:`~dask_abc.sampler.SingleCoreSampler`):
    first one index, to time the model; then as many as last
    ``abc.single-core.chunk-seconds``, at most ``abc.single-core.chunk`` (a chunk is
    the unit of a checkpoint: a killed run repeats at most one). Vectorised models
    (``vectorized = True``, set by the sampler per generation) get the evaluations
    expected to complete the population, between ``chunk`` and
    ``abc.single-core.vectorized-chunk``.

    Examples
    --------
    >>> from dask_abc.sample import SampleCollector
    >>> Chunks().ranges(SampleCollector(10), handed_out=0, in_flight=0, window=1)
    [(0, 1)]
    """

    def __init__(self):
        super().__init__()
        self.vectorized = False

    def ranges(self, collector, handed_out, in_flight=0, window=1, slots=1):
        return self._cut(collector, handed_out, lambda _: self.size(collector),
                         lambda k, _: in_flight + k < window)

    def size(self, collector: SampleCollector) -> int:
        """The next chunk's number of indices."""
        chunk = int(config.get("single-core.chunk"))
        if self.vectorized:
            return min(max(collector.evaluations_still_needed, chunk),
                       int(config.get("single-core.vectorized-chunk")))
        per_eval = self.speed.seconds_per_evaluation
        if per_eval is None:
            return 1
        seconds = float(config.get("single-core.chunk-seconds"))
        return max(1, min(chunk, int(seconds / max(per_eval, 1e-9))))


class Auto(RangePolicy):
    """Hand out index ranges so that every slot stays busy, tasks are few, and the
    excess is small (the default of the task-based samplers).

    Once the time per evaluation is known, the evaluations beyond the
    contiguous prefix that complete the population are estimated as a mean and
    a standard deviation (:meth:`outlook`: negative binomial, plus the
    uncertainty of the rate). With ``k = speculative-sd``:

    - up to ``mean - k sd`` every evaluation is almost surely needed: this work
      is queued at once, so that a slot that finishes takes its next range from
      the queue without a round trip to the master. At a generation's start it
      goes in one range per slot (few tasks); the sizes spread from the longest
      to half of it, so that the ranges do not all end at once. What later
      results add comes in ranges of an even share over the slots of what is
      left (guided self-scheduling): late ranges are short, and the slots finish
      together. A correction smaller than a range per slot waits until fewer
      ranges than slots are out.
    - beyond, where the population may end, up to ``mean + k sd``, ranges of
      the shortest useful size are handed out just in time, while fewer than
      ``window`` are out; further, free slots wait for results instead of
      evaluating what is almost surely excess.

    A range lasts at most :meth:`task_seconds`: tasks get longer as the cluster
    grows, so the engine (the Dask scheduler, a coordinator) handles at most
    ``max-task-rate`` tasks per second in the bulk of a generation, whether 2 or
    10,000 slots work; and it holds at most ``max-batch-size`` indices. The
    shortest useful range lasts ``min-task-seconds`` (below which a round trip
    costs more than the excess it saves), and on a big cluster a fifth of the
    longest. Until the time per evaluation is known, one range of
    ``initial-batch-size`` per slot is out.

    Parameters
    ----------
    section : str
        The ``dask.config`` section of the settings (``abc.<section>.*``):
        ``"dask"``, ``"broker"`` or ``"multicore"``.

    Examples
    --------
    >>> from dask_abc.sample import SampleCollector
    >>> Auto("dask").ranges(SampleCollector(10), 0, in_flight=0, window=4, slots=2)
    [(0, 1), (1, 1)]
    """

    def __init__(self, section: str = "dask"):
        super().__init__()
        self.section = section

    def _config(self, key: str) -> float:
        return float(config.get(f"{self.section}.{key}"))

    @property
    def knows_speed(self) -> bool:
        """Whether ranges are sized by the work still wanted (once the time per
        evaluation is known), rather than one per slot."""
        return self.speed.seconds_per_evaluation is not None

    def task_seconds(self, slots: int = 1) -> float:
        """The longest range, in seconds of work, on ``slots`` slots.

        Examples
        --------
        >>> import dask
        >>> with dask.config.set({"abc.dask.target-task-seconds": 0.3,
        ...                       "abc.dask.max-task-rate": 200}):
        ...     Auto().task_seconds(2), Auto().task_seconds(1000)
        (0.3, 5.0)
        """
        return max(self._config("target-task-seconds"),
                   max(slots, 1) / self._config("max-task-rate"))

    def _bounds(self, slots: int) -> tuple[int, int]:
        """The longest range (:meth:`task_seconds`, at most ``max-batch-size``) and the
        shortest, in evaluations.

        The shortest lasts ``min-task-seconds`` (below which a round trip costs more
        than the excess it saves) and, on a big cluster, ``slots / (5 max-task-rate)``
        seconds: near a generation's end tasks may be five times more frequent than in
        its bulk, not more.
        """
        per_eval = max(self.speed.seconds_per_evaluation, 1e-9)
        shortest = max(self._config("min-task-seconds"),
                       max(slots, 1) / (5 * self._config("max-task-rate")))
        longest = min(int(self.task_seconds(slots) / per_eval + 1e-9),
                      int(self._config("max-batch-size")))
        return max(1, longest), min(int(shortest / per_eval + 1e-9), longest)

    def outlook(self, collector: SampleCollector) -> tuple[float, float]:
        """``(mean, sd)`` of the evaluations beyond the prefix that complete the population.

        The evaluations that yield the ``r`` acceptances still needed at rate ``p`` are
        negative binomial; the rate is estimated from every range returned, else it is
        the collector's hint (the previous generation's rate, usually a little high; its
        relative standard deviation is taken to be ``hint-uncertainty``), else 1.
        """
        remaining = collector.n - collector.n_accepted
        rate = collector.acceptance_rate_estimate
        if collector.rate_is_measured:  # the relative error of the estimated rate
            relative = math.sqrt((1 - rate) / max(collector.accepted_seen, 1))
        elif collector.acceptance_rate_hint:
            relative = self._config("hint-uncertainty")
        else:
            relative = 0.0
        mean = remaining / rate
        sd = math.hypot(math.sqrt(remaining * (1 - rate)) / rate, mean * relative)
        return mean, sd

    def ranges(self, collector, handed_out, in_flight, window, slots=1):
        slots = max(slots, 1)
        if not self.knows_speed:  # one short range per slot; the first result tells the speed
            size = int(self._config("initial-batch-size"))
            return self._cut(collector, handed_out, lambda _: size,
                             lambda k, _: in_flight + k < min(window, slots))
        mean, sd = self.outlook(collector)
        k = self._config("speculative-sd")
        # up to index `needed` the population almost surely needs every evaluation; by
        # index `enough` it is almost surely complete
        needed = collector.prefix + mean - k * sd
        enough = collector.prefix + mean + k * sd
        longest, floor = self._bounds(slots)
        # at a fresh start (nothing out) what is almost surely needed goes in one range
        # per slot, for few tasks, spread from the longest to half of it so that they do
        # not all end at once (a thousand results and requests together)
        fresh = handed_out if not in_flight else None
        even = math.ceil((needed - handed_out) / slots) if fresh is not None else 0

        def size(at: int) -> int:
            if at >= needed:  # where the population may end: the shortest useful range
                return max(1, floor)
            cap = longest
            if fresh is not None and at - fresh < slots * longest:
                cap = longest - (longest * (at - fresh)) // (2 * slots * longest)
            # an even share over the slots of what is left before `needed`: ranges
            # shrink along the queue, late ones are short, the slots finish together
            share = even if fresh is not None else math.ceil((needed - at) / slots)
            return max(1, floor, min(share, cap))

        def more(n: int, at: int) -> bool:
            out = in_flight + n
            # what is almost surely needed is queued at once (a correction smaller than
            # a range per slot waits until slots free up); beyond, just in time, while
            # fewer than `window` ranges are out (the estimate improves meanwhile)
            certain = at < needed and (needed - at >= slots or out < slots)
            return certain or (at < enough and out < window) or not out

        return self._cut(collector, handed_out, size, more)

    def __repr__(self) -> str:
        return f"Auto({self.section!r})"


def policy_for(batch_size: int | str | RangePolicy, section: str = "dask") -> RangePolicy:
    """The policy of a sampler's ``batch_size`` argument.

    Parameters
    ----------
    batch_size : int, "auto", "static", "dynamic" or RangePolicy
        A range size, a named policy, or a policy (returned as it is).
    section : str
        The settings of :class:`Auto` (``abc.<section>.*``).

    Examples
    --------
    >>> policy_for(5), policy_for("auto", "broker"), policy_for("static")
    (FixedSize(5), Auto('broker'), Static())
    """
    if isinstance(batch_size, RangePolicy):
        return batch_size
    if batch_size == "auto":
        return Auto(section)
    if batch_size == "static":
        return Static()
    if batch_size == "dynamic":
        return Dynamic()
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1:
        return FixedSize(batch_size)
    raise ValueError(f"batch_size must be a positive integer, {', '.join(map(repr, NAMED))} "
                     f"or a RangePolicy, got {batch_size!r}")
