"""Evaluate index ranges as Dask tasks on any Dask cluster."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import time

import numpy as np

from .. import config
from ..generation import BatchResult, GenerationSpec
from ..observers import GenerationObserver
from ..sample import SampleCollector
from . import payload
from .base import Sampler, SamplerError, nr_cores_available
from .elastic import ElasticCluster
from .policy import Auto, RangePolicy, policy_for
from .range_key import RangeKey
from .scheduler_link import SchedulerLink, SchedulerLost
from .triage import Culprit, KilledWorkerTriage

logger = logging.getLogger("dask_abc")


def _is_killed_worker(error) -> bool:
    from distributed import KilledWorker

    return isinstance(error, KilledWorker)


def _is_cancelled(error) -> bool:
    """A cancellation: Dask's own (``Client.cancel``, a lost scheduler connection) or the
    event loop's."""
    return isinstance(error, (concurrent.futures.CancelledError, asyncio.CancelledError))


def _in_background(client, call) -> None:
    """Run a coroutine of the client's API on its event loop without waiting for it."""

    async def quietly():
        try:
            await call
        except Exception as error:  # the next generation does not depend on it
            logger.debug("background call of the Dask sampler failed: %r", error)

    client.loop.add_callback(quietly)


#: What :class:`_Outcomes` reports first for a range whose task finished, before its result.
FINISHED = "finished"


