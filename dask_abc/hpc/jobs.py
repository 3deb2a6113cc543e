"""``dask-abc-worker`` jobs on a batch scheduler: pyABC's sbatch/qsub loop, done once.

The job scripts come from dask-jobqueue's job classes, so the directives
(queue, account, cores, memory, walltime, extra directives, logs) are written
as ``SLURMCluster``, ``SGECluster``, ``PBSCluster`` or ``LSFCluster`` would
write them; only the command differs: a standalone worker that claims index
ranges from a coordinator (a Dask Actor found through the scheduler, or Redis)
instead of a Dask worker.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile

from .cluster import KINDS, cluster_kind, job_options, walltime_seconds, worker_lifetime

logger = logging.getLogger("dask_abc")


def worker_command(*, scheduler: str | None = None, scheduler_file: str | None = None,
                   redis_host: str | None = None, redis_port: int | None = None,
                   redis_password: str | None = None, runtime: float = 3600.0,
                   processes: int = 1, python: str | None = None) -> str:
    """The shell command of one worker job (the job's Python runs
    ``python -m dask_abc.broker``, which is ``dask-abc-worker``).

    Examples
    --------
    >>> worker_command(scheduler_file="/shared/s.json", runtime=3300, processes=4,
    ...                python="python3")
    'python3 -m dask_abc.broker --scheduler-file /shared/s.json --runtime 3300s --processes 4'
    """
    if sum(x is not None for x in (scheduler, scheduler_file, redis_host)) != 1:
        raise ValueError("worker jobs need exactly one of scheduler=ADDRESS, "
                         "scheduler_file=PATH (Dask Actor coordinator) or redis_host=HOST")
    words = [python or sys.executable, "-m", "dask_abc.broker"]
    if scheduler is not None:
        words += ["--scheduler", scheduler]
    elif scheduler_file is not None:  # jobs start elsewhere: the path must be absolute
        words += ["--scheduler-file", os.path.abspath(scheduler_file)]
    else:
        words += ["--redis-host", redis_host]
        if redis_port is not None:
            words += ["--redis-port", str(redis_port)]
        if redis_password is not None:
            words += ["--redis-password", redis_password]
    words += ["--runtime", f"{runtime:.0f}s", "--processes", str(int(processes))]
    return " ".join(shlex.quote(word) for word in words)


def worker_job(kind: str | None = None, *, scheduler: str | None = None,
               scheduler_file: str | None = None, redis_host: str | None = None,
               redis_port: int | None = None, redis_password: str | None = None,
               runtime=None, processes: int | None = None, **options):
    """A dask-jobqueue job object whose script runs one ``dask-abc-worker``.

    ``options`` are :func:`~dask_abc.hpc.cluster.job_options`'s (queue, account,
    cores, memory, walltime, job_extra_directives, log_directory, …).
    ``processes`` defaults to the job's cores (one single-threaded worker
    process each); ``runtime`` (after which the worker takes no new range)
    defaults to the walltime less ``abc.cluster.lifetime-margin``.
    """
    kind = cluster_kind(kind)
    if kind == "local":
        raise ValueError("worker jobs need a batch scheduler, not kind 'local': 'slurm', "
                         "'sge', 'pbs' or 'lsf'; on this machine start dask-abc-worker directly")
    settings = job_options(kind, **options)
    settings.pop("worker_extra_args")  # Dask worker options: not ours
    settings.pop("interface", None)
    seconds = walltime_seconds(settings["walltime"], kind)
    if runtime is None:
        lifetime = worker_lifetime(seconds)
        runtime = lifetime[0] + lifetime[1] if lifetime else seconds
    else:
        from dask.utils import parse_timedelta

        runtime = parse_timedelta(runtime, default="s")
    command = worker_command(
        scheduler=scheduler, scheduler_file=scheduler_file, redis_host=redis_host,
        redis_port=redis_port, redis_password=redis_password, runtime=runtime,
        processes=processes or settings["processes"], python=settings.get("python"))
    job_class = getattr(importlib.import_module("dask_jobqueue"), KINDS[kind]).job_cls
    settings.setdefault("job_name", "dask-abc-worker")
    job = job_class(scheduler="(none)", name="dask-abc-worker", **settings)
    # dask-jobqueue writes the header; the command is a standalone worker's
    return replace_worker_command(job, command)


def replace_worker_command(job, command: str):
    """``job`` (a dask-jobqueue job object), its script running ``command`` instead of a
    Dask worker.

    dask-jobqueue (0.8, 0.9) has no public way to do this: its job classes build
    ``PYTHON -m WORKER_COMMAND SCHEDULER --name … --nthreads … --memory-limit …``
    (arguments a standalone worker does not take) into the private attribute
    ``_command_template``, which :meth:`job_script` writes after the directives and
    the prologue. This function is the one place dask-abc touches it, and it checks
    first that the job's script holds that attribute's command;
    ``tests/test_hpc.py`` fails if a dask-jobqueue release writes scripts otherwise.

    Examples
    --------
    >>> from dask_jobqueue.slurm import SLURMJob
    >>> job = SLURMJob(scheduler="tcp://s:8786", cores=1, memory="1GB", python="python3")
    >>> replace_worker_command(job, "echo hello").job_script().splitlines()[-1]
    'echo hello'
    """
    original = getattr(job, "_command_template", None)
    if not (isinstance(original, str) and original in job.job_script()):
        from importlib.metadata import version

        raise RuntimeError(f"dask-jobqueue {version('dask_jobqueue')} writes its job scripts "
                           "otherwise than dask-abc expects (_command_template); the worker "
                           "job's command cannot be set")
    job._command_template = command
    return job


def worker_job_script(kind: str | None = None, **options) -> str:
    """The job script :func:`submit_workers` submits, to read or to submit by hand.

    Examples
    --------
    >>> script = worker_job_script("slurm", scheduler_file="/shared/s.json", queue="debug",
    ...                            walltime="02:00:00", cores=4, python="python3")
    >>> print(script.split("#SBATCH -J")[0].strip())
    #!/usr/bin/env bash
    >>> for line in script.splitlines():
    ...     if "-t " in line or "abc" in line:
    ...         print(line)
    #SBATCH -J dask-abc-worker
    #SBATCH -t 02:00:00
    python3 -m dask_abc.broker --scheduler-file /shared/s.json --runtime 6900s --processes 4
    """
    return worker_job(kind, **options).job_script()


class WorkerJobs:
    """Standalone worker jobs submitted by :func:`submit_workers`.

    Attributes
    ----------
    kind : str
        The batch scheduler.
    job_ids : list of str
        The scheduler's job ids.
    script : str
        The job script each was submitted with.
    """

    def __init__(self, kind: str, job_ids: list[str], script: str, cancel_command: str):
        self.kind = kind
        self.job_ids = job_ids
        self.script = script
        self.cancel_command = cancel_command

    def cancel(self) -> None:
        """Cancel every job (their workers give their ranges back to the coordinator)."""
        if self.job_ids:
            subprocess.run(shlex.split(self.cancel_command) + self.job_ids,
                           capture_output=True, text=True, check=False)

    def __len__(self) -> int:
        return len(self.job_ids)

    def __repr__(self) -> str:
        return f"WorkerJobs({self.kind!r}, job_ids={self.job_ids})"


def submit_workers(n_jobs: int, kind: str | None = None, **options) -> WorkerJobs:
    """Submit ``n_jobs`` batch jobs, each running ``dask-abc-worker``.

    The workers find the coordinator of an ``ActorEvalParallelSampler``
    through ``scheduler_file`` (``client.write_scheduler_file(path)`` on the
    master, on a shared file system) or ``scheduler``, or that of a
    ``RedisEvalParallelSampler`` through ``redis_host``/``redis_port``/
    ``redis_password``. Jobs may start late or die at any time: a dead
    worker's ranges go to the others after ``abc.broker.lease-seconds``.

    Parameters
    ----------
    n_jobs : int
        Jobs to submit.
    kind : str, optional
        "slurm", "sge", "pbs" or "lsf" (default ``abc.cluster.kind``).
    **options
        Those of :func:`worker_job`.

    Returns
    -------
    WorkerJobs
        The job ids, the script and ``cancel()``.

    Examples
    --------
    From a SLURM login node (not run here)::

        client.write_scheduler_file("/shared/scheduler.json")
        jobs = submit_workers(20, "slurm", scheduler_file="/shared/scheduler.json",
                              cores=4, walltime="02:00:00", queue="compute")
        history = abc.run(max_nr_populations=10)
        jobs.cancel()
    """
    if not (isinstance(n_jobs, int) and n_jobs >= 1):
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    job = worker_job(kind, **options)
    script = job.job_script()
    submit = shlex.split(job.submit_command)
    job_ids: list[str] = []
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="dask-abc-worker-") as file:
        file.write(script)
        file.flush()
        for _ in range(n_jobs):
            try:
                if getattr(job, "use_stdin", False):  # LSF: bsub < script
                    with open(file.name) as stdin:
                        done = subprocess.run(submit, stdin=stdin, capture_output=True, text=True)
                else:
                    done = subprocess.run(submit + [file.name], capture_output=True, text=True)
            except FileNotFoundError:
                raise RuntimeError(
                    f"submit_workers: {submit[0]!r} not found: is this a login node of a "
                    f"{kind or 'batch'} cluster?"
                    + (f" (submitted so far: {job_ids})" if job_ids else "")) from None
            match = re.search(job.job_id_regexp, done.stdout)
            if done.returncode or match is None:
                raise RuntimeError(
                    f"submit_workers: {' '.join(submit)} failed (exit {done.returncode}): "
                    f"{(done.stderr or done.stdout).strip()}"
                    + (f"; already submitted: {job_ids}" if job_ids else ""))
            job_ids.append(match.group("job_id"))
    logger.info("submitted %d dask-abc-worker jobs: %s", n_jobs, " ".join(job_ids))
    return WorkerJobs(cluster_kind(kind), job_ids, script, job.cancel_command)
