"""Samplers whose workers sample on their own: the master only queues index ranges.

Standalone workers (``dask-abc-worker``) started anywhere, at any time, claim
ranges of the running generation from a coordinator (a
:class:`~dask_abc.broker.Broker`), evaluate them and push the results. The
master sizes the ranges with the same policy as the Dask sampler, keeps a
few queued per live *slot* (a worker process has one per thread), and queues
again the ranges of workers whose heartbeats stop, so a killed worker never
hangs a run. Ranges get longer as the slots grow (at least ``slots /
abc.broker.max-task-rate`` seconds of work), so the coordinator's load stays
bounded on any cluster.

The coordinator holds nothing the master does not (:class:`_Seed`): when it is
lost (the actor's worker died, Redis came back empty), the master plants the
running generation again on whichever coordinator it reaches within
``wait_for_workers`` seconds, with the ranges not yet returned.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import time
import uuid
from dataclasses import dataclass, field

from .. import config
from ..broker import ActorBroker, Broker, BrokerBusy, RedisBroker
from ..broker.errors import BrokerError, BrokerUnreachable, CoordinatorNotFound
from ..broker.worker import WorkerFailure
from ..generation import GenerationSpec
from ..reproducibility import warn_shared_global_state
from ..sample import SampleCollector
from . import payload
from .base import Sampler, SamplerError
from .policy import RangePolicy, policy_for

logger = logging.getLogger("dask_abc")


@dataclass
class _Seed:
    """What the master plants on a coordinator for a generation, and again on a new
    one: the coordinator holds nothing the master does not."""

    token: str
    t: int
    n: int
    data: bytes  # the pickled spec
    epsilon: float | None
    outstanding: dict[int, int] = field(default_factory=dict)  # start -> count not returned


class BrokerSampler(Sampler):
    """Queue index ranges on a coordinator; standalone workers evaluate them.

    Parameters
    ----------
    batch_size : int, "auto", "static", "dynamic" or RangePolicy
        Evaluations per range (:func:`~dask_abc.sampler.policy.policy_for`); "auto"
        sizes ranges to about ``abc.broker.target-task-seconds`` of work.
    wait_for_workers : float, optional
        Seconds a generation waits for a first worker before the run stops
        with an error; default ``abc.broker.wait-for-workers``.
    lease_seconds : float, optional
        Ranges of a worker silent for this long go to others; default
        ``abc.broker.lease-seconds``.
    """

    #: how a user starts workers for this backend (for messages)
    worker_command = "dask-abc-worker"

    def __init__(self, batch_size: int | str | RangePolicy = "auto",
                 wait_for_workers: float | None = None, lease_seconds: float | None = None):
        super().__init__()
        self.policy = policy_for(batch_size, section="broker")
        self.batch_size = batch_size
        self.wait_for_workers = float(
            config.get("broker.wait-for-workers") if wait_for_workers is None
            else wait_for_workers)
        self.lease_seconds = float(
            config.get("broker.lease-seconds") if lease_seconds is None else lease_seconds)
        self.owner = f"master {socket.gethostname()} PID {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self._broker: Broker | None = None
        self._warned: set[str] = set()  # global-RNG models warned about by this sampler

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = self._connect()
        return self._broker

    def _connect(self) -> Broker:
        raise NotImplementedError

    def _window(self, slots: int) -> int:
        """Ranges to keep queued or running: each slot's one and ``pipeline-depth``
        more, so a thread that pushes a result claims the next in the same call."""
        return max(slots, 1) * (1 + int(config.get("broker.pipeline-depth")))

    def _warn_threads(self, spec: GenerationSpec, threads: int) -> None:
        """Once per model: workers run ``threads`` simulations per process, and a model
        draws from numpy's global random state (known from the pre-flight check)."""
        if threads > 1 and spec.global_rng_models:
            warn_shared_global_state(spec.global_rng_models, threads,
                                     "a dask-abc-worker process (--threads)", self._warned)

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        broker = self.broker
        ttl = float(config.get("broker.master-ttl"))
        shipped = payload.SpecPayload(spec, keep=False)  # only workers evaluate
        seed = _Seed(shipped.token, spec.t, collector.n, shipped.data, spec.eps)
        self._begin(broker, seed, ttl)
        handed_out = 0

        def top_up(slots: int) -> None:
            nonlocal handed_out
            new = self.policy.ranges(collector, handed_out, len(seed.outstanding),
                                     self._window(slots), slots=max(slots, 1))
            if new:
                broker.add_ranges(seed.token, new)
                seed.outstanding.update(new)
                handed_out = new[-1][0] + new[-1][1]

        check_every = min(self.lease_seconds / 4, 1.0)
        count_every = min(check_every, float(config.get("broker.worker-count-seconds")))
        started = last_result = time.monotonic()
        next_check = next_count = started
        slots = 0
        try:
            while not collector.done:
                try:
                    now = time.monotonic()
                    if now >= next_check:
                        broker.acquire(self.owner, ttl)  # renew the claim on the coordinator
                        lost = broker.requeue_lost(seed.token, self.lease_seconds)
                        if lost:
                            logger.warning("generation %d: %d ranges of silent workers "
                                           "queued again (first: %d..)", spec.t, len(lost),
                                           lost[0][0])
                        next_check = now + check_every
                    if now >= next_count:  # the queue follows the live number of slots
                        status = broker.status(per_worker=False)
                        if not self._runs(status, seed):
                            self._replant(broker, seed, status["owner"], ttl)
                            continue
                        slots = status["slots"]
                        self._warn_threads(spec, status["threads"])
                        if not status["workers"] and now - last_result > self.wait_for_workers:
                            raise self._no_workers(spec, collector, now - started)
                        next_count = now + count_every
                    top_up(slots)
                    if self._collect(broker, seed, collector, count_every):
                        last_result = time.monotonic()
                except BrokerUnreachable as error:
                    self._recover(broker, seed, ttl, error)
                    next_check = next_count = time.monotonic()
        finally:
            try:
                broker.finish_generation(seed.token)
            except BrokerError as error:  # a coordinator that is gone needs no finishing
                logger.warning("could not end generation %d on the coordinator: %s",
                               spec.t, error)

    def _begin(self, broker: Broker, seed: _Seed, ttl: float) -> None:
        try:
            self._acquire(broker, ttl)
            self._plant(broker, seed, ttl)
        except BrokerUnreachable as error:  # lost between generations
            self._recover(broker, seed, ttl, error)

    def _collect(self, broker: Broker, seed: _Seed, collector: SampleCollector,
                 timeout: float) -> bool:
        """Use the results delivered within ``timeout`` seconds; whether one was new."""
        new = False
        for data in broker.take_results(seed.token, timeout):
            batch = pickle.loads(data)
            if isinstance(batch, WorkerFailure):
                raise batch.error
            if seed.outstanding.pop(batch.start, None) is None:
                continue  # a duplicate of a range queued again
            collector.add(batch)
            self.policy.observe(batch)
            new = True
        return new

    def _runs(self, status: dict, seed: _Seed) -> bool:
        """Whether the coordinator whose status this is runs ``seed``'s generation for
        this master."""
        return status["owner"] == self.owner and status["running"] and status["t"] == seed.t

    def _plant(self, broker: Broker, seed: _Seed, ttl: float) -> None:
        """Start ``seed``'s generation on the coordinator with its outstanding ranges."""
        broker.acquire(self.owner, ttl)
        broker.start_generation(seed.token, seed.t, seed.n, seed.data, seed.epsilon)
        if seed.outstanding:
            broker.add_ranges(seed.token, sorted(seed.outstanding.items()))

    def _replant(self, broker: Broker, seed: _Seed, holder: str | None, ttl: float) -> None:
        """The coordinator forgot the generation (a new actor, a restarted Redis): plant
        it again from the master's own state; results collected are not asked for again."""
        if holder not in (None, self.owner):
            raise SamplerError(
                f"{type(self).__name__}: lost generation {seed.t} to another master "
                f"({holder}), which took the coordinator while it did not answer; "
                "completed generations are in the database")
        logger.warning("generation %d: the coordinator forgot it (restarted or replaced); "
                       "planting it again with %d ranges not yet returned", seed.t,
                       len(seed.outstanding))
        self._plant(broker, seed, ttl)

    def _recover(self, broker: Broker, seed: _Seed, ttl: float, error: BrokerError) -> None:
        """Reach a coordinator again within ``wait_for_workers`` seconds and make sure it
        runs ``seed``'s generation; a :class:`SamplerError` if none can be had."""
        logger.warning("generation %d: %s; looking for a coordinator for up to %.0f s",
                       seed.t, error, self.wait_for_workers)
        deadline = time.monotonic() + self.wait_for_workers
        while True:
            try:
                broker.reconnect()
                status = broker.status(per_worker=False)
                if not self._runs(status, seed):
                    self._replant(broker, seed, status["owner"], ttl)
                logger.warning("generation %d: the coordinator answers again", seed.t)
                return
            except (BrokerUnreachable, CoordinatorNotFound) as later:
                error = later
            if time.monotonic() > deadline:
                raise SamplerError(
                    f"{type(self).__name__}: no coordinator could be reached for "
                    f"{self.wait_for_workers:.0f} s in generation {seed.t} ({error}); "
                    "completed generations are in the database: go on with "
                    "`dask-abc resume` once the coordinator is back") from error
            time.sleep(0.5)

    def _acquire(self, broker: Broker, ttl: float) -> None:
        """Claim the coordinator; a claim left by a master that died on this host (a
        killed run being resumed) is taken over at once instead of after its TTL."""
        try:
            broker.acquire(self.owner, ttl)
        except BrokerBusy:
            holder = broker.status()["owner"]
            if not _dead_master_on_this_host(holder):
                raise
            logger.warning("taking over the coordinator from %s, which has died", holder)
            broker.release(holder)
            broker.acquire(self.owner, ttl)

    def _no_workers(self, spec, collector, waited: float) -> SamplerError:
        return SamplerError(
            f"{type(self).__name__}: no worker has connected for {waited:.0f} s in generation "
            f"{spec.t} ({collector.n_accepted}/{collector.n} accepted); start workers with "
            f"`{self.worker_command}`, or raise wait_for_workers")

    def stop(self) -> None:
        """Give up the coordinator (workers stay, idle, for the next run)."""
        if self._broker is not None:
            try:
                self._broker.release(self.owner)
            except BrokerUnreachable as error:  # nothing to give up
                logger.warning("could not release the coordinator: %s", error)


