"""The broker interface: one coordination protocol, several backends.

A :class:`Broker` is a handle on a coordinator (see
:class:`~dask_abc.broker.state.BrokerState` for the protocol). The master
(:class:`~dask_abc.sampler.BrokerSampler`) and the standalone workers
(:class:`~dask_abc.broker.worker.BrokerWorker`) talk only through it, so they
work with any backend: a Dask Actor
(:class:`~dask_abc.broker.actor.ActorBroker`) or a Redis server
(:class:`~dask_abc.broker.redis.RedisBroker`).
"""

from __future__ import annotations

import threading

from .state import BrokerBusy, BrokerState


class BrokerError(RuntimeError):
    """The coordinator cannot be reached or refused the request."""


class Broker:
    """A coordinator handle; every method is one atomic operation.

    A backend either implements :meth:`_call` (a coordinator holding a
    :class:`~dask_abc.broker.state.BrokerState`) or overrides the methods.

    Master side: :meth:`acquire`, :meth:`release`, :meth:`start_generation`,
    :meth:`add_ranges`, :meth:`take_results`, :meth:`requeue_lost`,
    :meth:`finish_generation`. Workers: :meth:`register`, :meth:`unregister`,
    :meth:`heartbeat`, :meth:`spec`, :meth:`claim`, :meth:`push`,
    :meth:`push_and_claim`, :meth:`report_failure`, :meth:`give_back`.
    Monitoring and control (``dask-abc-manager``): :meth:`status`,
    :meth:`request_stop`, :meth:`reset_workers`.
    """

    def acquire(self, owner: str, ttl: float) -> None:
        """Hold the coordinator for ``ttl`` seconds; :class:`BrokerBusy` if another
        master holds it."""
        return self._call("acquire", owner, ttl)

    def release(self, owner: str) -> None:
        return self._call("release", owner)

    def start_generation(self, token: str, t: int, n: int, spec: bytes,
                         epsilon: float | None = None) -> None:
        return self._call("start_generation", token, t, n, spec, epsilon)

    def add_ranges(self, token: str, ranges: list[tuple[int, int]]) -> None:
        return self._call("add_ranges", token, ranges)

    def take_results(self, token: str, timeout: float) -> list[bytes]:
        """Results pushed since the last call, waiting up to ``timeout`` for one."""
        return self._call("take_results", token, timeout)

    def requeue_lost(self, token: str, lease_seconds: float) -> list[tuple[int, int]]:
        return self._call("requeue_lost", token, lease_seconds)

    def finish_generation(self, token: str) -> None:
        return self._call("finish_generation", token)

    def status(self) -> dict:
        return self._call("status")

    def request_stop(self) -> None:
        return self._call("request_stop")

    def reset_workers(self) -> int:
        return self._call("reset_workers")

    def register(self, worker: str, info: dict) -> None:
        return self._call("register", worker, info)

    def unregister(self, worker: str) -> None:
        return self._call("unregister", worker)

    def heartbeat(self, worker: str) -> dict:
        return self._call("heartbeat", worker)

    def spec(self, token: str) -> bytes | None:
        return self._call("spec", token)

    def claim(self, worker: str, token: str) -> tuple[int, int] | None:
        return self._call("claim", worker, token)

    def push(self, worker: str, token: str, start: int, count: int, accepted: int,
             result: bytes) -> bool:
        return self._call("push", worker, token, start, count, accepted, result)

    def push_and_claim(self, worker: str, token: str, start: int, count: int, accepted: int,
                       result: bytes) -> tuple[int, int] | None:
        return self._call("push_and_claim", worker, token, start, count, accepted, result)

    def report_failure(self, worker: str, token: str, failure: bytes) -> None:
        return self._call("report_failure", worker, token, failure)

    def give_back(self, worker: str, token: str, start: int, count: int) -> None:
        return self._call("give_back", worker, token, start, count)

    def close(self) -> None:
        """Release the connection (not the coordinator)."""

    def _call(self, operation: str, *args):
        """Run ``operation`` of :class:`~dask_abc.broker.state.BrokerState` on the
        coordinator; backends that hold a ``BrokerState`` implement only this."""
        raise NotImplementedError


class LocalBroker(Broker):
    """A coordinator in this process, shared by threads (for tests and examples).

    Examples
    --------
    >>> broker = LocalBroker()
    >>> broker.acquire("master", ttl=10)
    >>> broker.status()["workers"]
    0
    """

    def __init__(self, state: BrokerState | None = None):
        self.state = state or BrokerState()
        self._changed = threading.Condition()

    def _call(self, operation: str, *args):
        with self._changed:
            result = getattr(self.state, operation)(*args)
            self._changed.notify_all()
            return result

    def take_results(self, token: str, timeout: float) -> list[bytes]:
        with self._changed:
            results = self.state.take_results(token)
            if not results and timeout > 0:
                self._changed.wait_for(lambda: self.state.results, timeout)
                results = self.state.take_results(token)
            return results


__all__ = ["Broker", "BrokerBusy", "BrokerError", "LocalBroker"]
