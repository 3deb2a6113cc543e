"""DaskDistributedSampler when its Dask scheduler dies: a bounded wait for the client to
reconnect, then a clear :class:`SamplerError`; the completed generations stay stored."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client
from helpers import assert_histories_equal, free_port, gaussian_prior, max_t_of

import dask_abc as abc
from dask_abc.sampler import DaskDistributedSampler, SamplerError, SingleCoreSampler

GENERATIONS = 4
N = 100


def slow_model(parameter):
    """y ~ N(theta, 1), taking about 3 ms."""
    time.sleep(0.003)
    return {"y": parameter["theta"] + np.random.normal()}


def smc_for(sampler, db):
    smc = abc.ABCSMC(slow_model, gaussian_prior(), population_size=N, sampler=sampler, seed=7)
    smc.new(f"sqlite:///{db}", {"y": 1.0})
    return smc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    return smc_for(SingleCoreSampler(), db).run(max_nr_populations=GENERATIONS)


class DaskProcesses:
    """A ``dask scheduler`` on a fixed port of 127.0.0.1 and ``dask worker`` processes,
    their output in files of ``directory``; :meth:`stop_all` ends every one still alive."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ)
        # the workers unpickle this module's model by reference
        self.env["PYTHONPATH"] = os.pathsep.join(
            [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.directory / f"{name}-{len(self.procs)}.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        return proc

    def scheduler(self) -> subprocess.Popen:
        proc = self._start("scheduler", "distributed.cli.dask_scheduler", "--host",
                           "127.0.0.1", "--port", str(self.port), "--no-dashboard")
        deadline = time.monotonic() + 30
        while True:  # listening
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return proc
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def workers(self, n: int = 2) -> None:
        for _ in range(n):
            self._start("worker", "distributed.cli.dask_worker", self.address, "--nthreads",
                        "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.fixture
def dask_processes(tmp_path):
    processes = DaskProcesses(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


def kill_in_generation(db, proc, t: int, then=None) -> threading.Thread:
    """A thread that kills ``proc`` shortly after generation ``t`` started, then calls
    ``then()``; it records when it killed in its ``killed_at`` (and gives up after a minute
    if the run never gets there)."""

    def kill():
        deadline = time.monotonic() + 60
        while max_t_of(db) < t - 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        thread.killed_at = time.monotonic()
        proc.wait(timeout=30)  # its port is free
        if then is not None:
            then()

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("client_timeout", [None, 2.0],
                         ids=["the sampler's bound", "the client's timeout"])
def test_a_dead_scheduler_ends_the_run_with_a_clear_error(dask_processes, tmp_path,
                                                          client_timeout):
    """SIGKILL the scheduler in generation 2: a SamplerError that says how to go on, as
    soon as the sampler's bound or the client's own reconnection timeout runs out; the
    generations 0 and 1 stay in the database."""
    bound = 3.0 if client_timeout is None else 60.0
    scheduler = dask_processes.scheduler()
    dask_processes.workers()
    db = tmp_path / "dead.db"
    timeout = {} if client_timeout is None else {"timeout": client_timeout}
    with dask.config.set({"abc.dask.scheduler-reconnect-seconds": bound}), \
            Client(dask_processes.address, set_as_default=False, **timeout) as client:
        client.wait_for_workers(2, timeout=60)
        smc = smc_for(DaskDistributedSampler(client), db)
        killer = kill_in_generation(db, scheduler, 2)
        try:
            with pytest.raises(SamplerError) as raised:
                smc.run(max_nr_populations=GENERATIONS)
            failed_at = time.monotonic()
        finally:
            killer.join(timeout=60)
    message = str(raised.value)
    assert f"lost the Dask scheduler {dask_processes.address} in generation 2" in message
    assert f"`dask-abc resume sqlite:///{db} --abc-id 1 --scheduler " \
           f"{dask_processes.address}`" in message
    waited = float(re.search(r"waited ([0-9.]+) s", message)[1])
    assert waited == pytest.approx(bound if client_timeout is None else client_timeout,
                                   abs=1.5)
    assert ("client stopped reconnecting" in message) == (client_timeout is not None)
    assert failed_at - killer.killed_at < waited + 3.0
    with abc.History(f"sqlite:///{db}", create=False) as history:
        assert history.max_t == 1
        assert history.get_all_populations()["t"].tolist() == [-1, 0, 1]
        assert history.stop_reason.startswith("failed: SamplerError")
        assert len(history.get_distribution(0, 1)[0]) == N


def test_a_scheduler_back_in_time_lets_the_run_go_on(dask_processes, reference, tmp_path):
    """The scheduler restarted on its port with new workers (the old ones closed with
    it): the client reconnects, the ranges that were in flight run again, and the
    History is the single-core one."""
    scheduler = dask_processes.scheduler()
    dask_processes.workers()
    db = tmp_path / "back.db"

    def restart():
        dask_processes.scheduler()
        dask_processes.workers()

    with Client(dask_processes.address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        smc = smc_for(DaskDistributedSampler(client, scheduler_reconnect_seconds=30), db)
        killer = kill_in_generation(db, scheduler, 2, then=restart)
        try:
            history = smc.run(max_nr_populations=GENERATIONS)
        finally:
            killer.join(timeout=60)
    assert_histories_equal(history, reference)
    assert scheduler.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("seconds", [-1.0, float("nan")])
def test_a_negative_bound_is_refused(seconds):
    with pytest.raises(ValueError, match="scheduler_reconnect_seconds must be >= 0"):
        DaskDistributedSampler(scheduler_reconnect_seconds=seconds)
