"""The batch-size controller between STAT and DYN for task-based samplers."""

from __future__ import annotations

import math

from .. import config
from ..generation import BatchResult
from ..sample import SampleCollector
from .base import evaluations_still_needed


class BatchController:
    """Size ranges so that tasks last about ``target-task-seconds`` and workers stay busy.

    It learns the time per evaluation from returned batches (kept across
    generations, since a model's speed changes little between them) and the
    acceptance rate from the running generation. A range is at most an even
    share of the evaluations still expected beyond those already handed out,
    split over the tasks in flight, so batches shrink as the generation nears
    its n-th acceptance and the excess stays small (guided self-scheduling);
    but no task is shorter than ``min-task-seconds``, below which Dask's round
    trip costs more than the excess it saves. With a fixed integer
    ``batch_size`` every range has that size.

    Tasks get longer as the cluster grows: with ``slots`` busy slots, a task
    lasts at least ``slots / max-task-rate`` seconds, so that the engine (the
    Dask scheduler, a coordinator) handles at most ``max-task-rate`` tasks per
    second in the bulk of a generation, whether 2 or 10,000 slots work.

    Parameters
    ----------
    batch_size : int or "auto"
        Fixed range size, or "auto".
    prefix : str
        The ``dask.config`` section of the parameters (``abc.<prefix>.*``).

    Examples
    --------
    >>> BatchController(7).size(SampleCollector(10), handed_out=0, tasks=4, hint=None)
    7
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

    def task_seconds(self, slots: int = 1) -> float:
        """The work per task in the bulk of a generation on ``slots`` slots.

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

    def size(self, collector: SampleCollector, handed_out: int, tasks: int, hint,
             slots: int = 1) -> int:
        """The next range size, with ``tasks`` ranges to be in flight at once on
        ``slots`` slots."""
        if self.batch_size != "auto":
            return self.batch_size
        per_eval = self.seconds_per_evaluation
        if per_eval is None:
            return int(self._config("initial-batch-size"))
        per_eval = max(per_eval, 1e-9)
        target = int(self.task_seconds(slots) / per_eval)
        # below this a task costs more in round trips than its excess would
        floor = int(self._config("min-task-seconds") / per_eval)
        expected = evaluations_still_needed(collector, hint)
        unclaimed = max(expected - (handed_out - collector.prefix), 0)
        share = math.ceil(unclaimed / max(tasks, 1))
        return max(1, floor, min(target, share, int(self._config("max-batch-size"))))

    def queued_tasks(self, collector: SampleCollector, hint, seconds: float) -> int:
        """Target-sized ranges that hold up to ``seconds`` of the generation's expected
        remaining work (0 until the time per evaluation is known).

        Examples
        --------
        >>> controller = BatchController(prefix="dask")
        >>> controller.queued_tasks(SampleCollector(10), hint=0.5, seconds=10.0)
        0
        """
        per_eval = self.seconds_per_evaluation
        if per_eval is None or seconds <= 0:
            return 0
        remaining = evaluations_still_needed(collector, hint) * max(per_eval, 1e-9)
        task = max(self._config("target-task-seconds"), per_eval)
        return math.ceil(min(remaining, seconds) / task)

    def ranges(self, collector: SampleCollector, handed_out: int, in_flight: int, window: int,
               hint, slots: int = 1) -> list[tuple[int, int]]:
        """New ``(start, count)`` ranges from ``handed_out`` on, until ``window`` ranges
        are in flight (never beyond ``collector.max_eval``, never over evaluated ones), for
        ``slots`` slots."""
        new: list[tuple[int, int]] = []
        while in_flight + len(new) < window and handed_out < collector.max_eval:
            size = self.size(collector, handed_out, window, hint, slots)
            start, count = collector.fit_range(handed_out, size)
            if count:
                new.append((start, count))
            handed_out = start + count
        return new
