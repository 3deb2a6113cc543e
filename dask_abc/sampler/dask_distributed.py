"""Evaluate index ranges as Dask tasks on any Dask cluster."""

from __future__ import annotations

import logging
import uuid

import cloudpickle
import numpy as np

from .. import config
from ..generation import BatchResult, GenerationSpec
from ..sample import SampleCollector
from .base import Sampler, SamplerError, nr_cores_available
from .controller import BatchController

logger = logging.getLogger("dask_abc")


def load_spec(data: bytes) -> GenerationSpec:
    """The generation spec as a task result: computed once, held by the cluster."""
    return cloudpickle.loads(data)


def _is_killed_worker(error) -> bool:
    from distributed import KilledWorker

    return isinstance(error, KilledWorker)


def evaluate_range(spec: GenerationSpec, start: int, count: int) -> BatchResult:
    """One task: evaluate ``[start, start + count)`` of a generation."""
    return spec.evaluate(start, count)


class DaskDistributedSampler(Sampler):
    """Evaluate ranges of indices as Dask tasks, sized by a STAT↔DYN controller.

    The generation spec becomes one task whose result every worker fetches
    once per generation (and which Dask recomputes if all its holders are
    lost); range tasks carry only its key, a start index and a count. With
    ``batch_size="auto"`` a :class:`~dask_abc.sampler.controller.BatchController`
    sizes ranges to about ``abc.dask.target-task-seconds`` of work and shrinks
    them towards the end of a generation. The number of tasks in flight
    follows the live number of workers, so ``cluster.adapt()`` works. Tasks of
    a worker that dies are recomputed elsewhere by Dask, with identical results
    (the index rule); ranges no longer needed are cancelled.

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

    def _n_workers(self, client) -> int:
        return len(client.scheduler_info().get("workers", {}))

    def _window(self, client) -> int:
        """Tasks in flight: a pipeline per live worker (at least one task, so that an
        adaptive cluster at zero workers sees work)."""
        key = "pipeline-depth" if self.batch_size == "auto" else "fixed-batch-pipeline-depth"
        window = max(self._n_workers(client), 1) * (1 + int(config.get(f"dask.{key}")))
        return int(min(window, self.client_max_jobs))

    def _run(self, spec: GenerationSpec, collector: SampleCollector, acceptance_rate_hint):
        from distributed import as_completed

        client = self.client
        token = uuid.uuid4().hex
        spec_future = client.submit(load_spec, cloudpickle.dumps(spec), pure=False,
                                    key=f"abc-spec-{token}")
        in_flight: dict = {}
        handed_out = 0
        futures = as_completed(loop=client.loop, with_results=True, raise_errors=False)

        def top_up() -> None:
            nonlocal handed_out
            window = self._window(client)
            starts, counts = [], []
            while len(in_flight) + len(starts) < window and handed_out < collector.max_eval:
                size = self.controller.size(collector, handed_out, window, acceptance_rate_hint)
                starts.append(handed_out)
                counts.append(int(min(size, collector.max_eval - handed_out)))
                handed_out += counts[-1]
            if not starts:
                return
            # one message to the scheduler for all new ranges
            new = client.map(evaluate_range, [spec_future] * len(starts), starts, counts,
                             key=[f"abc-range-{token}-{s}" for s in starts], pure=False)
            for future, start, count in zip(new, starts, counts):
                in_flight[future] = (start, count)
            futures.update(new)

        kills: dict[int, int] = {}  # start -> times its range ended in KilledWorker

        def retry(start: int, count: int) -> None:
            future = client.submit(evaluate_range, spec_future, start, count, pure=False,
                                   key=f"abc-range-{token}-{start}-retry{kills[start]}")
            in_flight[future] = (start, count)
            futures.add(future)

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
                            retry(start, count)
                            continue
                    raise self._task_failed(error, spec, start, count, collector)
                collector.add(batch)
                self.controller.observe(batch)
                if collector.done:
                    break
                if futures.is_empty() or len(in_flight) < self._window(client):
                    top_up()
        finally:
            if in_flight:
                client.cancel(list(in_flight))
            spec_future.release()

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



