"""The broker protocol's state, in memory: what a coordinator holds and does.

One master at a time publishes a generation (its token, its spec as bytes and
the population size) and queues index ranges; workers claim ranges, holding
each under a lease that their heartbeats renew, and push results. Ranges of a
worker whose heartbeats stop are queued again; a result for a range that
already returned, or for a generation that is over, is dropped. The Dask
Actor backend keeps one :class:`BrokerState`; the Redis backend stores the
same fields in Redis.

A *worker* is one ``dask-abc-worker`` process: it registers once with its
number of *slots* (evaluation threads, ``info["threads"]``), heartbeats once
and holds the leases of all its threads. Two version counters tell waiting
callers what changed: :attr:`BrokerState.generation_version` (a generation
started or ended, a stop was requested or withdrawn) and
:attr:`BrokerState.queue_version` (ranges were queued, or the generation
changed); a backend wakes its blocked ``watch`` and ``claim_many`` calls when
they move.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .errors import BrokerBusy


@dataclass
class WorkerInfo:
    """What the coordinator knows of one worker process."""

    info: dict
    seen: float  # monotonic time of the last heartbeat
    evaluations: int = 0
    leases: dict[int, int] = field(default_factory=dict)  # start -> count
    registered: bool = True  # False: known only from a heartbeat or claim (info lost)
    since: float = 0.0  # when it registered (monotonic), for its age in status()

    @property
    def slots(self) -> int:
        """Simulations the worker runs at once (its threads)."""
        return max(int(self.info.get("threads", 1)), 1)


class BrokerState:
    """A coordinator's state and operations; every method is atomic.

    Examples
    --------
    >>> state = BrokerState()
    >>> state.acquire("master-1", ttl=30)
    >>> state.start_generation("tok", t=0, n=10, spec=b"...")
    >>> state.add_ranges("tok", [(0, 5), (5, 5)])
    >>> state.register("w1", {"threads": 4})
    >>> state.claim("w1", "tok")
    (0, 5)
    >>> state.push("w1", "tok", 0, 5, 2, b"result")
    True
    >>> state.take_results("tok")
    [b'result']
    >>> state.status(per_worker=False)["slots"]
    4
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
        self.failures = 0  # evaluations whose simulation raised (model_errors="reject")
        self.workers: dict[str, WorkerInfo] = {}
        self.stop_requested = False
        self.generation_version = 0  # moves when the generation or the stop flag changes
        self.queue_version = 0  # moves when ranges are queued or the generation changes

    def _generation_changed(self) -> None:
        self.generation_version += 1
        self.queue_version += 1  # workers waiting for ranges learn that the generation ended

    # -- master ----------------------------------------------------------------

    def acquire(self, owner: str, ttl: float) -> None:
        """Hold the coordinator for ``ttl`` seconds (renewed by calling again)."""
        now = self.clock()
        if self.owner not in (None, owner) and now < self.owner_expires:
            raise BrokerBusy(f"the coordinator is busy with another analysis ({self.owner})")
        if self.owner != owner and self.stop_requested:  # a new analysis: an old stop is spent
            self.stop_requested = False
            self._generation_changed()
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
        self.evaluations = self.acceptances = self.failures = 0
        for worker in self.workers.values():
            worker.leases.clear()
        self._generation_changed()

    def add_ranges(self, token: str, ranges: list[tuple[int, int]]) -> None:
        if token == self.token and ranges:
            self.queue.extend((int(s), int(c)) for s, c in ranges)
            self.queue_version += 1

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
        lost: list[tuple[int, int]] = []
        for name, worker in list(self.workers.items()):
            if now - worker.seen > lease_seconds:
                lost.extend(sorted(worker.leases.items()))
                del self.workers[name]
        self._queue_again(lost)
        return lost

    def _queue_again(self, ranges: list[tuple[int, int]]) -> None:
        """Put claimed ranges back at the front of the queue, in order."""
        if ranges:
            self.queue.extendleft(reversed(ranges))
            self.requeued.update(start for start, _ in ranges)
            self.queue_version += 1

    def finish_generation(self, token: str | None) -> None:
        """The generation is complete: workers abandon its ranges."""
        if token is not None and token == self.token:
            self.token = self.spec_data = None
            self.queue.clear()
            self.results.clear()
            for worker in self.workers.values():
                worker.leases.clear()
            self._generation_changed()

    def request_stop(self) -> None:
        """Workers exit at the end of the current generation."""
        if not self.stop_requested:
            self.stop_requested = True
            self._generation_changed()

    def reset_workers(self) -> int:
        """Forget every registered worker (their leases are queued again)."""
        n = len(self.workers)
        if self.token is not None:
            self.requeue_lost(self.token, -1.0)
        self.workers.clear()
        return n

    def status(self, per_worker: bool = True) -> dict:
        """Counters: live worker processes, their slots (threads; ``threads`` is the
        most of one process), the running generation, the queue.

        With ``per_worker`` (monitoring, ``dask-abc-manager info``) also each worker's
        evaluations since it connected (``per_worker``), its registration info with its
        ``age`` in seconds (``worker_info``) and the ranges held under leases
        (``leased``); without (the master's frequent poll) the reply's size does not
        grow with the workers.
        """
        slots = threads = 0
        for worker in self.workers.values():
            slots += worker.slots
            threads = max(threads, worker.slots)
        status = {"workers": len(self.workers), "slots": slots, "threads": threads,
                  "evaluations": self.evaluations, "acceptances": self.acceptances,
                  "failures": self.failures,
                  "n": self.n, "t": self.t, "epsilon": self.epsilon,
                  "running": self.token is not None, "owner": self.owner,
                  "stop": self.stop_requested, "queued": len(self.queue)}
        if per_worker:
            status["per_worker"] = {k: w.evaluations for k, w in self.workers.items()}
            now = self.clock()
            status["worker_info"] = {k: {**w.info, "age": now - w.since}
                                     for k, w in self.workers.items()}
            status["leased"] = sum(len(w.leases) for w in self.workers.values())
        return status

    # -- workers ---------------------------------------------------------------

    def register(self, worker: str, info: dict) -> None:
        """A worker process announces itself; ``info`` holds ``threads`` (its slots),
        ``host`` and ``pid``. Registering again keeps its leases."""
        known, now = self.workers.get(worker), self.clock()
        if known is None:
            self.workers[worker] = WorkerInfo(dict(info), now, since=now)
        else:
            known.info, known.seen, known.registered = dict(info), now, True

    def unregister(self, worker: str) -> None:
        gone = self.workers.pop(worker, None)
        if gone is not None and gone.leases:  # a worker leaving with ranges: give them back
            self._queue_again(sorted(gone.leases.items()))

    def heartbeat(self, worker: str) -> dict:
        """Renew the worker's leases; tell it the current generation, the stop flag and
        whether it is registered (if not, it registers again: it was forgotten by
        ``reset-workers`` or presumed dead)."""
        known, now = self.workers.get(worker), self.clock()
        if known is None:
            known = self.workers[worker] = WorkerInfo({}, now, registered=False, since=now)
        known.seen = now
        return {"token": self.token, "t": self.t, "stop": self.stop_requested,
                "registered": known.registered}

    def unchanged(self, token: str | None, stop: bool) -> bool:
        """Whether the generation is still ``token`` and the stop flag still ``stop``
        (what a worker's ``watch`` waits to change)."""
        return self.token == token and self.stop_requested == bool(stop)

    def spec(self, token: str) -> bytes | None:
        return self.spec_data if token == self.token else None

    def claim(self, worker: str, token: str) -> tuple[int, int] | None:
        """The next queued range, leased to ``worker``; None if there is none."""
        ranges = self.claim_many(worker, token, 1)
        return ranges[0] if ranges else None

    def claim_many(self, worker: str, token: str, count: int) -> list[tuple[int, int]] | None:
        """Up to ``count`` queued ranges, leased to ``worker`` (a process claiming for its
        idle threads); ``[]`` if none is queued, None if ``token`` is not the running
        generation."""
        if token != self.token:
            return None
        if not self.queue or count < 1:
            return []
        self.heartbeat(worker)
        leases = self.workers[worker].leases
        ranges = []
        for _ in range(min(int(count), len(self.queue))):
            start, n = self.queue.popleft()
            leases[start] = n
            ranges.append((start, n))
        return ranges

    def push(self, worker: str, token: str, start: int, count: int, accepted: int,
             result: bytes, failed: int = 0) -> bool:
        """Deliver a range's result (``failed``: its evaluations whose simulation raised);
        False if it is late (dropped)."""
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
        self.failures += failed
        return True

    def push_and_claim(self, worker: str, token: str, start: int, count: int, accepted: int,
                       result: bytes, failed: int = 0) -> tuple[int, int] | None:
        """:meth:`push`, then :meth:`claim`: a busy worker's one call per range."""
        self.push(worker, token, start, count, accepted, result, failed)
        return self.claim(worker, token)

    def push_many(self, worker: str, token: str,
                  results: list[tuple[int, int, int, int, bytes]],
                  claim: int = 0) -> list[tuple[int, int]] | None:
        """:meth:`push` of every ``(start, count, accepted, failed, result)``, then
        :meth:`claim_many` of up to ``claim`` ranges: a worker process's one call for
        all the ranges its threads finished and all its idle threads."""
        for start, count, accepted, failed, result in results:
            self.push(worker, token, int(start), int(count), int(accepted), result,
                      int(failed))
        return self.claim_many(worker, token, claim)

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

    def give_back_many(self, worker: str, token: str, ranges: list[tuple[int, int]]) -> None:
        """:meth:`give_back` of several ranges, in one call."""
        known = self.workers.get(worker)
        if known is not None:
            for start, _ in ranges:
                known.leases.pop(int(start), None)
        if token == self.token:
            self._queue_again(sorted((int(s), int(c)) for s, c in ranges
                                     if int(s) not in self.returned))
