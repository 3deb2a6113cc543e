"""DaskDistributedSampler: the index rule on a real Dask cluster, failures, scaling, TLS."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from helpers import (
    SleepingModel,
    assert_histories_equal,
    gaussian_model,
    gaussian_prior,
    peak_concurrency,
)

import dask_abc as abc
from dask_abc.sampler import DaskDistributedSampler, SamplerError, SingleCoreSampler, payload


def slow_model(parameter):
    """y ~ N(theta, 1), taking about a millisecond."""
    time.sleep(0.001)
    return {"y": parameter["theta"] + np.random.normal()}


def crashing_model(flag):
    """A model that dies like a segfault for theta > 2 once the file ``flag`` exists."""

    def model(parameter):
        if parameter["theta"] > 2 and os.path.exists(flag):
            os.kill(os.getpid(), signal.SIGKILL)
        return {"y": parameter["theta"] + np.random.normal()}

    return model


def local_cluster(n_workers=2, **kwargs):
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", **kwargs)


@pytest.fixture(scope="module")
def client():
    with local_cluster() as cluster, Client(cluster, set_as_default=False) as c:
        yield c


def run(sampler, tmp_path, model=slow_model, n=100, generations=4, name="run"):
    smc = abc.ABCSMC(model, gaussian_prior(), population_size=n, sampler=sampler, seed=31)
    smc.new(f"sqlite:///{tmp_path}/{name}.db", {"y": 1.0})
    return smc, smc.run(max_nr_populations=generations)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(SingleCoreSampler(), tmp_path_factory.mktemp("ref"))[1]


@pytest.mark.parametrize("batch_size", [1, 7, "auto"])
def test_identical_for_any_batch_size(batch_size, client, reference, tmp_path):
    _, history = run(DaskDistributedSampler(client, batch_size=batch_size), tmp_path)
    assert_histories_equal(history, reference)


def test_identical_on_one_worker(reference, tmp_path):
    with local_cluster(1) as cluster, Client(cluster) as c:
        _, history = run(DaskDistributedSampler(client=c), tmp_path)
    assert_histories_equal(history, reference)


def test_default_sampler_uses_the_current_client(client, tmp_path):
    assert isinstance(abc.ABCSMC(slow_model, gaussian_prior()).sampler,
                      abc.sampler.MulticoreEvalParallelSampler)
    with client.as_current():
        smc = abc.ABCSMC(slow_model, gaussian_prior(), population_size=20, seed=1)
    assert isinstance(smc.sampler, DaskDistributedSampler)
    assert smc.sampler.client is client


def test_embedded_cluster_is_closed_after_the_run(tmp_path, reference):
    sampler = DaskDistributedSampler()
    with pytest.raises(ValueError):
        Client.current()  # no client around: the sampler starts its own
    _, history = run(sampler, tmp_path)
    assert sampler._own_client is None and sampler._own_cluster is None
    assert_histories_equal(history, reference)


def test_workers_that_missed_the_broadcast_get_the_spec(client, reference, tmp_path,
                                                         monkeypatch):
    """As if every worker joined after its generation's broadcast: each asks once."""
    targeted = []
    run_on_workers = client.run

    async def nothing():
        return None

    def run_without_broadcast(function, *args, **kwargs):
        if function is payload.install:
            if kwargs.get("workers") is None:
                return nothing()  # the broadcast reaches no one
            targeted.extend(kwargs["workers"])
        return run_on_workers(function, *args, **kwargs)

    monkeypatch.setattr(client, "run", run_without_broadcast)
    with dask.config.set({"abc.dask.spec-wait-seconds": 0.05}):
        _, history = run(DaskDistributedSampler(client), tmp_path)
    assert_histories_equal(history, reference)
    workers = set(client.scheduler_info()["workers"])
    assert set(targeted) <= workers and len(targeted) >= 4  # every generation, every worker


def test_killed_and_retired_workers_change_nothing(reference, tmp_path):
    """SIGKILL a worker in generation 2, retire one in generation 3: same History."""
    with local_cluster() as cluster, Client(cluster) as c:
        db = tmp_path / "faults.db"
        events = []

        def saboteur():
            deadline = time.time() + 120
            while time.time() < deadline and len(events) < 2:
                time.sleep(0.05)
                try:
                    with abc.History(f"sqlite:///{db}", create=False) as h:
                        max_t = h.max_t
                except abc.DatabaseError:
                    continue
                if max_t == 1 and not events:  # generation 2 is running
                    time.sleep(0.05)
                    pids = c.run(os.getpid)
                    os.kill(next(iter(pids.values())), signal.SIGKILL)
                    events.append("killed")
                elif max_t == 2 and len(events) == 1:  # generation 3 is running
                    time.sleep(0.05)
                    c.retire_workers([next(iter(c.scheduler_info()["workers"]))])
                    events.append("retired")

        thread = threading.Thread(target=saboteur)
        thread.start()
        smc = abc.ABCSMC(slow_model, gaussian_prior(), population_size=100, seed=31,
                         sampler=DaskDistributedSampler(c, batch_size=5))
        smc.new(f"sqlite:///{db}", {"y": 1.0})
        history = smc.run(max_nr_populations=4)
        thread.join()
    assert events == ["killed", "retired"]
    assert_histories_equal(history, reference)