def _dead_master_on_this_host(owner: str | None) -> bool:
    """Whether ``owner`` (a :class:`BrokerSampler` owner string) names a process of this
    host that no longer exists."""
    import psutil

    match = re.match(r"master (\S+) PID (\d+) ", owner or "")
    return bool(match and match[1] == socket.gethostname()
                and not psutil.pid_exists(int(match[2])))


class ActorEvalParallelSampler(BrokerSampler):
    """Eval-parallel sampling by standalone workers, coordinated by a Dask Actor.

    The coordinator is an actor on the Dask cluster, published under
    ``abc.broker.name``; workers need only the scheduler's address:
    ``dask-abc-worker --scheduler ADDRESS``. Nothing else to run.

    Parameters
    ----------
    client : distributed.Client, optional
        Default: the current default client.
    name : str, optional
        The coordinator's name (one per concurrent analysis on a cluster).
    **kwargs
        See :class:`BrokerSampler`.

    Examples
    --------
    With a scheduler running (not run as a doctest)::

        sampler = ActorEvalParallelSampler(Client("tcp://scheduler:8786"))
    """

    def __init__(self, client=None, name: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.client = client
        self.name = name

    @property
    def worker_command(self) -> str:
        address = self.client.scheduler.address if self.client is not None else "ADDRESS"
        return f"dask-abc-worker --scheduler {address}"

    def _connect(self) -> Broker:
        if self.client is None:
            from distributed import Client

            try:
                self.client = Client.current()
            except ValueError:
                raise SamplerError(
                    "ActorEvalParallelSampler needs a Dask client: the coordinator is an "
                    "actor on the cluster (Client(scheduler_address), or a LocalCluster)"
                ) from None
        return ActorBroker(self.client, self.name, create=True)

    def dashboard_client(self):
        """The coordinator's client, else the current one."""
        return self.client if self.client is not None else super().dashboard_client()

    def __repr__(self) -> str:
        return f"ActorEvalParallelSampler(batch_size={self.batch_size!r})"


class RedisEvalParallelSampler(BrokerSampler):
    """Eval-parallel sampling by standalone workers, coordinated through a Redis server.

    Workers: ``dask-abc-worker --redis-host HOST --redis-port PORT
    [--redis-password PW]``.

    Parameters
    ----------
    host, port, password
        The Redis server (``password`` as in its ``requirepass``).
    batch_size : int, "auto", "static", "dynamic" or RangePolicy
        Evaluations per range.
    look_ahead : bool
        Accepted for pyABC; ranges of the next generation are not sampled ahead.
    name : str, optional
        Key prefix of the coordinator (one per concurrent analysis on a server).
    **kwargs
        See :class:`BrokerSampler`.

    Examples
    --------
    >>> sampler = RedisEvalParallelSampler(host="127.0.0.1", port=6379)
    """

    def __init__(self, host: str = "localhost", port: int = 6379, password: str | None = None,
                 batch_size="auto", look_ahead: bool = False, name: str | None = None,
                 **kwargs):
        super().__init__(batch_size=batch_size, **kwargs)
        self.host, self.port, self.password = host, int(port), password
        self.look_ahead = look_ahead
        self.name = name

    @property
    def worker_command(self) -> str:
        return f"dask-abc-worker --redis-host {self.host} --redis-port {self.port}"

    def _connect(self) -> Broker:
        return RedisBroker(self.host, self.port, self.password, prefix=self.name)

    def __repr__(self) -> str:
        return f"RedisEvalParallelSampler(host={self.host!r}, port={self.port})"
