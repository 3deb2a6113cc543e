"""The coordinator as a Dask Actor: nothing to run beside the Dask cluster.

The actor lives on one worker of the cluster and is published as a named
dataset, so a master or a ``dask-abc-worker`` needs only the scheduler's
address to find it. Its methods are coroutines run on that worker's event
loop, one at a time, so each operation is atomic. Calls go from the caller
straight to the actor's worker, not through the scheduler.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from .. import config
from .base import Broker, BrokerError
from .state import BrokerBusy, BrokerState


class Coordinator:
    """The Dask Actor: a :class:`~dask_abc.broker.state.BrokerState` behind coroutines."""

    def __init__(self):
        self.state = BrokerState()
        self._pushed = asyncio.Event()

    async def call(self, operation: str, *args):
        """Run one operation of the protocol (errors travel back as values)."""
        try:
            result = getattr(self.state, operation)(*args)
        except BrokerBusy as error:
            return ("busy", str(error))
        if operation == "push" and result:
            self._pushed.set()
        return ("ok", result)

    async def take_results(self, token: str, timeout: float) -> list[bytes]:
        """Results pushed since the last call, waiting up to ``timeout`` for one."""
        results = self.state.take_results(token)
        if not results and timeout > 0:
            self._pushed.clear()
            try:
                await asyncio.wait_for(self._pushed.wait(), timeout)
            except asyncio.TimeoutError:
                return []
            results = self.state.take_results(token)
        return results


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
                raise BrokerError(
                    f"no dask-abc coordinator named {self.name!r} on the scheduler "
                    f"{self.client.scheduler.address} (waited {wait:g} s); start the master "
                    "(ABCSMC with ActorEvalParallelSampler) first, or check the name")
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))

    def _call(self, operation: str, *args):
        try:
            status, value = self.actor.call(operation, *args).result()
        except OSError as error:
            raise BrokerError(f"the dask-abc coordinator {self.name!r} is unreachable: "
                              f"{error}") from error
        if status == "busy":
            raise BrokerBusy(value)
        return value

    def take_results(self, token, timeout):
        return self.actor.take_results(token, timeout).result()

    def close(self):
        if self.owns_client:
            self.client.close()
