"""The coordinator as a Dask Actor: nothing to run beside the Dask cluster.

The actor lives on one worker of the cluster and is published as a named
dataset, so a master or a ``dask-abc-worker`` needs only the scheduler's
address to find it. Its methods are coroutines run on that worker's event
loop, one at a time, so each operation is atomic. Calls go from the caller
straight to the actor's worker, not through the scheduler.

Dask serialises the elements of a list one by one (about 20 µs each), so the
calls that carry many ranges or results (``add_ranges``, ``claim_many``,
``push_many``) pack them into one int64 array and one byte string: a worker
process of 500 threads claims 500 ranges in one message of 8 kB, not 500
objects.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np

from .. import config
from .base import Broker
from .errors import BrokerBusy, BrokerUnreachable, CoordinatorNotFound
from .state import BrokerState


def pack_ranges(ranges) -> bytes:
    """``(start, count)`` pairs as one byte string (int64).

    Examples
    --------
    >>> unpack_ranges(pack_ranges([(0, 5), (5, 3)]))
    [(0, 5), (5, 3)]
    """
    return np.asarray(ranges, dtype=np.int64).reshape(-1, 2).tobytes()


def unpack_ranges(data: bytes) -> list[tuple[int, int]]:
    """The ``(start, count)`` pairs of :func:`pack_ranges`."""
    return [(start, count) for start, count in
            np.frombuffer(data, dtype=np.int64).reshape(-1, 2).tolist()]


def pack_results(results) -> tuple[bytes, bytes]:
    """``(start, count, accepted, failed, data)`` of ranges as an int64 header and the
    data concatenated.

    Examples
    --------
    >>> unpack_results(*pack_results([(0, 5, 1, 0, b"ab"), (5, 3, 0, 2, b"c")]))
    [(0, 5, 1, 0, b'ab'), (5, 3, 0, 2, b'c')]
    """
    header = np.array([(*counts, len(data)) for *counts, data in results], dtype=np.int64)
    return header.reshape(-1, 5).tobytes(), b"".join(data for *_, data in results)


def unpack_results(header: bytes, blob: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """The ``(start, count, accepted, failed, data)`` of :func:`pack_results`."""
    results, offset = [], 0
    for *counts, size in np.frombuffer(header, dtype=np.int64).reshape(-1, 5).tolist():
        results.append((*counts, blob[offset:offset + size]))
        offset += size
    return results


class Coordinator:
    """The Dask Actor: a :class:`~dask_abc.broker.state.BrokerState` behind coroutines.

    Every operation runs on the event loop of the actor's worker, one at a time.
    The calls that wait (the master's :meth:`take_results`, a worker process's
    :meth:`watch` and :meth:`claim_many`) wait on an event that the operation
    which changes what they wait for sets: any operation that delivers a
    result (``push``, ``push_and_claim``, ``report_failure``) wakes the master.

    Examples
    --------
    >>> import asyncio
    >>> async def demo():
    ...     coordinator = Coordinator()
    ...     await coordinator.call("start_generation", "g", 0, 10, b"spec")
    ...     await coordinator.call("add_ranges", "g", [(0, 5)])
    ...     waiting = asyncio.ensure_future(coordinator.take_results("g", 600))
    ...     await coordinator.call("push_and_claim", "w", "g", 0, 5, 1, b"result")
    ...     return await waiting  # at once, not after 600 s
    >>> asyncio.run(demo())
    [b'result']
    """

    def __init__(self):
        self.state = BrokerState()
        # events are made on first use, on the loop of the worker that hosts the actor
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, kind: str) -> asyncio.Event:
        if kind not in self._events:
            self._events[kind] = asyncio.Event()
        return self._events[kind]

    def _notify(self, kind: str) -> None:
        """Wake everybody waiting for ``kind``; later waiters wait for the next time."""
        event = self._events.pop(kind, None)
        if event is not None:
            event.set()

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _run(self, operation: str, *args):
        state = self.state
        versions = state.generation_version, state.queue_version
        try:
            return getattr(state, operation)(*args)
        finally:
            if state.results:
                self._notify("results")
            if state.generation_version != versions[0]:
                self._notify("generation")
            if state.queue_version != versions[1]:
                self._notify("queue")

    async def call(self, operation: str, *args):
        """Run one operation of the protocol (errors travel back as values)."""
        try:
            return ("ok", self._run(operation, *args))
        except BrokerBusy as error:
            return ("busy", str(error))

    async def take_results(self, token: str, timeout: float) -> list[bytes]:
        """Results delivered since the last call, waiting up to ``timeout`` for one."""
        results = self.state.take_results(token)
        if not results and timeout > 0:
            await self._wait(self._event("results"), timeout)
            results = self.state.take_results(token)
        return results

    async def watch(self, worker: str, token: str | None, stop: bool, timeout: float) -> dict:
        """A heartbeat that first waits up to ``timeout`` for the generation to differ from
        ``token`` or the stop flag from ``stop``."""
        self.state.heartbeat(worker)
        if timeout > 0 and self.state.unchanged(token, stop):
            await self._wait(self._event("generation"), timeout)
        return self._run("heartbeat", worker)

    async def claim_many(self, worker: str, token: str, count: int,
                         timeout: float) -> bytes | None:
        """Up to ``count`` ranges (:func:`pack_ranges`), waiting up to ``timeout`` for one
        to be queued; None if ``token`` is not the running generation."""
        ranges = self._run("claim_many", worker, token, count)
        if ranges == [] and timeout > 0:
            await self._wait(self._event("queue"), timeout)
            ranges = self._run("claim_many", worker, token, count)
        return None if ranges is None else pack_ranges(ranges)

    async def add_ranges(self, token: str, ranges: bytes) -> None:
        """Queue ranges (:func:`pack_ranges`)."""
        self._run("add_ranges", token, unpack_ranges(ranges))

    async def push_many(self, worker: str, token: str, header: bytes, blob: bytes,
                        claim: int) -> bytes | None:
        """Deliver results (:func:`pack_results`) and claim up to ``claim`` ranges
        (:func:`pack_ranges`); None if ``token`` is not the running generation."""
        ranges = self._run("push_many", worker, token, unpack_results(header, blob), claim)
        return None if ranges is None else pack_ranges(ranges)


class ActorBroker(Broker):
    """A handle on the :class:`Coordinator` actor published under ``name``.

    Parameters
    ----------
    client : distributed.Client
        Connected to the cluster that hosts (or will host) the actor.
    name : str, optional
        The dataset name; default ``abc.broker.name``.
    create : bool
        Create and publish the actor if none exists (the master does; workers
        wait for it instead).
    wait : float
        Seconds to wait for the actor to appear when not creating it.
    owns_client : bool
        :meth:`close` closes the client too.

    Examples
    --------
    With a scheduler running (not run as a doctest)::

        broker = ActorBroker(Client("tcp://scheduler:8786"), create=True)
        broker.status()["workers"]
    """

    def __init__(self, client, name: str | None = None, create: bool = False,
                 wait: float = 0.0, owns_client: bool = False):
        self.client = client
        self.owns_client = owns_client
        self.name = name or config.get("broker.name")
        future = self._find(create, wait)
        with client.as_current():  # the actor handle binds to the current client
            self.actor = future.result()

    def _find(self, create: bool, wait: float):
        deadline = time.monotonic() + wait
        while True:
            future = self.client.get_dataset(self.name, default=None)
            if future is not None:
                return future
            if create:
                future = self.client.submit(Coordinator, actor=True, pure=False,
                                            key=f"{self.name}-{uuid.uuid4().hex}")
                try:
                    self.client.publish_dataset(future, name=self.name)
                    return future
                except KeyError:  # another master published one first: use it
                    future.release()
                    continue
            if time.monotonic() > deadline:
                raise CoordinatorNotFound(
                    f"no dask-abc coordinator named {self.name!r} on the scheduler "
                    f"{self.client.scheduler.address} (waited {wait:g} s); start the master "
                    "(ABCSMC with ActorEvalParallelSampler) first, or check the name")
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))

    def _method(self, method: str, *args):
        try:
            return getattr(self.actor, method)(*args).result()
        except OSError as error:
            raise BrokerUnreachable(f"the dask-abc coordinator {self.name!r} is unreachable: "
                              f"{error}") from error

    def _call(self, operation: str, *args):
        status, value = self._method("call", operation, *args)
        if status == "busy":
            raise BrokerBusy(value)
        return value

    def take_results(self, token, timeout):
        return self._method("take_results", token, timeout)

    def watch(self, worker, token, stop, timeout):
        return self._method("watch", worker, token, stop, timeout)

    def claim_many(self, worker, token, count, timeout=0.0):
        ranges = self._method("claim_many", worker, token, count, timeout)
        return None if ranges is None else unpack_ranges(ranges)

    def add_ranges(self, token, ranges):
        if ranges:
            self._method("add_ranges", token, pack_ranges(ranges))

    def push_many(self, worker, token, results, claim=0):
        ranges = self._method("push_many", worker, token, *pack_results(results), claim)
        return None if ranges is None else unpack_ranges(ranges)

    def close(self):
        if self.owns_client:
            self.client.close()
