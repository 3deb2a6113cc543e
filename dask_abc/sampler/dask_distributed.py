"""Evaluate index ranges as Dask tasks on any Dask cluster."""

from __future__ import annotations

import asyncio
import heapq
import logging
import queue
import time
import uuid
from collections import OrderedDict

import cloudpickle
import numpy as np

from .. import config
from ..generation import BatchResult, GenerationSpec
from ..sample import SampleCollector
from . import payload
from .base import Sampler, SamplerError, nr_cores_available
from .controller import BatchController
from .elastic import ElasticCluster

logger = logging.getLogger("dask_abc")

#: Task keys of ranges: ``abc-range-{token}-{start}-{count}-{attempt}``.
RANGE_KEY = "abc-range"


def _is_killed_worker(error) -> bool:
    from distributed import KilledWorker

    return isinstance(error, KilledWorker)


def _in_background(client, call) -> None:
    """Run a coroutine of the client's API on its event loop without waiting for it."""

    async def quietly():
        try:
            await call
        except Exception as error:  # the next generation does not depend on it
            logger.debug("background call of the Dask sampler failed: %r", error)

    client.loop.add_callback(quietly)


class _Outcomes:
    """The outcome of every range future, once each, in the order they resolve.

    Each future's result is gathered on the client's event loop as soon as its
    task has finished (the same single gather per task, batched by the client,
    as ``as_completed(with_results=True)``). ``Client.gather`` waits for Dask
    to recompute a result lost with its worker before it arrived, and raises
    the error of that recomputation or a cancellation; both are reported here
    like any other outcome. (``as_completed`` does not survive that error: it
    never yields the future, and the run hangs.)
    """

    def __init__(self, client):
        self._client = client
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def track(self, futures) -> None:
        for future in futures:
            self._client.loop.add_callback(self._gather, future)

    async def _gather(self, future) -> None:
        try:
            outcome = (future, await self._client.gather(future, asynchronous=True), None)
        except (Exception, asyncio.CancelledError) as error:  # the task's, or a cancellation
            outcome = (future, None, error)
        self._queue.put(outcome)

    def next(self, timeout: float | None = None, idle=None) -> tuple:
        """``(future, result, error)`` of the next future to resolve (error is None on
        success); :class:`queue.Empty` after ``timeout`` seconds, if given. ``idle()`` is
        called about every second while nothing resolves."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            try:  # in steps, so that the main thread stays interruptible
                return self._queue.get(timeout=max(step, 0.0))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            if idle is not None:
                try:
                    idle()
                except Exception as error:  # only bookkeeping; the futures decide
                    logger.debug("the Dask sampler's idle check failed: %r", error)


def _run_on_workers(client, function, *args, workers=None) -> None:
    """``Client.run`` in the background; a worker that fails to answer is skipped."""
    _in_background(client, client.run(function, *args, workers=workers, on_error="ignore",
                                      asynchronous=True))


_PAUSED: OrderedDict[str, int] = OrderedDict()  # token -> ranges up to this epoch pause
_PAUSED_SIZE = 64


class Paused:
    """A range that found its generation paused when it started; it evaluated nothing."""

    def __repr__(self) -> str:
        return "Paused()"


async def pause(token: str, epoch: int) -> None:
    """Ranges of generation ``token`` submitted in ``epoch`` or before that start from now
    on return :class:`Paused` (run on every worker by ``Client.run``)."""
    _PAUSED[token] = max(epoch, _PAUSED.get(token, -1))
    _PAUSED.move_to_end(token)
    while len(_PAUSED) > _PAUSED_SIZE:
        _PAUSED.popitem(last=False)


def evaluate_range(token: str, start: int, count: int, data: bytes | None = None,
                   epoch: int = 0) -> BatchResult | payload.Missing | Paused | None:
    """One task: evaluate ``[start, start + count)`` of the generation ``token``.

    The worker gets the spec from :func:`~dask_abc.sampler.payload.install`, sent
    beside the tasks; a worker that joined later answers
    :class:`~dask_abc.sampler.payload.Missing` with its address, unless the task
    carries the spec itself (``data``). A range whose ``epoch`` is paused
    (:func:`pause`) answers :class:`Paused`.
    """
    if _PAUSED.get(token, -1) >= epoch:
        return Paused()
    result = payload.evaluate(token, data, start, count,
                              wait=float(config.get("dask.spec-wait-seconds")))
    if isinstance(result, payload.Missing):
        from distributed import get_worker

        result.address = get_worker().address
    return result


class DaskDistributedSampler(Sampler):
    """Evaluate ranges of indices as Dask tasks, sized by a STAT↔DYN controller.

    The generation spec is broadcast once per generation to the live workers
    (``Client.run``), which unpickle it once; range tasks carry only its token,
    a start index and a count, and have no dependency, so the scheduler
    spreads them freely. A worker that joined after the broadcast answers that
    it lacks the spec and is sent it alone. With ``batch_size="auto"`` a
    :class:`~dask_abc.sampler.controller.BatchController` sizes ranges to
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
    population's last one does not stop the run.

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
    batch_size : int or "auto"
        Evaluations per task.

    Examples
    --------
    >>> sampler = DaskDistributedSampler(batch_size="auto")
    """

    def __init__(self, dask_client=None, client_max_jobs: float = np.inf,
                 default_pickle: bool = True, batch_size="auto", *, client=None):
        super().__init__()
        if dask_client is not None and client is not None and dask_client is not client:
            raise ValueError("DaskDistributedSampler: give dask_client or client, not both")
        self.controller = BatchController(batch_size, prefix="dask")
        self.batch_size = batch_size
        self.client_max_jobs = client_max_jobs
        self.default_pickle = default_pickle
        self._client = dask_client if dask_client is not None else client
        self._own_cluster = None
        self._own_client = None
        self._elastic = None

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

    def _window(self, client, collector: SampleCollector, hint) -> int:
        """Tasks in flight: a pipeline per live worker thread (at least one task, so that
        an adaptive cluster at zero workers sees work), or on an adaptive cluster enough
        of the expected work for Dask to ask for the workers it needs."""
        if self._elastic is None or self._elastic.client is not client:
            self._elastic = ElasticCluster(client)
        key = "pipeline-depth" if self.batch_size == "auto" else "fixed-batch-pipeline-depth"
        window = max(self._elastic.threads(), 1) * (1 + int(config.get(f"dask.{key}")))
        if self.batch_size == "auto":
            queued = self.controller.queued_tasks(collector, hint,
                                                  self._elastic.queued_work_seconds())
            window = max(window, queued)
        return int(min(window, self.client_max_jobs))

    def _run(self, spec: GenerationSpec, collector: SampleCollector, acceptance_rate_hint):
        client = self.client
        token = uuid.uuid4().hex
        data = cloudpickle.dumps(spec)
        # every live worker unpickles the spec once; its ranges wait for it
        _run_on_workers(client, payload.install, token, data)
        outcomes = _Outcomes(client)
        in_flight: dict = {}  # future -> (start, count, evaluated alone)
        attempts: dict[int, int] = {}  # start -> submissions of a range from there
        handed_out = 0
        epoch = 0  # of the ranges submitted now; a quarantine pauses the earlier ones
        quarantine = False
        suspects: list[tuple[int, int]] = []  # heap of ranges that ended in KilledWorker
        deferred: list[tuple[int, int]] = []  # ranges paused by the quarantine
        killed_alone: dict[int, int] = {}  # index -> KilledWorker when evaluated alone
        culprit = None  # the lowest index that killed workers alone too often
        culprit_error = None
        retries = int(config.get("dask.killed-worker-retries"))

        def submit(ranges, with_data: bool = False, alone: bool = False) -> None:
            starts, counts, keys = [], [], []
            for start, count in ranges:
                attempts[start] = attempts.get(start, 0) + 1
                starts.append(start)
                counts.append(count)
                # the count in the key lets the dashboard count evaluations per worker
                keys.append(f"{RANGE_KEY}-{token}-{start}-{count}-{attempts[start]}")
            extra = [[data] * len(starts)] if with_data else []
            # one message to the scheduler for all new ranges
            new = client.map(evaluate_range, [token] * len(starts), starts, counts, *extra,
                             key=keys, pure=False, epoch=epoch)
            for future, start, count in zip(new, starts, counts):
                in_flight[future] = (start, count, alone)
            outcomes.track(new)

        def top_up() -> None:
            nonlocal handed_out
            new = self.controller.ranges(collector, handed_out, len(in_flight),
                                         self._window(client, collector, acceptance_rate_hint),
                                         acceptance_rate_hint)
            if new:
                submit(new)
                handed_out = new[-1][0] + new[-1][1]

        try:
            top_up()
            while in_flight:
                # while waiting, the cluster's size is still watched (a lost job is replaced)
                future, batch, error = outcomes.next(
                    idle=lambda: self._window(client, collector, acceptance_rate_hint))
                start, count, alone = in_flight.pop(future)
                if error is not None and not isinstance(error, asyncio.CancelledError):
                    if not _is_killed_worker(error):
                        raise error
                    if not alone:  # maybe it only waited on a worker that another range killed
                        heapq.heappush(suspects, (start, count))
                        if not quarantine:
                            quarantine = True
                            logger.info("generation %d: indices %d..%d ended in %r; new ranges "
                                        "wait until the suspects have been evaluated alone",
                                        spec.t, start, start + count - 1, error)
                            _run_on_workers(client, pause, token, epoch)
                            epoch += 1
                    elif count > 1:  # it kills workers alone: which of its indices does?
                        half = count // 2
                        heapq.heappush(suspects, (start, half))
                        heapq.heappush(suspects, (start + half, count - half))
                    else:
                        killed_alone[start] = killed_alone.get(start, 0) + 1
                        if killed_alone[start] <= retries:
                            heapq.heappush(suspects, (start, count))
                        elif culprit is None or start < culprit:
                            culprit, culprit_error = start, error
                            logger.info("generation %d: index %d killed workers each time it "
                                        "ran alone", spec.t, start)
                elif error is not None or isinstance(batch, (payload.Missing, Paused)):
                    # cancelled by someone else (Client.cancel, a reconnect), paused, or on a
                    # worker that joined after the broadcast: the range is handed out again
                    if isinstance(batch, payload.Missing) and batch.address is not None:
                        _run_on_workers(client, payload.install, token, data,
                                        workers=[batch.address])
                    if quarantine and not alone:
                        deferred.append((start, count))
                    else:
                        # a range that met a worker without the spec twice takes it along
                        submit([(start, count)], with_data=attempts[start] > 1, alone=alone)
                else:
                    collector.add(batch)
                    self.controller.observe(batch)
                    if collector.done:
                        break
                if culprit is not None:
                    # the prefix cannot pass the culprit: only ranges below it matter
                    suspects = [r for r in suspects if r[0] < culprit]
                    heapq.heapify(suspects)
                    deferred = [r for r in deferred if r[0] < culprit]
                if quarantine:
                    if in_flight:
                        continue  # a suspect runs alone once all ranges have returned
                    if suspects:
                        submit([heapq.heappop(suspects)], alone=True)
                        continue
                    quarantine = False
                    if deferred:
                        submit(sorted(deferred))
                        deferred = []
                if culprit is None and len(in_flight) < self._window(client, collector,
                                                                     acceptance_rate_hint):
                    top_up()
            if culprit is not None and not collector.done:
                # every index below the culprit is evaluated, the population is incomplete
                raise self._task_failed(culprit_error, spec, culprit, 1, collector,
                                        times=killed_alone[culprit])
        finally:
            # without waiting: ranges still queued are dropped, running ones stop early
            if in_flight:
                _in_background(client, client.cancel(list(in_flight), asynchronous=True))
            _run_on_workers(client, payload.finish, token)

    @staticmethod
    def _task_failed(error, spec: GenerationSpec, start: int, count: int, collector,
                     times: int = 1):
        if not _is_killed_worker(error):
            return error
        shown = int(config.get("dask.report-parameters"))
        idx = np.arange(start, start + min(count, shown))
        m, theta = spec.propose(idx)
        pars = [f"{int(i)}: model {spec.models[int(j)].name!r} {dict(spec.parameter(j, row))}"
                for i, j, row in zip(idx, m, theta)]
        more = f" (first {shown} of {count})" if count > shown else ""
        where = f"index {start}" if count == 1 else f"indices {start}..{start + count - 1}"
        return SamplerError(
            f"DaskDistributedSampler: evaluating {where} of generation {spec.t} killed workers "
            f"whenever it ran alone ({times}x, {error}); the simulator probably crashes for "
            f"{'this parameter' if count == 1 else 'one of these parameters'}{more}:\n  "
            + "\n  ".join(pars)
            + f"\ngeneration incomplete at {collector.n_accepted}/{collector.n} accepted")

    def stop(self) -> None:
        """Close the embedded cluster, if this sampler started one."""
        if self._own_client is not None:
            self._own_client.close()
            self._own_cluster.close()
            self._own_client = self._own_cluster = None

    def __repr__(self) -> str:
        return f"DaskDistributedSampler(batch_size={self.batch_size!r})"



