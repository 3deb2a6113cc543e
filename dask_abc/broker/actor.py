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

    The coordinator is disposable: when the worker that hosts it dies (a job at
    its walltime), calls raise :class:`BrokerUnreachable`, and :meth:`reconnect`
    binds to the coordinator published next. The master (``create=True``)
    publishes a new one on a live worker and plants its generation there again;
    a ``dask-abc-worker`` waits for that.

    Parameters
    ----------
    client : distributed.Client
        Connected to the cluster that hosts (or will host) the actor.
    name : str, optional
        The dataset name; default ``abc.broker.name``.
    create : bool
        Create and publish the actor if none lives (the master does; workers
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
        self.create = create
        self.call_timeout = float(config.get("broker.call-timeout"))
        self._bind(wait)

    def _bind(self, wait: float) -> None:
        """Bind to the live coordinator, creating one if this handle may; wait up to
        ``wait`` seconds for one otherwise."""
        deadline = time.monotonic() + wait
        while True:
            future = self.client.get_dataset(self.name, default=None)
            if future is None and self.create:
                future = self._create()
            if future is not None:
                actor = self._actor_of(future)
                if actor is not None:
                    self.actor, self._future = actor, future
                    return
                if self.create:  # its worker died: publish a new one in its place
                    self.client.unpublish_dataset(self.name)
                    continue
            if time.monotonic() > deadline:
                raise CoordinatorNotFound(
                    f"no live dask-abc coordinator named {self.name!r} on the scheduler "
                    f"{self.client.scheduler.address} (waited {wait:g} s); start the master "
                    "(ABCSMC with ActorEvalParallelSampler) first, or check the name")
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))

    def _create(self):
        future = self.client.submit(Coordinator, actor=True, pure=False,
                                    key=f"{self.name}-{uuid.uuid4().hex}")
        try:
            self.client.publish_dataset(future, name=self.name)
        except KeyError:  # another master published one first: use that
            future.release()
            return self.client.get_dataset(self.name, default=None)
        return future

    def _actor_of(self, future):
        """The actor handle of ``future``; None if its worker died."""
        try:
            with self.client.as_current():  # the actor handle binds to the current client
                return future.result(timeout=self.call_timeout)
        except RuntimeError:  # "Worker holding Actor was lost"
            if future.status == "error":
                return None
            raise
        except (OSError, TimeoutError) as error:
            raise BrokerUnreachable(f"the dask-abc coordinator {self.name!r} did not start "
                                    f"within {self.call_timeout:g} s: {error!r}") from error

    def reconnect(self, wait: float = 0.0) -> None:
        """Bind to the live coordinator: a new one if this handle creates them, else
        the one published within ``wait`` seconds (:class:`CoordinatorNotFound`)."""
        try:
            self._bind(wait)
        except OSError as error:  # the scheduler itself is unreachable
            raise BrokerUnreachable(f"cannot reach the Dask scheduler: {error!r}") from error

    def _lost(self) -> bool:
        return self._future.status not in ("pending", "finished")

    def _method(self, method: str, *args, wait: float = 0.0):
        """Call ``method`` of the actor; ``wait`` is how long it may block on purpose.

        The call is watched in slices: distributed may never answer a call that
        was under way when the actor's worker died, so a call ends as unreachable
        once the actor is known lost (or replaced by :meth:`reconnect` meanwhile),
        or after ``call_timeout`` seconds beyond ``wait``.
        """
        bound = self._future
        deadline = time.monotonic() + self.call_timeout + wait
        try:
            if self._lost():
                raise RuntimeError("the worker holding the coordinator was lost")
            call = getattr(self.actor, method)(*args)
            while True:
                try:  # a timeout ends the wait, not the call
                    return call.result(timeout=min(wait + 0.5, 2.0))
                except TimeoutError:
                    if self._lost() or bound is not self._future:
                        raise RuntimeError("the coordinator was lost during the call") \
                            from None
                    if time.monotonic() > deadline:
                        raise
        except RuntimeError as error:  # distributed's way to say the actor's worker died
            if not (self._lost() or bound is not self._future):
                raise
            reason = error
        except (OSError, TimeoutError) as error:
            reason = error
        raise BrokerUnreachable(f"the dask-abc coordinator {self.name!r} is unreachable: "
                                f"{reason!r}") from reason

    def _call(self, operation: str, *args):
        status, value = self._method("call", operation, *args)
        if status == "busy":
            raise BrokerBusy(value)
        return value

    def take_results(self, token, timeout):
        return self._method("take_results", token, timeout, wait=timeout)

    def watch(self, worker, token, stop, timeout):
        return self._method("watch", worker, token, stop, timeout, wait=timeout)

    def claim_many(self, worker, token, count, timeout=0.0):
        ranges = self._method("claim_many", worker, token, count, timeout, wait=timeout)
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