@pytest.mark.parametrize("batch_size, allowed_failures, retries", [(1, 1, 1), (5, 0, 0)])
def test_a_crashing_simulator_ends_the_run_with_its_parameters(batch_size, allowed_failures,
                                                                retries, tmp_path):
    """The error names one index whose parameter crashes, never a range that only waited on
    a dying worker; with ranges of 5 the crashing index is isolated by bisection."""
    # a worker that crash-loops is often mid-restart when the LocalCluster checks, 15 s
    # after each death, whether it came back; it would then close its nanny for good
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures,
                          "distributed.deploy.lost-worker-timeout": "1h",
                          "abc.dask.killed-worker-retries": retries}):
        with local_cluster() as cluster, Client(cluster) as c:
            flag = tmp_path / "crash-now"
            smc, history = run(DaskDistributedSampler(c, batch_size=batch_size), tmp_path,
                               model=crashing_model(str(flag)), generations=2)
            flag.touch()
            with pytest.raises(SamplerError) as info:
                smc.run(max_nr_populations=2)
    message = str(info.value)
    assert "killed workers" in message and "evaluating index " in message
    assert f"({retries + 1}x, Attempted to run task" in message
    assert message.count("'theta': ") == 1
    theta = float(message.split("'theta': ")[1].split("}")[0])
    assert theta > 2
    assert abc.History(history.db).n_populations == 2
    assert history.stop_reason.startswith("failed: SamplerError")


def killed_by_the_test(flags):
    """``slow_model``; but the first evaluation to claim a file of ``flags`` writes its
    process's PID to ``<flag>.pid`` and waits there to be killed."""

    def model(parameter):
        for flag in flags:
            try:
                os.rename(flag, flag + ".claimed")  # atomic: one evaluation claims it
            except FileNotFoundError:
                continue
            with open(flag + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(flag + ".tmp", flag + ".pid")
            time.sleep(120)
            break
        return slow_model(parameter)

    return model


def test_sigkilled_workers_never_fail_the_run(reference, tmp_path):
    """Worker jobs killed mid-generation (scancel, a walltime) while they evaluate: with
    ``allowed-failures`` 0 Dask ends every range on them in KilledWorker, the running one and
    those only queued there. The suspects are evaluated alone and the History is the same."""
    flags = [str(tmp_path / f"kill-{i}") for i in range(2)]
    killed = []
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with local_cluster() as cluster, Client(cluster) as c:
            smc, history = run(DaskDistributedSampler(c, batch_size=5), tmp_path,
                               model=killed_by_the_test(flags), generations=2)
            done = threading.Event()

            def saboteur():
                for flag in flags:
                    while not os.path.exists(flag + ".pid"):
                        if done.wait(0.01):
                            return
                    with open(flag + ".pid") as f:
                        pid = int(f.read())
                    if pid in c.run(os.getpid, on_error="ignore").values():
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)

            thread = threading.Thread(target=saboteur)
            for flag in flags:
                open(flag, "w").close()
            thread.start()
            try:
                smc.run(max_nr_populations=2)
            finally:
                done.set()
                thread.join()
    assert len(set(killed)) == 2
    assert_histories_equal(history, reference)


def return_one_unless(flag):
    if os.path.exists(flag):
        os.kill(os.getpid(), signal.SIGKILL)
    return 1


def test_a_lost_result_whose_recomputation_fails_is_reported(tmp_path):
    """A finished range whose worker dies before its result is gathered is recomputed; if the
    recomputation fails, that is its outcome. (``as_completed(with_results=True)`` never
    yields such a future: a run hung.)"""
    from distributed import KilledWorker

    from dask_abc.sampler.dask_distributed import FINISHED, _Outcomes

    flag = tmp_path / "crash-now"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with local_cluster() as cluster, Client(cluster, set_as_default=False) as c:
            future = c.submit(return_one_unless, str(flag), pure=False)
            assert future.result() == 1  # finished; the worker keeps it for the client
            holder = c.run(os.getpid, workers=list(c.who_has(future)[future.key]))
            flag.touch()  # so that its recomputation kills a worker too
            os.kill(next(iter(holder.values())), signal.SIGKILL)
            outcomes = _Outcomes(c)
            outcomes.track([future])
            notices = []
            while (outcome := outcomes.next(timeout=120))[0] == FINISHED:
                notices.append(outcome[1])
            done, result, error = outcome
    assert done is future and result is None and isinstance(error, KilledWorker)
    assert notices in ([future], [])  # the slot's notice may come first


def test_adaptive_cluster_scales_up_from_zero(tmp_path, reference):
    with local_cluster(0) as cluster, Client(cluster) as c:
        cluster.adapt(minimum=0, maximum=2)
        seen = []
        done = threading.Event()

        def watch():
            while not done.is_set():
                seen.append(len(c.scheduler_info()["workers"]))
                time.sleep(0.05)

        thread = threading.Thread(target=watch)
        thread.start()
        try:
            _, history = run(DaskDistributedSampler(c), tmp_path)
        finally:
            done.set()
            thread.join()
    assert seen[0] == 0 and max(seen) >= 1
    assert_histories_equal(history, reference)


