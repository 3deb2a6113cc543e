"""Evaluate index ranges as Dask tasks on any Dask cluster."""

from __future__ import annotations

import logging
import time
import uuid

import cloudpickle
import numpy as np

from .. import config
from ..generation import BatchResult, GenerationSpec
from ..sample import SampleCollector
from . import payload
from .base import Sampler, SamplerError, nr_cores_available
from .controller import BatchController

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


def _run_on_workers(client, function, *args, workers=None) -> None:
    """``Client.run`` in the background; a worker that fails to answer is skipped."""
    _in_background(client, client.run(function, *args, workers=workers, on_error="ignore",
                                      asynchronous=True))


def evaluate_range(token: str, start: int, count: int, data: bytes | None = None
                   ) -> BatchResult | payload.Missing | None:
    """One task: evaluate ``[start, start + count)`` of the generation ``token``.

    The worker gets the spec from :func:`~dask_abc.sampler.payload.install`, sent
    beside the tasks; a worker that joined later answers
    :class:`~dask_abc.sampler.payload.Missing` with its address, unless the task
    carries the spec itself (``data``).
    """
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
    rule). When the generation is complete, queued ranges are cancelled and
    running ones stop before their next simulation.

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
        self._threads_known = 0
        self._threads_seen_at = -np.inf

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

    def _threads(self, client) -> int:
        """Worker threads in the cluster, asked at most every ``abc.dask.worker-poll-interval``."""
        now = time.monotonic()
        if now - self._threads_seen_at > float(config.get("dask.worker-poll-interval")):
            self._threads_known = client.scheduler_info(n_workers=0).get("total_threads", 0)
            self._threads_seen_at = now
        return self._threads_known

    def _window(self, client) -> int:
        """Tasks in flight: a pipeline per live worker thread (at least one task, so that
        an adaptive cluster at zero workers sees work)."""
        key = "pipeline-depth" if self.batch_size == "auto" else "fixed-batch-pipeline-depth"
        window = max(self._threads(client), 1) * (1 + int(config.get(f"dask.{key}")))
        return int(min(window, self.client_max_jobs))

    def _run(self, spec: GenerationSpec, collector: SampleCollector, acceptance_rate_hint):
        from distributed import as_completed

        client = self.client
        token = uuid.uuid4().hex
        data = cloudpickle.dumps(spec)
        # every live worker unpickles the spec once; its ranges wait for it
        _run_on_workers(client, payload.install, token, data)
        in_flight: dict = {}
        attempts: dict[int, int] = {}  # start -> submissions of its range
        handed_out = 0
        futures = as_completed(loop=client.loop, with_results=True, raise_errors=False)

        def submit(starts: list[int], counts: list[int], with_data: bool = False) -> None:
            keys = []
            for start, count in zip(starts, counts):
                attempts[start] = attempts.get(start, 0) + 1
                # the count in the key lets the dashboard count evaluations per worker
                keys.append(f"{RANGE_KEY}-{token}-{start}-{count}-{attempts[start]}")
            extra = [[data] * len(starts)] if with_data else []
            # one message to the scheduler for all new ranges
            new = client.map(evaluate_range, [token] * len(starts), starts, counts, *extra,
                             key=keys, pure=False)
            for future, start, count in zip(new, starts, counts):
                in_flight[future] = (start, count)
            futures.update(new)

        def top_up() -> None:
            nonlocal handed_out
            new = self.controller.ranges(collector, handed_out, len(in_flight),
                                         self._window(client), acceptance_rate_hint)
            if new:
                submit(*map(list, zip(*new)))
                handed_out = new[-1][0] + new[-1][1]

        kills: dict[int, int] = {}  # start -> times its range ended in KilledWorker
        try:
            top_up()
            for future, batch in futures:
                start, count = in_flight.pop(future)
                if future.status == "error":
                    error = future.exception()
                    # Dask blames every task assigned to a dying worker, also ones that
                    # only waited there: a range is guilty only if it kills again alone.
                    if _is_killed_worker(error):
                        kills[start] = kills.get(start, 0) + 1
                        if kills[start] <= int(config.get("dask.killed-worker-retries")):
                            submit([start], [count])
                            continue
                    raise self._task_failed(error, spec, start, count, collector)
                if isinstance(batch, payload.Missing):  # a worker that joined later
                    if batch.address is not None:
                        _run_on_workers(client, payload.install, token, data,
                                        workers=[batch.address])
                    # a range that met a worker without the spec twice takes it along
                    submit([start], [count], with_data=attempts[start] > 1)
                    continue
                collector.add(batch)
                self.controller.observe(batch)
                if collector.done:
                    break
                if futures.is_empty() or len(in_flight) < self._window(client):
                    top_up()
        finally:
            # without waiting: ranges still queued are dropped, running ones stop early
            if in_flight:
                _in_background(client, client.cancel(list(in_flight), asynchronous=True))
            _run_on_workers(client, payload.finish, token)

    @staticmethod
    def _task_failed(error, spec: GenerationSpec, start: int, count: int, collector):
        if not _is_killed_worker(error):
            return error
        shown = int(config.get("dask.report-parameters"))
        idx = np.arange(start, start + min(count, shown))
        m, theta = spec.propose(idx)
        pars = [f"{int(i)}: model {spec.models[int(j)].name!r} {dict(spec.parameter(j, row))}"
                for i, j, row in zip(idx, m, theta)]
        more = f" (first {shown} of {count})" if count > shown else ""
        return SamplerError(
            f"DaskDistributedSampler: evaluating indices {start}..{start + count - 1} of "
            f"generation {spec.t} killed workers repeatedly ({error}); the simulator "
            f"probably crashes for one of these parameters{more}:\n  " + "\n  ".join(pars)
            + f"\ngeneration incomplete at {collector.n_accepted}/{collector.n} accepted")

    def stop(self) -> None:
        """Close the embedded cluster, if this sampler started one."""
        if self._own_client is not None:
            self._own_client.close()
            self._own_cluster.close()
            self._own_client = self._own_cluster = None

    def __repr__(self) -> str:
        return f"DaskDistributedSampler(batch_size={self.batch_size!r})"



