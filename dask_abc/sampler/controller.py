"""The range-size controller between STAT and DYN for task-based samplers."""

from __future__ import annotations

import math

from .. import config
from ..generation import BatchResult
from ..sample import SampleCollector


class BatchController:
    """Hand out index ranges so that every slot stays busy, tasks are few, and the
    excess is small.

    It learns the time per evaluation from returned batches (kept across
    generations, since a model's speed changes little between them) and the
    acceptance rate from the running generation (every range returned counts;
    before the first results, the previous generation's rate is the hint).

    With ``batch_size="auto"``, once the time per evaluation is known, the
    evaluations beyond the contiguous prefix that complete the population are
    estimated as a mean and a standard deviation (:meth:`outlook`: negative
    binomial, plus the uncertainty of the rate). With ``k = speculative-sd``:

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
    10,000 slots work. The shortest useful range lasts ``min-task-seconds``
    (below which a round trip costs more than the excess it saves), and on a big
    cluster a fifth of the longest. Until the time per evaluation is known, one
    range of ``initial-batch-size`` per slot is out; with a fixed integer
    ``batch_size``, ranges of that size are handed out until ``window`` are out.

    Parameters
    ----------
    batch_size : int or "auto"
        Fixed range size, or "auto".
    prefix : str
        The ``dask.config`` section of the parameters (``abc.<prefix>.*``).

    Examples
    --------
    >>> BatchController(7).ranges(SampleCollector(10), handed_out=0, in_flight=0, window=2,
    ...                           hint=None)
    [(0, 7), (7, 7)]
    """

    def __init__(self, batch_size="auto", prefix: str = "dask"):
        if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        self.batch_size = batch_size
        self.prefix = prefix
        self.seconds = 0.0
        self.evaluated = 0

    def _config(self, key: str) -> float:
        return float(config.get(f"{self.prefix}.{key}"))

    def observe(self, batch: BatchResult) -> None:
        """Learn from one returned batch."""
        # a decaying sum: recent batches (the current generation) weigh most
        self.seconds = 0.9 * self.seconds + batch.seconds
        self.evaluated = 0.9 * self.evaluated + batch.n_evaluated

    @property
    def seconds_per_evaluation(self) -> float | None:
        return self.seconds / self.evaluated if self.evaluated else None

    @property
    def knows_speed(self) -> bool:
        """Whether ranges are sized by the work still wanted ("auto" once the time per
        evaluation is known), rather than kept ``window`` deep."""
        return self.batch_size == "auto" and self.seconds_per_evaluation is not None

    def task_seconds(self, slots: int = 1) -> float:
        """The longest range, in seconds of work, on ``slots`` slots.

        Examples
        --------
        >>> import dask
        >>> with dask.config.set({"abc.dask.target-task-seconds": 0.3,
        ...                       "abc.dask.max-task-rate": 200}):
        ...     BatchController().task_seconds(2), BatchController().task_seconds(1000)
        (0.3, 5.0)
        """
        return max(self._config("target-task-seconds"),
                   max(slots, 1) / self._config("max-task-rate"))

    def _bounds(self, slots: int) -> tuple[int, int]:
        """The longest range (:meth:`task_seconds`) and the shortest, in evaluations.

        The shortest lasts ``min-task-seconds`` (below which a round trip costs more
        than the excess it saves) and, on a big cluster, ``slots / (5 max-task-rate)``
        seconds: near a generation's end tasks may be five times more frequent than in
        its bulk, not more.
        """
        per_eval = max(self.seconds_per_evaluation, 1e-9)
        shortest = max(self._config("min-task-seconds"),
                       max(slots, 1) / (5 * self._config("max-task-rate")))
        return (max(1, int(self.task_seconds(slots) / per_eval + 1e-9)),
                int(shortest / per_eval + 1e-9))

    def outlook(self, collector: SampleCollector, hint) -> tuple[float, float]:
        """``(mean, sd)`` of the evaluations beyond the prefix that complete the population.

        The evaluations that yield the ``r`` acceptances still needed at rate ``p`` are
        negative binomial; the rate is estimated from every range returned, else it is
        the hint (the previous generation's rate, usually a little high; its relative
        standard deviation is taken to be ``hint-uncertainty``), else 1.
        """
        remaining = collector.n - collector.n_accepted
        seen, accepted = collector.evaluated_seen, collector.accepted_seen
        if seen >= 50 or accepted:
            rate = max(accepted, 1) / seen
            relative = math.sqrt((1 - rate) / max(accepted, 1))  # of the estimated rate
        elif hint:
            rate = hint
            relative = self._config("hint-uncertainty")
        else:
            rate, relative = 1.0, 0.0
        mean = remaining / rate
        sd = math.hypot(math.sqrt(remaining * (1 - rate)) / rate, mean * relative)
        return mean, sd

    def ranges(self, collector: SampleCollector, handed_out: int, in_flight: int, window: float,
               hint, slots: int = 1) -> list[tuple[int, int]]:
        """New ``(start, count)`` ranges from ``handed_out`` on (never beyond
        ``collector.max_eval``, never over evaluated ones), with ``in_flight`` ranges out
        on ``slots`` slots: the work almost surely needed at once, the rest while fewer
        than ``window`` ranges are out."""
        slots = max(slots, 1)
        if self.batch_size != "auto":
            return self._cut(collector, handed_out, lambda _: self.batch_size,
                             lambda n, _: in_flight + n < window)
        if not self.knows_speed:  # one short range per slot; the first result tells the speed
            size = int(self._config("initial-batch-size"))
            return self._cut(collector, handed_out, lambda _: size,
                             lambda n, _: in_flight + n < min(window, slots))
        mean, sd = self.outlook(collector, hint)
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

    @staticmethod
    def _cut(collector: SampleCollector, handed_out: int, size, more) -> list[tuple[int, int]]:
        """Ranges of ``size(start)`` from ``handed_out`` while ``more(ranges so far,
        handed out)``."""
        new: list[tuple[int, int]] = []
        while handed_out < collector.max_eval and more(len(new), handed_out):
            start, count = collector.fit_range(handed_out, size(handed_out))
            if count:
                new.append((start, count))
            handed_out = start + count
        return new
