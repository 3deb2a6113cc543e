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

from .state import BrokerState


class Broker:
    """A coordinator handle; every method is one atomic operation.

    A backend either implements :meth:`_call` (a coordinator holding a
    :class:`~dask_abc.broker.state.BrokerState`) or overrides the methods.

    Master side: :meth:`acquire`, :meth:`release`, :meth:`start_generation`,
    :meth:`add_ranges`, :meth:`take_results`, :meth:`requeue_lost`,
    :meth:`finish_generation`, :meth:`status` (``per_worker=False``). Worker
    processes: :meth:`register`, :meth:`unregister`, :meth:`heartbeat`,
    :meth:`watch`, :meth:`spec`, :meth:`claim`, :meth:`claim_many`,
    :meth:`push`, :meth:`push_and_claim`, :meth:`push_many`, :meth:`report_failure`,
    :meth:`give_back`, :meth:`give_back_many`. Monitoring and control
    (``dask-abc-manager``): :meth:`status`, :meth:`request_stop`,
    :meth:`reset_workers`.

    The calls that wait (:meth:`take_results`, :meth:`watch`,
    :meth:`claim_many` with a timeout) are woken by the coordinator as soon as
    what they wait for happens, so nobody polls: a master wakes for every
    delivered result, a worker process for a new generation, the end of one, a
    stop, or ranges to claim for its idle threads.
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

    def status(self, per_worker: bool = True) -> dict:
        """Counters (see :meth:`~dask_abc.broker.state.BrokerState.status`); the master
        polls with ``per_worker=False``, whose reply does not grow with the workers."""
        return self._call("status", per_worker)

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

    def watch(self, worker: str, token: str | None, stop: bool, timeout: float) -> dict:
        """A :meth:`heartbeat` that first waits up to ``timeout`` seconds while the
        generation is still ``token`` and the stop flag still ``stop``; a worker
        process's one standing call."""
        raise NotImplementedError

    def spec(self, token: str) -> bytes | None:
        return self._call("spec", token)

    def claim(self, worker: str, token: str) -> tuple[int, int] | None:
        return self._call("claim", worker, token)

    def claim_many(self, worker: str, token: str, count: int,
                   timeout: float = 0.0) -> list[tuple[int, int]] | None:
        """Up to ``count`` ranges for the idle threads of a worker process, waiting up to
        ``timeout`` seconds for one to be queued; ``[]`` if none came, None if ``token``
        is not (or no longer) the running generation."""
        raise NotImplementedError

    def push(self, worker: str, token: str, start: int, count: int, accepted: int,
             result: bytes, failed: int = 0) -> bool:
        return self._call("push", worker, token, start, count, accepted, result, failed)

    def push_and_claim(self, worker: str, token: str, start: int, count: int, accepted: int,
                       result: bytes, failed: int = 0) -> tuple[int, int] | None:
        return self._call("push_and_claim", worker, token, start, count, accepted, result,
                          failed)

    def push_many(self, worker: str, token: str,
                  results: list[tuple[int, int, int, int, bytes]],
                  claim: int = 0) -> list[tuple[int, int]] | None:
        """Deliver ``(start, count, accepted, failed, result)`` of several ranges (``failed``:
        the evaluations whose simulation raised) and claim up to ``claim`` ranges, in one
        call; None if ``token`` is not the running generation."""
        ranges = self._call("push_many", worker, token, [tuple(r) for r in results], claim)
        return None if ranges is None else [tuple(r) for r in ranges]

    def report_failure(self, worker: str, token: str, failure: bytes) -> None:
        return self._call("report_failure", worker, token, failure)

    def give_back(self, worker: str, token: str, start: int, count: int) -> None:
        return self._call("give_back", worker, token, start, count)

    def give_back_many(self, worker: str, token: str, ranges: list[tuple[int, int]]) -> None:
        return self._call("give_back_many", worker, token, [tuple(r) for r in ranges])

    def reconnect(self, wait: float = 0.0) -> None:
        """Reach the coordinator again after :class:`~.errors.BrokerUnreachable`: the
        live one, which may be a new, empty one (see
        :class:`~dask_abc.sampler.BrokerSampler`); up to ``wait`` seconds for one to
        appear. Backends whose connection heals by itself need not override it."""

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
    >>> broker.claim_many("w", "no-such-generation", 4, timeout=0.01) is None
    True
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

    def watch(self, worker, token, stop, timeout):
        with self._changed:
            self.state.heartbeat(worker)
            if timeout > 0:
                self._changed.wait_for(lambda: not self.state.unchanged(token, stop), timeout)
            return self._call("heartbeat", worker)

    def claim_many(self, worker, token, count, timeout=0.0):
        with self._changed:
            ranges = self._call("claim_many", worker, token, count)
            if ranges == [] and timeout > 0:
                # the state may be replaced (tests): compare versions of the current one
                state, version = self.state, self.state.queue_version
                self._changed.wait_for(lambda: self.state is not state
                                       or self.state.queue_version != version, timeout)
                ranges = self._call("claim_many", worker, token, count)
            return ranges


__all__ = ["Broker", "LocalBroker"]
