"""Where the Dask sampler's ranges run: slots busy and throughput per worker and per host.

The scheduler plugin feeds :class:`ClusterLoad` from the transitions of range tasks,
each in O(1). :meth:`ClusterLoad.summary` is what the ABC page shows, and its size
does not grow with the cluster: totals, a histogram of the throughput per slot over
hosts (over workers when all run on one host), the slowest few by name, and the
slots busy over the last minutes.

Throughput is an exponentially weighted rate over the last ``window`` seconds:
evaluations finished divided by slot-seconds present, both decayed alike, so a
worker that joined late is not taken for a slow one, and one that stopped
delivering drops within a window.
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from collections import deque


class _Load:
    """The counters of one worker or one host."""

    __slots__ = ("name", "workers", "slots", "busy", "evaluations", "seconds", "recent",
                 "exposure", "updated")

    def __init__(self, name: str, now: float):
        self.name = name
        self.workers = self.slots = self.busy = self.evaluations = 0
        self.seconds = 0.0  # compute time of its finished ranges
        self.recent = 0.0  # evaluations, decayed
        self.exposure = 0.0  # slot-seconds present, decayed alike
        self.updated = now

    def advance(self, now: float, window: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            decay = math.exp(-elapsed / window)
            self.recent *= decay
            self.exposure = self.exposure * decay + self.slots * window * (1 - decay)
            self.updated = now

    def rate(self) -> float:
        """Evaluations per slot-second, recently."""
        return self.recent / self.exposure if self.exposure > 0 else 0.0


class _Worker(_Load):
    __slots__ = ("host", "running")

    def __init__(self, name: str, host: str, slots: int, now: float):
        super().__init__(name, now)
        self.host, self.workers, self.slots, self.running = host, 1, slots, 0


class ClusterLoad:
    """Slots busy and throughput of the workers and hosts that run range tasks.

    Parameters
    ----------
    window : float
        Seconds over which throughput is averaged (exponentially).
    slowest : int
        How many of the slowest hosts (or workers) the summary names.
    bins : int
        Bins of the throughput histogram.
    history : int
        Samples of the slots busy kept (one per :meth:`sample` call).
    clock : callable
        Monotonic seconds (for tests).

    Examples
    --------
    >>> load = ClusterLoad(clock=lambda: 10.0)
    >>> load.add_worker("tcp://10.0.0.1:4000", "10.0.0.1", slots=4)
    >>> load.range_started("abc-range-tok-0-50-0", "tcp://10.0.0.1:4000")
    >>> load.busy, load.slots
    (1, 4)
    >>> load.range_stopped("abc-range-tok-0-50-0")
    >>> load.range_finished("tcp://10.0.0.1:4000", count=50, seconds=2.0)
    >>> summary = load.summary()
    >>> summary["unit"], summary["evaluations"], summary["slowest"]["name"]
    ('worker', 50, ['10.0.0.1:4000'])
    """

    def __init__(self, window: float = 60.0, slowest: int = 10, bins: int = 20,
                 history: int = 300, clock=time.monotonic):
        self.window, self.slowest, self.bins = float(window), int(slowest), int(bins)
        self.clock = clock
        self.workers: dict[str, _Worker] = {}
        self.hosts: dict[str, _Load] = {}
        self.ranges: dict[str, str] = {}  # key of a range in processing -> its worker
        self.slots = self.busy = self.evaluations = 0
        self.history: deque[tuple[float, int, int]] = deque(maxlen=int(history))

    # -- updates, each O(1) ---------------------------------------------------------

    def add_worker(self, address: str, host: str, slots: int) -> None:
        if address in self.workers:
            return
        now = self.clock()
        unit = self.hosts.get(host)
        if unit is None:
            unit = self.hosts[host] = _Load(host, now)
        unit.advance(now, self.window)
        unit.workers += 1
        unit.slots += slots
        self.slots += slots
        self.workers[address] = _Worker(address, host, slots, now)

    def remove_worker(self, address: str) -> None:
        worker = self.workers.get(address)
        if worker is None:
            return
        self._set_running(worker, 0)
        del self.workers[address]
        unit = self.hosts[worker.host]
        unit.advance(self.clock(), self.window)
        unit.workers -= 1
        unit.slots -= worker.slots
        self.slots -= worker.slots
        if unit.workers == 0:
            del self.hosts[worker.host]

    def range_started(self, key: str, address: str) -> None:
        """A range was assigned to ``address`` (it entered processing there)."""
        self.range_stopped(key)
        worker = self.workers.get(address)
        if worker is not None:
            self.ranges[key] = address
            self._set_running(worker, worker.running + 1)

    def range_stopped(self, key: str) -> None:
        """A range left processing (finished, cancelled or lost with its worker)."""
        address = self.ranges.pop(key, None)
        worker = self.workers.get(address) if address is not None else None
        if worker is not None:
            self._set_running(worker, worker.running - 1)

    def range_finished(self, address: str | None, count: int, seconds: float) -> None:
        """``address`` returned a range of ``count`` evaluations that took ``seconds``."""
        self.evaluations += count
        worker = self.workers.get(address) if address is not None else None
        if worker is None:
            return
        now = self.clock()
        for unit in (worker, self.hosts[worker.host]):
            unit.advance(now, self.window)
            unit.recent += count
            unit.evaluations += count
            unit.seconds += seconds

    def reset(self) -> None:
        """A new run: evaluations and throughput start from zero (slots busy stay)."""
        now = self.clock()
        self.evaluations = 0
        for unit in (*self.workers.values(), *self.hosts.values()):
            unit.evaluations, unit.seconds, unit.recent, unit.exposure = 0, 0.0, 0.0, 0.0
            unit.updated = now
        self.history.clear()

    def sample(self, at: float | None = None) -> None:
        """Record the slots busy now (``at``: epoch seconds) for the history chart."""
        self.history.append((time.time() if at is None else at, self.busy, self.slots))

    def _set_running(self, worker: _Worker, running: int) -> None:
        # a slot is busy when a range is assigned to it; ranges queued on a worker
        # beyond its slots do not make it busier
        running = max(running, 0)
        change = min(running, worker.slots) - worker.busy
        worker.running, worker.busy = running, worker.busy + change
        self.hosts[worker.host].busy += change
        self.busy += change

    # -- the summary, O(hosts) --------------------------------------------------------

    def summary(self) -> dict:
        """Totals, the throughput histogram, the slowest and the busy-slots history: a
        size bounded by ``bins``, ``slowest`` and ``history``, whatever the cluster."""
        now = self.clock()
        by_host = len(self.hosts) > 1
        units = list((self.hosts if by_host else self.workers).values())
        for unit in units:
            unit.advance(now, self.window)
        rates = [unit.rate() for unit in units]
        median = statistics.median(rates) if rates else 0.0
        running = self.busy > 0  # a generation is running: idle ones are the news
        slowest = heapq.nsmallest(self.slowest, zip(rates, units),
                                  key=lambda ru: (running and ru[1].busy > 0, ru[0]))
        return {
            "unit": "host" if by_host else "worker",
            "workers": len(self.workers), "hosts": len(self.hosts), "slots": self.slots,
            "busy": self.busy, "idle": sum(unit.busy == 0 for unit in units),
            "evaluations": self.evaluations, "median_rate": median,
            "histogram": _histogram(rates, self.bins),
            "slowest": {
                "name": [_short(u.name) for _, u in slowest],
                "workers": [u.workers for _, u in slowest],
                "slots": [u.slots for _, u in slowest],
                "busy": [u.busy for _, u in slowest],
                "evaluations": [u.evaluations for _, u in slowest],
                "rate": [r for r, _ in slowest],
                "relative": [r / median if median > 0 else None for r, _ in slowest],
                "seconds_per_evaluation": [u.seconds / u.evaluations if u.evaluations
                                           else None for _, u in slowest]},
            "history": {"time": [1000 * t for t, _, _ in self.history],
                        "busy": [b for _, b, _ in self.history],
                        "slots": [s for _, _, s in self.history]},
        }


def _histogram(values: list[float], bins: int) -> dict[str, list]:
    """Counts of ``values`` in ``bins`` equal bins from 0 to their maximum."""
    top = max(values, default=0.0)
    if not values or top <= 0:
        return {"left": [0.0] if values else [], "right": [1.0] if values else [],
                "count": [len(values)] if values else []}
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v / width), bins - 1)] += 1
    return {"left": [i * width for i in range(bins)],
            "right": [(i + 1) * width for i in range(bins)], "count": counts}


def _short(address: str) -> str:
    return address.split("://", 1)[-1]
