"""ABC-SMC on a live single-node SLURM cluster (``ci/slurm_up.sh``, 127.0.0.1).

Dask workers from dask-jobqueue's ``SLURMCluster`` (adaptive, and fixed size
through :func:`dask_abc.hpc.client`) and standalone ``dask-abc-worker`` jobs
from ``sbatch`` (:func:`dask_abc.hpc.submit_workers`) lose jobs mid-run: one
cancelled with ``scancel``, one killed by SLURM at its walltime, workers
retired by ``--lifetime``, a job that starts late. Every run must still give
SingleCoreSampler's History, to the last bit.

The model sleeps 0.1 s per simulation until the test has seen the events it
waits for, then 10 ms: the pace changes when things happen, never a result.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import dask.config
import numpy as np
import pytest
from dask.distributed import Client, LocalCluster
from dask_jobqueue import SLURMCluster
from helpers import assert_histories_equal, gaussian_prior

import dask_abc as dabc
from dask_abc import hpc
from dask_abc.sampler import ActorEvalParallelSampler, DaskDistributedSampler, SingleCoreSampler

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(400)]


@pytest.fixture(autouse=True)
def quick_replacement():
    """A dask-jobqueue cluster forgets a worker whose job ended after this (15 s by
    default), and only then can a new job take its place."""
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}):
        yield

POPULATION, GENERATIONS, SEED, OBSERVED = 200, 5, 7, {"y": 1.0}
LOOPBACK = {"interface": "lo", "scheduler_options": {"dashboard_address": "127.0.0.1:0"}}
WORKER_ON_LOOPBACK = ["--dashboard-address", "127.0.0.1:0"]


def make_model(pace_file: str | None):
    """y ~ N(theta, 1), 0.1 s per simulation until ``pace_file`` exists, 10 ms after
    (no sleep without a pace file)."""

    def model(parameter):
        if pace_file is not None:
            time.sleep(0.01 if os.path.exists(pace_file) else 0.1)
        return {"y": parameter["theta"] + np.random.normal()}

    return model


def run_abc(sampler, db: Path, pace_file: str | None = None):
    smc = dabc.ABCSMC(make_model(pace_file), gaussian_prior(), dabc.PNormDistance(p=2),
                      population_size=POPULATION, sampler=sampler, seed=SEED)
    smc.new(f"sqlite:///{db}", OBSERVED)
    return smc.run(max_nr_populations=GENERATIONS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_abc(SingleCoreSampler(), tmp_path_factory.mktemp("ref") / "ref.db")


class Jobs:
    """The SLURM jobs named ``name``, remembering every id ever seen running."""

    def __init__(self, name: str):
        self.name = name
        self.seen: set[str] = set()

    def states(self) -> dict[str, str]:
        """Job id -> state code (R, PD, CG, ...) of the jobs listed now."""
        out = subprocess.run(["squeue", "-h", "-n", self.name, "-o", "%i %t"],
                             capture_output=True, text=True, check=True).stdout
        states = dict(line.split() for line in out.splitlines() if line.strip())
        self.seen.update(j for j, s in states.items() if s == "R")
        return states

    def running(self) -> list[str]:
        return sorted((j for j, s in self.states().items() if s == "R"), key=int)


def job_state(job_id: str) -> str | None:
    """SLURM's state of a job (kept MinJobAge = 30 s after it ends)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                         text=True, check=False).stdout
    match = re.search(r"JobState=(\S+)", out)
    return match.group(1) if match else None


def running_generation(db: Path) -> tuple[int, int]:
    """(generation, evaluations streamed) of the run in ``db`` (-1, 0 before it starts)."""
    if not db.exists():
        return -1, 0
    history = dabc.History(f"sqlite:///{db}", create=False)
    try:
        info = history.get_partial_info()
        return info["t"], info["evaluations"]
    finally:
        history.close()


class Disruptor(threading.Thread):
    """Runs ``plan(self)`` beside the inference; errors surface in :meth:`check`."""

    def __init__(self, plan, pace: str):
        super().__init__(daemon=True)
        self.plan = plan
        self.pace = pace
        self.error: BaseException | None = None
        self.log: list[str] = []
        self.done = threading.Event()

    def run(self):
        try:
            self.plan(self)
        except BaseException as error:  # noqa: BLE001 - reported by check()
            self.error = error
            Path(self.pace).touch()  # let the run end quickly, to report the error
        finally:
            self.done.set()

    def wait_for(self, what: str, condition, timeout: float = 240.0, every: float = 0.2):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                self.log.append(f"{time.strftime('%H:%M:%S')} {what}")
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for: {what}")
            time.sleep(every)

    def check(self):
        self.join(timeout=60)
        if self.error is not None:
            raise AssertionError(f"the disruption plan failed: {self.error!r}\n"
                                 + "\n".join(self.log)) from self.error
        assert self.done.is_set(), "the disruption plan did not finish:\n" + "\n".join(self.log)


def mid_generation(db: Path):
    """True while a generation after the first has results streamed but is not done."""
    t, evaluations = running_generation(db)
    return t >= 1 and evaluations > 0


