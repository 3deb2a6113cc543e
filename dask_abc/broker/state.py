"""The broker protocol's state, in memory: what a coordinator holds and does.

One master at a time publishes a generation (its token, its spec as bytes and
the population size) and queues index ranges; workers claim ranges, holding
each under a lease that their heartbeats renew, and push results. Ranges of a
worker whose heartbeats stop are queued again; a result for a range that
already returned, or for a generation that is over, is dropped. The Dask
Actor backend keeps one :class:`BrokerState`; the Redis backend stores the
same fields in Redis.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


class BrokerBusy(RuntimeError):
    """Another master holds the coordinator."""


@dataclass
class WorkerInfo:
    """What the coordinator knows of one worker."""

    info: dict
    seen: float  # monotonic time of the last heartbeat
    evaluations: int = 0
    leases: dict[int, int] = field(default_factory=dict)  # start -> count


class BrokerState:
    """A coordinator's state and operations; every method is atomic.

    Examples
    --------
    >>> state = BrokerState()
    >>> state.acquire("master-1", ttl=30)
    >>> state.start_generation("tok", t=0, n=10, spec=b"...")
    >>> state.add_ranges("tok", [(0, 5), (5, 5)])
    >>> state.register("w1", {})
    >>> state.claim("w1", "tok")
    (0, 5)
    >>> state.push("w1", "tok", 0, 5, 2, b"result")
    True
    >>> state.take_results("tok")
    [b'result']
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.owner: str | None = None
        self.owner_expires = 0.0
        self.token: str | None = None
        self.t: int | None = None
        self.n: int | None = None
        self.epsilon: float | None = None
        self.spec_data: bytes | None = None
        self.queue: deque[tuple[int, int]] = deque()
        self.returned: set[int] = set()  # starts of ranges whose result arrived
        self.requeued: set[int] = set()  # starts queued again after being claimed
        self.results: list[bytes] = []
        self.evaluations = 0
        self.acceptances = 0
        self.workers: dict[str, WorkerInfo] = {}
        self.stop_requested = False

    # -- master ----------------------------------------------------------------

    def acquire(self, owner: str, ttl: float) -> None:
        """Hold the coordinator for ``ttl`` seconds (renewed by calling again)."""
        now = self.clock()
        if self.owner not in (None, owner) and now < self.owner_expires:
            raise BrokerBusy(f"the coordinator is busy with another analysis ({self.owner})")
        if self.owner != owner:  # a new analysis: an old stop request is spent
            self.stop_requested = False
        self.owner, self.owner_expires = owner, now + ttl

    def release(self, owner: str) -> None:
        if self.owner == owner:
            self.owner = None
            self.finish_generation(self.token)

    def start_generation(self, token: str, t: int, n: int, spec: bytes,
                         epsilon: float | None = None) -> None:
        self.token, self.t, self.n, self.spec_data = token, t, n, spec
        self.epsilon = epsilon
        self.queue.clear()
        self.returned.clear()
        self.requeued.clear()
        self.results.clear()
        self.evaluations = self.acceptances = 0
        for worker in self.workers.values():
            worker.leases.clear()

    def add_ranges(self, token: str, ranges: list[tuple[int, int]]) -> None:
        if token == self.token:
            self.queue.extend((int(s), int(c)) for s, c in ranges)

    def take_results(self, token: str) -> list[bytes]:
        """The results pushed since the last call."""
        if token != self.token:
            return []
        results, self.results = self.results, []
        return results

    def requeue_lost(self, token: str, lease_seconds: float) -> list[tuple[int, int]]:
        """Queue again, first, the ranges of workers silent for ``lease_seconds``."""
        if token != self.token:
            return []
        now = self.clock()
        lost = []
        for name, worker in list(self.workers.items()):
            if now - worker.seen > lease_seconds:
                lost.extend(sorted(worker.leases.items()))
                del self.workers[name]
        self._queue_again(lost)
        return lost

    def _queue_again(self, ranges: list[tuple[int, int]]) -> None:
        """Put claimed ranges back at the front of the queue, in order."""
        self.queue.extendleft(reversed(ranges))
        self.requeued.update(start for start, _ in ranges)

    def finish_generation(self, token: str | None) -> None:
        """The generation is complete: workers abandon its ranges."""
        if token is not None and token == self.token:
            self.token = self.spec_data = None
            self.queue.clear()
            self.results.clear()
            for worker in self.workers.values():
                worker.leases.clear()

    def request_stop(self) -> None:
        """Workers exit at the end of the current generation."""
        self.stop_requested = True

    def reset_workers(self) -> int:
        """Forget every registered worker (their leases are queued again)."""
        n = len(self.workers)
        if self.token is not None:
            self.requeue_lost(self.token, -1.0)
        self.workers.clear()
        return n

    def status(self) -> dict:
        """Counters for monitoring (``dask-abc-manager info``)."""
        return {"workers": len(self.workers), "evaluations": self.evaluations,
                "acceptances": self.acceptances, "n": self.n, "t": self.t,
                "epsilon": self.epsilon,
                "running": self.token is not None, "owner": self.owner,
                "stop": self.stop_requested,
                "per_worker": {k: w.evaluations for k, w in self.workers.items()}}

    # -- workers ---------------------------------------------------------------

    def register(self, worker: str, info: dict) -> None:
        self.workers[worker] = WorkerInfo(info, self.clock())

    def unregister(self, worker: str) -> None:
        gone = self.workers.pop(worker, None)
        if gone is not None and gone.leases:  # a worker leaving with ranges: give them back
            self._queue_again(sorted(gone.leases.items()))

    def heartbeat(self, worker: str) -> dict:
        """Renew the worker's leases; tell it the current generation and the stop flag."""
        known = self.workers.get(worker)
        if known is None:  # forgotten (reset-workers, or presumed dead): registers again
            known = self.workers[worker] = WorkerInfo({}, self.clock())
        known.seen = self.clock()
        return {"token": self.token, "t": self.t, "stop": self.stop_requested}

    def spec(self, token: str) -> bytes | None:
        return self.spec_data if token == self.token else None

    def claim(self, worker: str, token: str) -> tuple[int, int] | None:
        """The next queued range, leased to ``worker``; None if there is none."""
        if token != self.token or not self.queue:
            return None
        start, count = self.queue.popleft()
        self.heartbeat(worker)
        self.workers[worker].leases[start] = count
        return start, count

    def push(self, worker: str, token: str, start: int, count: int, accepted: int,
             result: bytes) -> bool:
        """Deliver a range's result; False if it is late (dropped)."""
        known = self.workers.get(worker)
        if known is not None:
            known.leases.pop(start, None)
            known.evaluations += count
        if token != self.token or start in self.returned:
            return False
        self.returned.add(start)
        if start in self.requeued:  # queued again, presumed lost, but it came: unqueue it
            self.requeued.discard(start)
            if (start, count) in self.queue:
                self.queue.remove((start, count))
        self.results.append(result)
        self.evaluations += count
        self.acceptances += accepted
        return True

    def push_and_claim(self, worker: str, token: str, start: int, count: int, accepted: int,
                       result: bytes) -> tuple[int, int] | None:
        """:meth:`push`, then :meth:`claim`: a busy worker's one call per range."""
        self.push(worker, token, start, count, accepted, result)
        return self.claim(worker, token)

    def report_failure(self, worker: str, token: str, failure: bytes) -> None:
        """Deliver a worker's error to the master, among the results."""
        if token == self.token:
            self.results.append(failure)

    def give_back(self, worker: str, token: str, start: int, count: int) -> None:
        """A worker returns a claimed range unevaluated (it is stopping)."""
        known = self.workers.get(worker)
        if known is not None:
            known.leases.pop(start, None)
        if token == self.token and start not in self.returned:
            self._queue_again([(start, count)])