class _Outcomes:
    """The outcome of every range future, once each, in the order they resolve.

    Everything runs on the client's event loop, entered once per batch of new
    futures (not once per future): ``distributed.as_completed`` watches them,
    and the results of the futures finished at a moment are fetched in one
    ``Client.gather`` (which also waits for Dask to recompute a result lost with
    its worker before it arrived). A future that failed or was cancelled is
    reported with its error, as is a lost result whose recomputation failed
    (``as_completed(with_results=True)`` never yields such a future, and a run
    hung).

    A finished task's slot is free before its result has travelled, so
    ``(FINISHED, future, None)`` is reported first, from the scheduler's notice:
    the sampler refills the slot without waiting for the fetch.
    """

    def __init__(self, client):
        self._client = client
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._completed = None  # distributed.as_completed, made on the event loop
        self._watching = False
        self._to_fetch: list = []
        self._fetching = False
        self._closed = False

    def close(self) -> None:
        """The generation is over: outcomes from now on are dropped, not fetched."""
        self._closed = True

    def track(self, futures) -> None:
        self._client.loop.add_callback(self._track, list(futures))

    def _track(self, futures) -> None:
        from distributed import as_completed

        if self._completed is None:
            self._completed = as_completed(loop=self._client.loop)
        self._completed.update(futures)  # on the loop: no wake-up per future
        if not self._watching:
            self._watching = True
            self._client.loop.add_callback(self._watch)

    async def _watch(self) -> None:
        try:
            async for future in self._completed:  # finished, failed or cancelled
                if self._closed:
                    continue
                self._queue.put((FINISHED, future, None))
                self._to_fetch.append(future)
                if not self._fetching:
                    self._fetching = True
                    self._client.loop.add_callback(self._fetch)
        finally:
            self._watching = False  # nothing left to watch; track() starts again

    async def _fetch(self) -> None:
        """Gather what finished meanwhile, in one request, until nothing is left."""
        try:
            while self._to_fetch:
                batch, self._to_fetch = self._to_fetch, []
                done = {f.key: f for f in batch if f.status == "finished"}
                results = {}
                if done:
                    try:
                        results = await self._client.gather(done, errors="skip",
                                                             asynchronous=True)
                    except Exception as error:  # the client closed, say: each on its own
                        logger.debug("gathering %d ranges failed: %r", len(done), error)
                for future in batch:
                    if future.status == "finished" and future.key in results:
                        self._queue.put((future, results[future.key], None))
                    else:
                        await self._settle(future)
        finally:
            self._fetching = False

    async def _settle(self, future) -> None:
        """The outcome of a future that failed, was cancelled or lost its result."""
        try:
            outcome = (future, await self._client.gather(future, asynchronous=True), None)
        except (Exception, asyncio.CancelledError) as error:  # the task's, or a cancellation
            outcome = (future, None, error)
        self._queue.put(outcome)

    def drain(self, idle=None) -> list[tuple]:
        """Every outcome that has arrived, waiting for the first (see :meth:`next`)."""
        outcomes = [self.next(idle=idle)]
        while True:
            try:
                outcomes.append(self._queue.get_nowait())
            except queue.Empty:
                return outcomes

    def next(self, timeout: float | None = None, idle=None) -> tuple:
        """``(future, result, error)`` of the next future to resolve (error is None on
        success); :class:`queue.Empty` after ``timeout`` seconds, if given. ``idle()`` is
        called about every second while nothing resolves; what it raises ends the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            try:  # in steps, so that the main thread stays interruptible
                return self._queue.get(timeout=max(step, 0.0))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            if idle is not None:
                idle()


def _run_on_workers(client, function, *args, workers=None) -> None:
    """``Client.run`` in the background; a worker that fails to answer is skipped."""
    _in_background(client, client.run(function, *args, workers=workers, on_error="ignore",
                                      asynchronous=True))


def evaluate_range(token: str, start: int, count: int, data: bytes | None = None,
                   epoch: int = 0) -> BatchResult | payload.Missing | payload.Paused | None:
    """One task: evaluate ``[start, start + count)`` of the generation ``token``.

    The worker gets the spec from :func:`~dask_abc.sampler.payload.install`, sent
    beside the tasks; a worker that joined later answers
    :class:`~dask_abc.sampler.payload.Missing` with its address, unless the task
    carries the spec itself (``data``). A range whose ``epoch`` is paused
    (:func:`~dask_abc.sampler.payload.pause`) answers
    :class:`~dask_abc.sampler.payload.Paused`.
    """
    if payload.GENERATIONS.paused(token, epoch):
        return payload.Paused()
    result = payload.evaluate(token, data, start, count,
                              wait=float(config.get("dask.spec-wait-seconds")))
    if isinstance(result, payload.Missing):
        from distributed import get_worker

        result.address = get_worker().address
    return result


class DaskDistributedSampler(Sampler):
    """Evaluate ranges of indices as Dask tasks, sized by a STAT↔DYN policy.

    The generation spec is broadcast once per generation to the live workers
    (``Client.run``), which unpickle it once; range tasks carry only its token,
    a start index and a count, and have no dependency, so the scheduler
    spreads them freely. A worker that joined after the broadcast answers that
    it lacks the spec and is sent it alone. With ``batch_size="auto"`` the
    :class:`~dask_abc.sampler.policy.Auto` policy sizes ranges to
    about ``abc.dask.target-task-seconds`` of work and shrinks them towards the
    end of a generation. The number of tasks in flight follows the live number
    of worker threads, so ``cluster.adapt()`` works. Tasks of a worker that
    dies are recomputed elsewhere by Dask, with identical results (the index
    rule); so are results lost with their worker before they were gathered.
    When the generation is complete, queued ranges are cancelled and running
    ones stop before their next simulation.

    Dask ends a task in ``KilledWorker`` when it was on
    ``distributed.scheduler.allowed-failures`` + 1 workers that died, whether it
    ran there or only waited in the worker's queue. Such a range is only a
    suspect, and the generation goes into quarantine: no new ranges; the
    ranges submitted so far that have not started yet return at once without
    evaluating (they are handed out again afterwards); once every range has
    returned, each suspect is evaluated alone, lowest index first (nothing
    else of the generation runs, so if its worker dies, it was running there).
    A suspect that completes alone is used like any other result; one that
    kills workers alone is split in halves, each evaluated alone in turn. A
    single index that ends in ``KilledWorker`` alone
    ``abc.dask.killed-worker-retries`` + 1 times is a culprit: the run stops
    with a :class:`SamplerError` naming its parameters once every index below
    it has been evaluated without completing the population (so exactly when
    a single-core run would evaluate it); a crashing index beyond the
    population's last one does not stop the run
    (:class:`~dask_abc.sampler.triage.KilledWorkerTriage`).

    When the client loses the scheduler itself, Dask cancels every task and
    the client tries to reconnect to the same address; the sampler hands the
    ranges in flight out again and waits up to ``scheduler_reconnect_seconds``.
    A scheduler back at that address (with workers) in time lets the generation
    go on, identical; otherwise the run stops with a :class:`SamplerError`
    naming the scheduler, the generation and the ``dask-abc resume`` command
    (:mod:`~dask_abc.sampler.scheduler_link`); the completed generations are
    in the database.

    Parameters
    ----------
    dask_client : distributed.Client, optional
        The client; default the current default client, else an embedded
        ``LocalCluster`` (processes, one thread each, on 127.0.0.1) that
        :meth:`stop` closes. ``client`` is accepted as an alias.
    client_max_jobs : float
        At most this many tasks in flight.
    default_pickle : bool
        Accepted for pyABC; the spec is always cloudpickled once per generation.
    batch_size : int, "auto", "static", "dynamic" or RangePolicy
        Evaluations per task, or a policy that sizes them
        (:func:`~dask_abc.sampler.policy.policy_for`).
    scheduler_reconnect_seconds : float, optional
        The longest wait for a lost scheduler to come back; default
        ``abc.dask.scheduler-reconnect-seconds``.

    Examples
    --------
    >>> sampler = DaskDistributedSampler(batch_size="auto")
    """

    def __init__(self, dask_client=None, client_max_jobs: float = np.inf,
                 default_pickle: bool = True, batch_size: int | str | RangePolicy = "auto", *,
                 client=None, scheduler_reconnect_seconds: float | None = None):
        super().__init__()
        if dask_client is not None and client is not None and dask_client is not client:
            raise ValueError("DaskDistributedSampler: give dask_client or client, not both")
        if scheduler_reconnect_seconds is None:
            scheduler_reconnect_seconds = float(config.get("dask.scheduler-reconnect-seconds"))
        if not scheduler_reconnect_seconds >= 0:
            raise ValueError("DaskDistributedSampler: scheduler_reconnect_seconds must be "
                             f">= 0, not {scheduler_reconnect_seconds!r}")
        self.scheduler_reconnect_seconds = float(scheduler_reconnect_seconds)
        self._run_name: str | None = None  # named in the error that says how to resume
        self.policy = policy_for(batch_size, section="dask")
        self.batch_size = batch_size
        self.client_max_jobs = client_max_jobs
        self.default_pickle = default_pickle
        self._client = dask_client if dask_client is not None else client
        self._own_cluster = None
        self._own_client = None
        self._elastic = None
        self._link = None

    @property
    def client(self):
        """The client in use (starts the embedded cluster when there is none)."""
        if self._client is not None:
            return self._client
        if self._own_client is None:
            from distributed import Client, LocalCluster

            try:
                return Client.current()
            except ValueError:  # no client: start one
                pass
            self._own_cluster = LocalCluster(
                n_workers=nr_cores_available(), threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0")
            self._own_client = Client(self._own_cluster)
            logger.info("started a LocalCluster with %d workers, dashboard %s",
                        nr_cores_available(), self._own_client.dashboard_link)
        return self._own_client

    def dashboard_client(self):
        """The client in use: the run's progress goes to its dashboard."""
        return self.client

    def observers(self, run: str) -> list[GenerationObserver]:
        """Those of :class:`Sampler`; ``run`` is also remembered for the ``dask-abc resume``
        command that a lost scheduler's error names."""
        self._run_name = run
        return super().observers(run)

    def _elastic_for(self, client) -> ElasticCluster:
        if self._elastic is None or self._elastic.client is not client:
            self._elastic = ElasticCluster(client)
        return self._elastic

    def _link_for(self, client) -> SchedulerLink:
        """One per client, kept across generations (it names the scheduler also once the
        client has closed, and a wait goes on into the next generation)."""
        if self._link is None or self._link.client is not client:
            self._link = SchedulerLink(client, self.scheduler_reconnect_seconds)
        return self._link

    def _window(self, client) -> tuple[int, int]:
        """``(ranges in flight, slots)``: each slot's range and ``pipeline-depth`` more
        (``fixed-batch-pipeline-depth`` with a fixed ``batch_size``); at least one, so
        that an adaptive cluster at zero workers sees work. With "auto", the work a
        generation almost surely needs is queued at once beyond this (see
        :class:`~dask_abc.sampler.policy.Auto`): a slot that finishes
        takes its next range from the scheduler's queue without a round trip to the
        master, and an adaptive cluster sees the demand.
        """
        slots = max(self._elastic_for(client).planned_slots(), 1)
        key = "pipeline-depth" if isinstance(self.policy, Auto) else "fixed-batch-pipeline-depth"
        window = slots * (1 + int(config.get(f"dask.{key}")))
        return min(window, self.client_max_jobs), slots

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        client = self.client
        if spec.global_rng_models != ():  # some model may draw from the global state
            self._warn_if_threads_share_global_state(
                spec, self._elastic_for(client).threads_per_process(), "a Dask worker process")
        _DaskGeneration(self, client, spec, collector).run()

    @staticmethod
    def _task_failed(culprit: Culprit, spec: GenerationSpec, collector) -> SamplerError:
        """The error naming the index (and its parameter) that kills workers."""
        (j,), theta = spec.propose(np.array([culprit.index]))
        parameter = f"model {spec.models[int(j)].name!r} {dict(spec.parameter(j, theta[0]))}"
        return SamplerError(
            f"DaskDistributedSampler: evaluating index {culprit.index} of generation {spec.t} "
            f"killed workers whenever it ran alone ({culprit.times}x, {culprit.error}); the "
            f"simulator probably crashes for this parameter:\n  {culprit.index}: {parameter}"
            f"\ngeneration incomplete at {collector.n_accepted}/{collector.n} accepted")

    def stop(self) -> None:
        """Close the embedded cluster, if this sampler started one."""
        if self._own_client is not None:
            self._own_client.close()
            self._own_cluster.close()
            self._own_client = self._own_cluster = None

    def __repr__(self) -> str:
        return f"DaskDistributedSampler(batch_size={self.batch_size!r})"





