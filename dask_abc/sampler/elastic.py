"""The Dask sampler on clusters that change size (``cluster.adapt``, batch jobs that end).

Two things dask-jobqueue users meet and Dask does not do for them:

- **Demand.** Dask's adaptive scaling asks for workers in proportion to the
  work it sees queued (``distributed.adaptive.target-duration`` of work per
  worker, 5 s by default). A sampler that keeps only a short pipeline of
  ranges in flight never shows more than one worker's worth, so
  ``adapt(minimum=0, maximum=100)`` would stay at one worker. The sampler
  queues the generation's whole expected work, so Dask sees the demand; and
  it sizes ranges for the slots the cluster may grow to (its maximum), not
  only those it has now, so that the work spreads over the new workers.
- **Lost jobs.** A ``SpecCluster`` (every dask-jobqueue cluster) forgets a
  worker whose job ended (walltime, ``--lifetime``, ``scancel``) after
  ``distributed.deploy.lost-worker-timeout`` but keeps its place in
  ``worker_spec``, and starts a new job for it only at its next ``scale``
  call. Neither ``scale(n)`` nor an adaptive cluster already at its target
  calls it again, so the cluster would shrink for good. The sampler calls
  ``cluster.scale(len(cluster.worker_spec))`` when it sees such a place, which
  submits the replacement job.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .. import config

logger = logging.getLogger("dask_abc")


class ElasticCluster:
    """What the sampler knows of its cluster's size, looked up at most every
    ``abc.dask.worker-poll-interval`` seconds.

    Parameters
    ----------
    client : distributed.Client
        The sampler's client; ``client.cluster`` (if this process holds the
        cluster object) is watched for adaptivity and lost jobs.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
    ...                   dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
    ...     elastic = ElasticCluster(client)
    ...     elastic.threads(), elastic.planned_slots()
    (1, 1)
    """

    def __init__(self, client):
        self.client = client
        self._threads = self._workers = 0
        self._seen_at = -np.inf

    def threads(self) -> int:
        """Worker threads (slots) connected to the scheduler now (those last seen while the
        client is not connected: asking would wait for the connection)."""
        now = time.monotonic()
        if self.client.status != "running":
            return self._threads
        if now - self._seen_at > float(config.get("dask.worker-poll-interval")):
            info = self.client.scheduler_info(n_workers=0)
            self._threads, self._workers = info.get("total_threads", 0), info.get("n_workers", 0)
            self._seen_at = now
            self._replace_lost_jobs()
        return self._threads

    def threads_per_process(self) -> int:
        """The most worker threads that share one process (and so numpy's global random
        state): all of them for workers inside the client's process (``inproc://``)."""
        threads = self.threads()
        if self.client.scheduler.address.startswith("inproc://"):
            return threads
        if threads <= self._workers:  # one thread each
            return 1 if threads else 0
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return max(worker["nthreads"] for worker in workers)

    @property
    def _cluster(self):
        return getattr(self.client, "cluster", None)

    def planned_slots(self) -> int:
        """The slots to size ranges for: the threads connected now, or on an adaptive
        cluster at least its maximum workers (``abc.dask.unbounded-adapt-workers`` if it
        has none), one thread each at least."""
        threads = self.threads()
        adaptive = getattr(self._cluster, "_adaptive", None)
        if adaptive is None or getattr(adaptive, "periodic_callback", None) is None:
            return threads
        maximum = adaptive.maximum
        if not np.isfinite(maximum):
            maximum = float(config.get("dask.unbounded-adapt-workers"))
        return max(threads, int(maximum))

    def _replace_lost_jobs(self) -> None:
        cluster = self._cluster
        spec, started = (getattr(cluster, "worker_spec", None), getattr(cluster, "workers", None))
        if spec is None or started is None or getattr(cluster, "asynchronous", True):
            return
        lost = set(spec) - set(started)
        if lost and str(getattr(cluster, "status", "")).endswith("running"):
            logger.info("replacing %d lost worker job(s) of %s", len(lost), type(cluster).__name__)
            cluster.scale(len(spec))
