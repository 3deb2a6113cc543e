"""One call for a Dask cluster on a laptop or a batch scheduler, with ABC defaults."""

from __future__ import annotations

import importlib
import os
import re

import dask.config
from dask.utils import parse_timedelta

from .. import config

#: The cluster kinds and their dask-jobqueue classes ("local" is a LocalCluster).
KINDS = {"local": None, "slurm": "SLURMCluster", "sge": "SGECluster",
         "pbs": "PBSCluster", "lsf": "LSFCluster"}

# dask-jobqueue's name for the account or project a job is charged to
_ACCOUNT_ARGUMENT = {"slurm": "account", "pbs": "account", "sge": "project", "lsf": "project"}

# abc.cluster keys passed to dask-jobqueue under their own (underscored) names
_PASSED = ("queue", "interface", "job-extra-directives", "job-script-prologue",
           "local-directory", "log-directory", "python")

# used when neither the call, abc.cluster.* nor jobqueue.<kind>.* set it
# (cores: 1, memory: 2GB per core)
_DEFAULT_WALLTIME = "01:00:00"


def cluster_kind(kind: str | None = None) -> str:
    """``kind`` checked and lower-cased, default ``abc.cluster.kind``."""
    chosen = kind if kind is not None else config.get("cluster.kind")
    if not isinstance(chosen, str) or chosen.lower() not in KINDS:
        raise ValueError(f"unknown cluster kind {chosen!r}: choose one of {', '.join(KINDS)} "
                         "(argument kind, or dask.config abc.cluster.kind)")
    return chosen.lower()


def walltime_seconds(walltime, kind: str = "slurm") -> float:
    """Seconds of a walltime: ``"[D-]HH:MM:SS"``, ``"HH:MM"`` (LSF; elsewhere SLURM's
    ``"MM:SS"``), minutes as an integer string (SLURM), or a Dask duration such as
    ``"90m"`` or a number of seconds.

    Examples
    --------
    >>> walltime_seconds("1-02:00:00"), walltime_seconds("01:30", "lsf"), walltime_seconds("2h")
    (93600.0, 5400.0, 7200.0)
    """
    if isinstance(walltime, (int, float)):
        return float(walltime)
    text = str(walltime).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if match is None:
        try:
            return float(parse_timedelta(text))
        except (ValueError, KeyError):
            raise ValueError(f"cannot read the walltime {walltime!r}: give HH:MM:SS or a "
                             "duration such as '90m'") from None
    days, first, second, third = (int(part) if part else None for part in match.groups())
    if third is not None:  # [D-]HH:MM:SS
        seconds = first * 3600 + second * 60 + third
    elif second is not None:  # HH:MM on LSF, MM:SS on SLURM
        seconds = first * 3600 + second * 60 if kind == "lsf" else first * 60 + second
    else:  # minutes (SLURM, also with days: D-HH)
        seconds = first * 3600 if days is not None else first * 60
    return float(seconds + 86400 * (days or 0))


def format_walltime(seconds: float, kind: str) -> str:
    """``seconds`` as ``kind``'s job scripts write it (``HH:MM`` on LSF, else
    ``HH:MM:SS``).

    Examples
    --------
    >>> format_walltime(5400, "slurm"), format_walltime(5400, "lsf")
    ('01:30:00', '01:30')
    """
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if kind == "lsf":
        return f"{hours:02d}:{minutes + (secs > 0):02d}"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def worker_lifetime(walltime_s: float) -> tuple[float, float] | None:
    """``(lifetime, stagger)`` seconds for workers of jobs with this walltime: they
    retire ``abc.cluster.lifetime-margin`` (at most a fifth of the walltime) plus up
    to a stagger before it, so an adaptive cluster replaces them before the batch
    scheduler kills them; None when the margin is ``false``.

    Examples
    --------
    >>> worker_lifetime(3600)
    (3180.0, 120.0)
    """
    margin = config.get("cluster.lifetime-margin")
    if margin is False or margin is None:
        return None
    margin = min(parse_timedelta(margin), walltime_s / 5)
    stagger = min(parse_timedelta(config.get("cluster.lifetime-stagger")), walltime_s / 10)
    return float(max(walltime_s - margin - stagger, 1.0)), float(stagger)


def _setting(kind: str, key: str, options: dict):
    """An option from the call, else ``abc.cluster.<key>``, else ``jobqueue.<kind>.<key>``."""
    name = key.replace("-", "_")
    if options.get(name) is not None:
        return options.pop(name)
    options.pop(name, None)
    value = config.get(f"cluster.{key}")
    if value is None and kind != "local":
        value = dask.config.get(f"jobqueue.{kind}.{key}", None)
    return value