class _DaskGeneration:
    """One generation on Dask: range tasks in flight, their outcomes as they arrive, the
    quarantine of ranges that ended in ``KilledWorker`` and the wait for a lost scheduler
    (see :class:`DaskDistributedSampler`)."""

    def __init__(self, sampler: DaskDistributedSampler, client, spec: GenerationSpec,
                 collector: SampleCollector):
        self.sampler, self.client, self.spec = sampler, client, spec
        self.collector = collector
        self.policy = sampler.policy
        self.shipped = payload.SpecPayload(spec, keep=False)  # only workers evaluate
        self.outcomes = _Outcomes(client)
        self.link = sampler._link_for(client)
        self.in_flight: dict = {}  # future -> (start, count, evaluated alone)
        self.finished: set = set()  # futures in flight whose task is done (result on its way)
        self.attempts: dict[int, int] = {}  # start -> submissions of a range from there
        self.handed_out = 0
        self.epoch = 0  # of the ranges submitted now; a quarantine pauses the earlier ones
        self.triage = KilledWorkerTriage(int(config.get("dask.killed-worker-retries")), spec.t)

    def window(self) -> tuple[int, int]:
        return self.sampler._window(self.client)

    def idle(self) -> None:
        """While no range returns: the scheduler still there (or back in time; else
        :class:`SchedulerLost`), and the cluster's size watched (a lost job is replaced)."""
        if self.link.connected():
            try:
                self.window()
            except Exception as error:  # only bookkeeping; the futures decide
                logger.debug("the Dask sampler's idle check failed: %r", error)

    def submit(self, ranges, with_data: bool = False, alone: bool = False) -> None:
        """One message to the scheduler for all ``ranges``."""
        token, starts, counts, keys = self.shipped.token, [], [], []
        for start, count in ranges:
            self.attempts[start] = self.attempts.get(start, 0) + 1
            starts.append(start)
            counts.append(count)
            # the count in the key lets the dashboard count evaluations per worker
            keys.append(str(RangeKey(token, start, count, self.attempts[start])))
        extra = [[self.shipped.data] * len(starts)] if with_data else []
        new = self.client.map(evaluate_range, [token] * len(starts), starts, counts, *extra,
                              key=keys, pure=False, epoch=self.epoch)
        for future, start, count in zip(new, starts, counts):
            self.in_flight[future] = (start, count, alone)
        self.outcomes.track(new)

    def top_up(self) -> None:
        window, slots = self.window()
        running = len(self.in_flight) - len(self.finished)
        if running >= window:
            return
        new = self.policy.ranges(self.collector, self.handed_out, running, window, slots)
        if new:
            self.handed_out = new[-1][0] + new[-1][1]
            # a generation's first ranges in a few messages: the scheduler dispatches the
            # first while it reads the next
            step = max(slots, 64)
            for first in range(0, len(new), step):
                self.submit(new[first:first + step])

    def run(self) -> None:
        client = self.client
        try:
            self._run()
        except SchedulerLost as lost:
            raise self.lost(lost) from None
        except Exception as error:  # a closed client's, say, once it lost the scheduler
            if client.status == "running":
                raise
            raise self.lost(self.link.lost()) from error
        finally:
            # without waiting: ranges still queued are dropped, running ones stop early
            self.outcomes.close()
            if self.in_flight:
                _in_background(client, client.cancel(list(self.in_flight), asynchronous=True))
            _run_on_workers(client, payload.finish, self.shipped.token)

    def _run(self) -> None:
        spec, collector = self.spec, self.collector
        # every live worker unpickles the spec once; its ranges wait for it
        _run_on_workers(self.client, payload.install, self.shipped.token, self.shipped.data)
        self.top_up()
        while self.in_flight:
            for outcome in self.outcomes.drain(idle=self.idle):
                if outcome[0] == FINISHED:
                    if outcome[1] in self.in_flight:
                        self.finished.add(outcome[1])
                    continue
                self.handle(*outcome)
                if collector.done:
                    return
            # in quarantine: a suspect alone once all ranges have returned, then the rest
            ranges, alone = self.triage.next_ranges(len(self.in_flight))
            if ranges:
                self.submit(ranges, alone=alone)
            if self.link.connected() and self.triage.open:
                self.top_up()
        culprit = self.triage.blame(collector.done)
        if culprit is not None:
            # every index below the culprit is evaluated, the population is incomplete
            raise self.sampler._task_failed(culprit, spec, collector)

    def lost(self, lost: SchedulerLost) -> SamplerError:
        return lost.sampler_error(self.spec.t, self.sampler._run_name,
                                  self.collector.n_accepted, self.collector.n)

    def handle(self, future, batch, error) -> None:
        """Use one range's outcome: a result, a range to hand out again, or a suspect."""
        start, count, alone = self.in_flight.pop(future)
        self.finished.discard(future)
        if error is not None and not _is_cancelled(error):
            if not _is_killed_worker(error):
                raise error
            if self.triage.killed(start, count, alone, error):
                # ranges submitted so far that have not started return unevaluated
                _run_on_workers(self.client, payload.pause, self.shipped.token, self.epoch)
                self.epoch += 1
        elif error is not None or isinstance(batch, (payload.Missing, payload.Paused)):
            # cancelled by someone else (Client.cancel, a reconnect), paused, or on a
            # worker that joined after the broadcast: the range is handed out again
            if isinstance(batch, payload.Missing) and batch.address is not None:
                _run_on_workers(self.client, payload.install, self.shipped.token,
                                self.shipped.data, workers=[batch.address])
            if not self.triage.defer(start, count, alone):
                # a range that met a worker without the spec twice takes it along
                self.submit([(start, count)], with_data=self.attempts[start] > 1, alone=alone)
        else:
            self.collector.add(batch)
            self.policy.observe(batch)
