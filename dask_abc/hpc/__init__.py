"""Dask clusters and standalone worker jobs on batch schedulers, set up for ABC.

- :func:`client` / :func:`make_cluster`: a cluster of kind "local", "slurm",
  "sge", "pbs" or "lsf" from ``dask.config`` (``abc.cluster.*``) with ABC
  defaults: single-threaded worker processes, workers that retire before
  their job's walltime, ``adapt()`` between 0 and ``workers``.
- :func:`submit_workers`: k batch jobs running ``dask-abc-worker`` for the
  Actor and Redis samplers.
"""

from .cluster import KINDS, client, job_options, make_cluster, walltime_seconds, worker_lifetime
from .jobs import WorkerJobs, submit_workers, worker_command, worker_job, worker_job_script

__all__ = ["KINDS", "WorkerJobs", "client", "job_options", "make_cluster", "submit_workers",
           "walltime_seconds", "worker_command", "worker_job", "worker_job_script",
           "worker_lifetime"]