def test_adaptive_slurm_cluster_survives_scancel_and_walltime(slurm, reference, tmp_path):
    """SLURMCluster + adapt(0, 2): one worker job cancelled mid-generation, one killed by
    SLURM at its 1-minute walltime; adapt submits replacements; History unchanged."""
    db, pace = tmp_path / "adapt.db", str(tmp_path / "fast")
    jobs = Jobs(f"abc-adapt-{os.getpid()}")
    cluster = SLURMCluster(queue=slurm["partition"], cores=1, processes=1, memory="1GB",
                           walltime="00:01:00", job_name=jobs.name, log_directory=str(tmp_path),
                           worker_extra_args=WORKER_ON_LOOPBACK, **LOOPBACK)

    def plan(d: Disruptor):
        first = d.wait_for("two worker jobs run", lambda: len(jobs.running()) >= 2)
        cancelled, timed_out = jobs.running()[:2]
        d.wait_for("a generation after the first is under way", lambda: mid_generation(db))
        subprocess.run(["scancel", cancelled], check=True)
        d.log.append(f"scancel {cancelled}")
        d.wait_for(f"job {cancelled} cancelled", lambda: job_state(cancelled) == "CANCELLED")
        d.wait_for(f"job {timed_out} killed at its walltime",
                   lambda: jobs.states() and job_state(timed_out) == "TIMEOUT",
                   timeout=150, every=1.0)
        d.wait_for("a replacement job runs", lambda: set(jobs.running()) - {cancelled, timed_out})
        assert first
        Path(pace).touch()  # all seen: the rest of the run at 10 ms per simulation

    with cluster, Client(cluster) as client:
        cluster.adapt(minimum=0, maximum=2)
        disruptor = Disruptor(plan, pace)
        disruptor.start()
        history = run_abc(DaskDistributedSampler(client), db, pace)
        disruptor.check()
    assert_histories_equal(history, reference)
    assert len(jobs.seen) >= 3, f"adapt submitted no replacement job: {sorted(jobs.seen)}"
    history.close()


def test_fixed_size_slurm_cluster_replaces_workers_at_their_lifetime(slurm, reference,
                                                                     tmp_path):
    """dask_abc.hpc.client("slurm", workers=2, adapt=False): a fixed size kept with new
    jobs while workers retire (--lifetime) before the walltime; History unchanged."""
    db, pace = tmp_path / "fixed.db", str(tmp_path / "fast")
    client = hpc.client("slurm", workers=2, adapt=False, queue=slurm["partition"],
                        memory="1GB", walltime="00:01:00", job_name=f"abc-fixed-{os.getpid()}",
                        log_directory=str(tmp_path), worker_extra_args=WORKER_ON_LOOPBACK,
                        **LOOPBACK)
    assert "--lifetime" in client.cluster.job_script()

    def plan(d: Disruptor):
        first = d.wait_for("two workers", lambda: set(client.scheduler_info(
            n_workers=-1)["workers"]) if len(client.scheduler_info(
                n_workers=-1)["workers"]) >= 2 else None)
        d.wait_for("a worker retired at its lifetime", lambda: first - set(
            client.scheduler_info(n_workers=-1)["workers"]), timeout=120)
        d.wait_for("a new worker replaced it", lambda: len(set(client.scheduler_info(
            n_workers=-1)["workers"]) - first) >= 1, timeout=120)
        Path(pace).touch()

    try:
        disruptor = Disruptor(plan, pace)
        disruptor.start()
        history = run_abc(DaskDistributedSampler(client), db, pace)
        disruptor.check()
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert_histories_equal(history, reference)
    history.close()


def test_dask_abc_worker_jobs_from_sbatch_start_late_and_die(slurm, reference, tmp_path):
    """ActorEvalParallelSampler with dask-abc-worker jobs submitted by
    hpc.submit_workers (sbatch): one job held back 20 s, one cancelled mid-generation;
    History unchanged."""
    db, pace = tmp_path / "workers.db", str(tmp_path / "fast")
    scheduler_file = tmp_path / "scheduler.json"
    name = f"abc-workers-{os.getpid()}"
    listed = Jobs(name)
    options = {"queue": slurm["partition"], "memory": "1GB", "walltime": "00:10:00",
               "job_name": name, "log_directory": str(tmp_path), "processes": 1}
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local, \
            Client(local, set_as_default=False) as client:
        client.write_scheduler_file(str(scheduler_file))
        sampler = ActorEvalParallelSampler(client)
        jobs = hpc.submit_workers(2, "slurm", scheduler_file=str(scheduler_file), **options)
        late = hpc.submit_workers(1, "slurm", scheduler_file=str(scheduler_file),
                                  job_extra_directives=["--begin=now+20"], **options)
        assert "dask_abc.broker --scheduler-file" in jobs.script

        def plan(d: Disruptor):
            d.wait_for("a generation after the first is under way", lambda: mid_generation(db))
            subprocess.run(["scancel", jobs.job_ids[0]], check=True)
            d.log.append(f"scancel {jobs.job_ids[0]}")
            d.wait_for("the late job runs", lambda: late.job_ids[0] in listed.running(),
                       timeout=120)
            Path(pace).touch()

        try:
            disruptor = Disruptor(plan, pace)
            disruptor.start()
            history = run_abc(sampler, db, pace)
            disruptor.check()
        finally:
            jobs.cancel()
            late.cancel()
    assert job_state(jobs.job_ids[0]) == "CANCELLED"
    assert_histories_equal(history, reference)
    history.close()


def test_laptop_to_slurm_notebook(slurm, tmp_path):
    """notebooks/laptop_to_slurm.ipynb runs on the CI SLURM: identical Histories on the
    laptop and on SLURM, the posterior printed and plotted."""
    from test_notebooks import NOTEBOOKS, assert_shows_posterior, run_notebook, text_of

    nb = run_notebook(NOTEBOOKS / "laptop_to_slurm.ipynb", tmp_path)
    text = "\n".join(text_of(output) for cell in nb.cells for output in cell.get("outputs", []))
    assert "laptop and SLURM Histories identical: True" in text, text
    assert "#SBATCH" in text and "--lifetime" in text, text
    assert_shows_posterior(nb, "laptop_to_slurm.ipynb")