def test_tls_cluster(tmp_path, reference):
    from distributed.security import Security

    security = Security.temporary()
    with local_cluster(protocol="tls", security=security) as cluster, \
            Client(cluster, security=security) as c:
        assert c.scheduler.address.startswith("tls://")
        _, history = run(DaskDistributedSampler(c), tmp_path)
    assert_histories_equal(history, reference)


def timed_generations(sampler) -> list[tuple[float, float]]:
    """Record ``(start, end)`` (``time.time()``) of every generation ``sampler`` samples."""
    spans, sample = [], sampler.sample

    def timed(*args, **kwargs):
        start = time.time()
        try:
            return sample(*args, **kwargs)
        finally:
            spans.append((start, time.time()))

    sampler.sample = timed
    return spans


def test_64_threads_are_kept_busy_in_every_generation(tmp_path):
    """A simulated big cluster: 2 worker processes x 32 threads and a model that sleeps
    (releasing the GIL): in every generation at least 90 % of the 64 slots simulate at
    once, and the History is SingleCore's."""
    slots, busy, idle = 64, tmp_path / "busy", tmp_path / "idle"
    busy.mkdir()
    idle.mkdir()

    def smc_for(sampler, model, name):
        smc = abc.ABCSMC(model, gaussian_prior(), population_size=200, sampler=sampler,
                         seed=5)
        smc.new(f"sqlite:///{tmp_path}/{name}.db", {"y": 1.0})
        return smc

    with LocalCluster(n_workers=2, threads_per_worker=slots // 2, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        sampler = DaskDistributedSampler(c)
        spans = timed_generations(sampler)
        history = smc_for(sampler, SleepingModel(busy, 0.2), "busy").run(max_nr_populations=3)
    reference = smc_for(SingleCoreSampler(), SleepingModel(idle, 0.0), "idle")
    assert_histories_equal(history, reference.run(max_nr_populations=3))
    peaks = [peak_concurrency(busy, start, end) for start, end in spans]
    assert len(peaks) == 4 and min(peaks) >= 0.9 * slots, peaks  # calibration + 3


@pytest.mark.parametrize("processes", [True, False])
def test_threads_sharing_a_process_warn_about_a_global_rng_model(processes, tmp_path):
    """Threads of one process share numpy's global random state: several threads per
    worker, or several workers inside the client's process."""
    from dask_abc.reproducibility import GlobalRandomStateWarning

    shape = {"n_workers": 1, "threads_per_worker": 4} if processes else {
        "n_workers": 2, "threads_per_worker": 1}
    with LocalCluster(processes=processes, dashboard_address="127.0.0.1:0",
                      **({"host": "127.0.0.1"} if processes else {}), **shape) as cluster, \
            Client(cluster, set_as_default=False) as c:
        with pytest.warns(GlobalRandomStateWarning) as warned:
            run(DaskDistributedSampler(c), tmp_path, model=gaussian_model, n=50,
                generations=2)
    assert len(warned) == 1
    assert "model 'gaussian_model'" in str(warned[0].message)
    assert f"{4 if processes else 2} threads of a Dask worker process" in str(warned[0].message)


class TaskSizes(SchedulerPlugin):
    """Records the pickled size of every range task the scheduler runs."""

    name = "abc-task-sizes"

    def __init__(self):
        self.sizes = {}

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        ts = self.scheduler.tasks.get(key)
        if finish == "processing" and ts is not None and str(key).startswith("abc-"):
            self.sizes[str(key)] = len(pickle.dumps(ts.run_spec))


def test_payload_is_constant_and_tasks_are_small(client, tmp_path, monkeypatch):
    installs = []  # (token, bytes, target workers) of every spec sent to workers
    run_on_workers = client.run

    def recording_run(function, *args, **kwargs):
        if function is payload.install:
            installs.append((args[0], len(args[1]), kwargs.get("workers")))
        return run_on_workers(function, *args, **kwargs)

    monkeypatch.setattr(client, "run", recording_run)
    client.register_plugin(TaskSizes())
    smc, _ = run(DaskDistributedSampler(client, batch_size=3), tmp_path, generations=1)
    for _ in range(4):
        smc.run(max_nr_populations=1)
    # one broadcast per generation (calibration + 5), to all workers at once
    assert [workers for *_, workers in installs] == [None] * 6
    assert len({token for token, *_ in installs}) == 6
    # calibration and generation 0 sample the prior; later specs hold one population
    sizes = [size for _, size, _ in installs][2:]
    assert max(sizes) - min(sizes) < 0.05 * max(sizes)
    recorded = client.run_on_scheduler(lambda dask_scheduler: dict(
        dask_scheduler.plugins[TaskSizes.name].sizes))
    ranges = {k: v for k, v in recorded.items() if k.startswith("abc-range-")}
    assert len(ranges) > 100
    assert max(ranges.values()) < 1024  # a task: the generation's token, a start, a count
    assert min(sizes) > 5 * max(ranges.values())  # the spec travels apart