def job_options(kind: str | None = None, **options) -> dict:
    """Keyword arguments of dask-jobqueue's ``kind`` cluster and job classes for ABC.

    Each setting comes from ``options``, else ``abc.cluster.*``, else
    dask-jobqueue's own ``jobqueue.<kind>.*``, else the ABC default: one core
    (``cores=1``) and one single-threaded worker process per core
    (``processes=cores``), 2 GB per core. Workers get ``--lifetime`` and
    ``--lifetime-stagger`` before the walltime (:func:`worker_lifetime`). Other
    ``options`` pass through unchanged.

    Examples
    --------
    >>> options = job_options("slurm", walltime="00:30:00", queue="debug")
    >>> options["cores"], options["processes"], options["queue"], options["walltime"]
    (1, 1, 'debug', '00:30:00')
    >>> options["worker_extra_args"]
    ['--lifetime', '1380s', '--lifetime-stagger', '120s']
    """
    kind = cluster_kind(kind)
    if kind == "local":
        raise ValueError("job_options: kind 'local' has no batch jobs")
    options = dict(options)
    result = {}
    cores = _setting(kind, "cores", options)
    result["cores"] = cores if cores is not None else 1
    memory = _setting(kind, "memory", options)
    result["memory"] = memory if memory is not None else f"{2 * result['cores']}GB"
    processes = _setting(kind, "processes", options)
    result["processes"] = processes if processes is not None else result["cores"]
    walltime = _setting(kind, "walltime", options) or _DEFAULT_WALLTIME
    seconds = walltime_seconds(walltime, kind)
    result["walltime"] = format_walltime(seconds, kind)
    account = _setting(kind, "account", options)
    if account is not None:
        result[_ACCOUNT_ARGUMENT[kind]] = account
    for key in _PASSED:
        value = _setting(kind, key, options)
        if value is not None and value != []:
            result[key.replace("-", "_")] = value
    extra = list(options.pop("worker_extra_args", None) or [])
    lifetime = worker_lifetime(seconds)
    if lifetime is not None and "--lifetime" not in extra:
        extra = ["--lifetime", f"{lifetime[0]:.0f}s",
                 "--lifetime-stagger", f"{lifetime[1]:.0f}s"] + extra
    result["worker_extra_args"] = extra
    result.update(options)
    return result


def make_cluster(kind: str | None = None, **options):
    """A Dask cluster for ABC runs: ``kind`` "slurm", "sge", "pbs" or "lsf" (through
    dask-jobqueue, with :func:`job_options`), or "local" (a ``LocalCluster`` of
    single-threaded worker processes on 127.0.0.1).

    Parameters
    ----------
    kind : str, optional
        Default ``abc.cluster.kind`` ("local").
    **options
        Keyword arguments of the cluster class; for "local", ``n_workers``
        (default ``abc.cluster.workers``, else the CPU count) and any
        ``LocalCluster`` argument.

    Examples
    --------
    >>> with make_cluster("local", n_workers=1, dashboard_address="127.0.0.1:0") as cluster:
    ...     len(cluster.workers)
    1
    """
    kind = cluster_kind(kind)
    if kind == "local":
        from distributed import LocalCluster

        local = {"n_workers": config.get("cluster.workers") or os.cpu_count() or 1,
                 "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
                 "dashboard_address": config.get("cluster.local-dashboard-address")}
        local.update(options)
        return LocalCluster(**local)
    module = importlib.import_module("dask_jobqueue")
    return getattr(module, KINDS[kind])(**job_options(kind, **options))


def client(kind: str | None = None, *, workers: int | None = None, adapt: bool = True,
           **options):
    """A ``distributed.Client`` on a new :func:`make_cluster` ``(kind, **options)``:
    the one word that moves a notebook from a laptop to a cluster.

    A batch cluster adapts between 0 and ``workers`` worker processes
    (``cluster.adapt``), or with ``adapt=False`` asks for ``workers`` at once
    (``cluster.scale``); ``workers`` defaults to ``abc.cluster.workers``, else 10.
    Close the client and then ``client.cluster`` when done (or use both as
    context managers).

    Examples
    --------
    >>> c = client("local", workers=1, dashboard_address="127.0.0.1:0")
    >>> len(c.scheduler_info()["workers"])
    1
    >>> c.close(); c.cluster.close()
    """
    from distributed import Client

    kind = cluster_kind(kind)
    workers = workers or config.get("cluster.workers")
    if kind == "local":
        if workers:
            options.setdefault("n_workers", workers)
        cluster = make_cluster(kind, **options)
    else:
        cluster = make_cluster(kind, **options)
        workers = workers or 10
        if adapt:
            cluster.adapt(minimum=0, maximum=workers)
        else:
            cluster.scale(workers)
    return Client(cluster)
