"""Standalone workers through a coordinator: the protocol, the Actor and Redis backends,
``dask-abc-worker`` and ``dask-abc-manager``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from distributed import Client, LocalCluster
from helpers import (
    SleepingModel,
    assert_histories_equal,
    free_port,
    gaussian_prior,
    max_t_of,
    peak_concurrency,
)

import dask_abc as abc
from dask_abc.broker import (
    BrokerBusy,
    BrokerError,
    BrokerState,
    BrokerWorker,
    Coordinator,
    LocalBroker,
    RedisBroker,
)
from dask_abc.broker.actor import unpack_ranges
from dask_abc.broker.cli import _info_line
from dask_abc.broker.worker import SpecLoadError
from dask_abc.reproducibility import GlobalRandomStateWarning
from dask_abc.sampler import (
    ActorEvalParallelSampler,
    BrokerSampler,
    RedisEvalParallelSampler,
    SamplerError,
    SingleCoreSampler,
)

GENERATIONS = 4


def slow_model(parameter):
    """y ~ N(theta, 1), taking about 2 ms."""
    import numpy as np

    time.sleep(0.002)
    return {"y": parameter["theta"] + np.random.normal()}


def smc_for(sampler, db, n=100, seed=5):
    smc = abc.ABCSMC(slow_model, gaussian_prior(), population_size=n, sampler=sampler, seed=seed)
    smc.new(f"sqlite:///{db}", {"y": 1.0})
    return smc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    return smc_for(SingleCoreSampler(), db).run(max_nr_populations=GENERATIONS)


# -- the protocol -------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_claims_leases_and_lost_workers():
    clock = Clock()
    state = BrokerState(clock)
    state.acquire("m", 10)
    state.start_generation("g", 0, 10, b"spec")
    state.add_ranges("g", [(0, 5), (5, 5), (10, 5)])
    state.register("a", {})
    state.register("b", {})
    assert state.claim("a", "g") == (0, 5)
    assert state.claim("b", "g") == (5, 5)
    assert state.claim("a", "other-generation") is None
    clock.now = 3.0
    state.heartbeat("b")
    assert state.requeue_lost("g", lease_seconds=2.0) == [(0, 5)]  # a went silent
    assert state.status()["workers"] == 1
    assert state.claim("b", "g") == (0, 5)  # the lost range comes first
    assert state.push("b", "g", 0, 5, 1, b"r0")
    assert not state.push("a", "g", 0, 5, 1, b"late")  # a late duplicate is dropped
    state.give_back("b", "g", 5, 5)  # b stops: its range is queued again
    assert state.claim("b", "g") == (5, 5)
    assert state.take_results("g") == [b"r0"]
    assert state.status()["evaluations"] == 5 and state.status()["acceptances"] == 1


def test_a_second_master_is_refused_until_the_first_expires():
    clock = Clock()
    state = BrokerState(clock)
    state.acquire("first", ttl=5)
    with pytest.raises(BrokerBusy, match="busy with another analysis.*first"):
        state.acquire("second", ttl=5)
    state.request_stop()
    clock.now = 6.0  # the first master died: its claim lapsed
    state.acquire("second", ttl=5)
    assert not state.status()["stop"]  # a new analysis starts without the old stop


def test_finished_generation_drops_results_and_claims():
    state = BrokerState()
    state.start_generation("g", 0, 10, b"spec")
    state.add_ranges("g", [(0, 5)])
    state.register("a", {})
    assert state.claim("a", "g") == (0, 5)
    state.finish_generation("g")
    assert state.spec("g") is None and state.claim("a", "g") is None
    assert not state.push("a", "g", 0, 5, 5, b"r")
    assert state.heartbeat("a")["token"] is None


# -- the sampler with workers in threads ---------------------------------------


class ThreadBrokerSampler(BrokerSampler):
    def __init__(self, broker, **kwargs):
        super().__init__(**kwargs)
        self.local = broker

    def _connect(self):
        return self.local


def test_broker_sampler_equals_single_core(reference, tmp_path):
    broker = LocalBroker()
    worker = BrokerWorker(broker, runtime=60)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        history = smc_for(ThreadBrokerSampler(broker), tmp_path / "t.db").run(
            max_nr_populations=GENERATIONS)
    finally:
        worker.interrupt()
        thread.join()
    assert_histories_equal(history, reference)
    assert worker.ranges_evaluated > GENERATIONS


def test_no_workers_is_a_clear_error(tmp_path):
    smc = smc_for(ThreadBrokerSampler(LocalBroker(), wait_for_workers=0.5), tmp_path / "n.db")
    with pytest.raises(SamplerError, match="no worker has connected.*dask-abc-worker"):
        smc.run(max_nr_populations=1)


def replace_coordinator_in_generation_2(broker: LocalBroker, new_owner: str | None = None):
    """Like a restarted Redis or a new actor: an empty state, once generation 2 runs on
    the coordinator (and held by ``new_owner`` if given)."""
    while True:
        with broker._changed:
            if broker.state.t == 2 and broker.state.token is not None:
                broker.state = BrokerState()
                if new_owner is not None:
                    broker.state.acquire(new_owner, 600)
                broker._changed.notify_all()
                return
        time.sleep(0.002)


def run_with_saboteur(broker, db, saboteur):
    worker = BrokerWorker(broker, runtime=60)
    threads = [threading.Thread(target=worker.run), threading.Thread(target=saboteur)]
    for thread in threads:
        thread.start()
    try:
        return smc_for(ThreadBrokerSampler(broker), db).run(max_nr_populations=GENERATIONS)
    finally:
        threads[1].join()
        worker.interrupt()
        threads[0].join()


def test_a_coordinator_that_loses_its_state_is_seeded_again(reference, tmp_path, caplog):
    broker = LocalBroker()
    history = run_with_saboteur(broker, tmp_path / "lost.db",
                                lambda: replace_coordinator_in_generation_2(broker))
    assert_histories_equal(history, reference)
    assert "generation 2: the coordinator forgot it" in caplog.text


def test_a_coordinator_taken_by_another_master_ends_the_run(tmp_path):
    broker, db = LocalBroker(), tmp_path / "taken.db"
    with pytest.raises(SamplerError, match="lost generation 2 to another master .intruder"):
        run_with_saboteur(broker, db,
                          lambda: replace_coordinator_in_generation_2(broker, "intruder"))
    with abc.History(f"sqlite:///{db}", create=False) as history:
        assert history.n_populations == 2  # the completed generations stay


# -- real backends, real worker processes ----------------------------------------


class Workers:
    """``dask-abc-worker`` processes, with their output in files."""

    def __init__(self, connection: list[str], tmp_path):
        self.connection = connection
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, *extra: str, see_tests: bool = True) -> subprocess.Popen:
        path = self.tmp_path / f"worker-{len(self.procs)}.log"
        env = dict(os.environ)
        if see_tests:  # the models of these tests live in this directory
            env["PYTHONPATH"] = os.pathsep.join(
                [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])
        with open(path, "w") as log:
            proc = subprocess.Popen(["dask-abc-worker", *self.connection, *extra],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
        proc.log_path = path
        self.procs.append(proc)
        return proc

    def log(self, proc) -> str:
        with open(proc.log_path) as f:
            return f.read()

    def stop_all(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        return [proc.wait(timeout=60) for proc in self.procs]


@pytest.fixture(scope="module")
def dask_backend():
    """A cluster whose one worker hosts the coordinator actor."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def start_redis(port: int, directory, *options: str) -> subprocess.Popen:
    """A real, empty redis-server on loopback, answering."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (ci/test.sh installs it as root)")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(directory),
                             *options], stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on loopback with a password."""
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"), "--requirepass", "s3cret")
    yield port
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(params=["actor", "redis"])
def backend(request, tmp_path):
    """The sampler and the workers' connection options of one backend, with a coordinator
    name of the test's own."""
    name = f"test-{request.node.name}-{os.getpid()}"[:60]
    if request.param == "actor":
        client = request.getfixturevalue("dask_backend")
        return {"sampler": lambda **kw: ActorEvalParallelSampler(client, name=name, **kw),
                "connection": ["--scheduler", client.scheduler.address, "--name", name]}
    port = request.getfixturevalue("redis_server")
    return {"sampler": lambda **kw: RedisEvalParallelSampler("127.0.0.1", port, "s3cret",
                                                             name=name, **kw),
            "connection": ["--redis-host", "127.0.0.1", "--redis-port", str(port),
                           "--redis-password", "s3cret", "--name", name]}


@pytest.mark.parametrize("n_workers", [1, 2, 3])
def test_workers_reproduce_single_core(backend, n_workers, reference, tmp_path):
    workers = Workers(backend["connection"], tmp_path)
    for _ in range(n_workers):
        workers.start("--runtime", "10m")
    try:
        history = smc_for(backend["sampler"](), tmp_path / "w.db").run(
            max_nr_populations=GENERATIONS)
    finally:
        codes = workers.stop_all()
    assert_histories_equal(history, reference)
    assert codes == [0] * n_workers
    for proc in workers.procs:
        log = workers.log(proc)
        assert f"Start worker. Max run time 600.0s, PID={proc.pid}" in log
        assert "generation" in log  # one line per generation it worked on


def failing_model(parameter):
    if parameter["theta"] > 2:
        raise ValueError("no simulation above 2")
    return slow_model(parameter)


def test_a_model_error_on_a_worker_reaches_the_master(tmp_path):
    broker = LocalBroker()
    worker = BrokerWorker(broker, runtime=60)
    thread = threading.Thread(target=worker.run)
    thread.start()
    smc = abc.ABCSMC(failing_model, gaussian_prior(), population_size=50, seed=5,
                     sampler=ThreadBrokerSampler(broker))
    smc.new(f"sqlite:///{tmp_path}/e.db", {"y": 1.0})
    try:
        with pytest.raises(abc.ModelError, match="failing_model.*theta"):
            smc.run(max_nr_populations=2)
    finally:
        worker.interrupt()
        thread.join()


def test_a_worker_that_cannot_load_the_model_says_why(backend, tmp_path):
    workers = Workers(backend["connection"], tmp_path)
    workers.start(see_tests=False)  # test_broker, the model's module, is not importable
    try:
        with pytest.raises(SpecLoadError, match="No module named 'test_broker'.*importable"):
            smc_for(backend["sampler"](), tmp_path / "s.db").run(max_nr_populations=1)
    finally:
        workers.stop_all()


def test_a_killed_worker_costs_one_lease(backend, reference, tmp_path):
    """SIGKILL one of two workers mid-generation: no manual step, identical History, and
    generation 2 takes less than the lease plus a normal generation."""
    lease = 3.0
    workers = Workers(backend["connection"], tmp_path)
    victim = workers.start()
    workers.start()
    db = tmp_path / "k.db"

    def kill_in_generation_2():
        while max_t_of(db) < 1:
            time.sleep(0.01)
        time.sleep(0.1)
        os.kill(victim.pid, signal.SIGKILL)

    thread = threading.Thread(target=kill_in_generation_2)
    smc = smc_for(backend["sampler"](lease_seconds=lease), db)
    thread.start()
    try:
        history = smc.run(max_nr_populations=GENERATIONS)
    finally:
        thread.join(timeout=60)
        workers.stop_all()
    assert_histories_equal(history, reference)
    assert victim.returncode == -signal.SIGKILL
    info = history.get_generation_info()
    seconds = dict(zip(info.t, info.seconds))
    normal = max(seconds[1], seconds[3])  # generations without a kill, on the same workers
    assert seconds[2] < lease + normal + 0.5


def test_a_late_worker_joins_and_a_short_runtime_worker_leaves(backend, reference, tmp_path):
    workers = Workers(backend["connection"], tmp_path)
    short = workers.start("--runtime", "5s")
    db = tmp_path / "late.db"
    late = {}

    def join_in_generation_1():
        while max_t_of(db) < 0:
            time.sleep(0.02)
        late["proc"] = workers.start("--runtime", "10m")

    thread = threading.Thread(target=join_in_generation_1)
    smc = smc_for(backend["sampler"](), db, n=300)
    thread.start()
    started = time.monotonic()
    try:
        history = smc.run(max_nr_populations=GENERATIONS)
    finally:
        thread.join()
        short_code = short.wait(timeout=60)
        workers.stop_all()
    assert_histories_equal(history, smc_for(SingleCoreSampler(), tmp_path / "r.db", n=300)
                           .run(max_nr_populations=GENERATIONS))
    assert short_code == 0 and "exits after" in workers.log(short)
    assert time.monotonic() - started > 5  # the short worker left in the middle of the run
    assert "generation" in workers.log(late["proc"])  # the late worker contributed


# -- the coordinator is disposable --------------------------------------------------


def sigterm_and_time_exits(workers: Workers) -> list[float]:
    """SIGTERM every worker at once; the seconds each takes to exit."""
    started = time.monotonic()
    for proc in workers.procs:
        proc.send_signal(signal.SIGTERM)
    seconds = []
    for proc in workers.procs:
        proc.wait(timeout=60)
        seconds.append(time.monotonic() - started)
    return seconds


def in_generation_2(db, action):
    """A thread that runs ``action`` early in generation 2 of the run storing to ``db``."""
    def wait_and_act():
        deadline = time.monotonic() + 120  # a run that fails early: no action
        while max_t_of(db) < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        time.sleep(0.1)
        action()

    return threading.Thread(target=wait_and_act)


def test_the_actor_coordinator_host_killed_mid_generation(reference, tmp_path):
    """SIGKILL of the Dask worker hosting the actor (a job at its walltime): the master
    plants its generation on a new actor, the workers find it, the History is
    identical. With the coordinator gone for good, workers still exit on SIGTERM."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        sampler = ActorEvalParallelSampler(client, name="disposable")
        workers = Workers(["--scheduler", client.scheduler.address, "--name", "disposable"],
                          tmp_path)
        workers.start()
        workers.start()
        db = tmp_path / "a.db"
        killed = []

        def kill_coordinator_host():
            (host,) = client.who_has(sampler.broker._future)[sampler.broker._future.key]
            os.kill(client.run(os.getpid)[host], signal.SIGKILL)
            killed.append(host)

        killer = in_generation_2(db, kill_coordinator_host)
        killer.start()
        try:
            history = smc_for(sampler, db).run(max_nr_populations=GENERATIONS)
            killer.join()
            kill_coordinator_host()  # no master plants a new one now
            time.sleep(1.0)
        finally:
            seconds = sigterm_and_time_exits(workers)
        assert_histories_equal(history, reference)
        assert len(killed) == 2
        assert max(seconds) < 10, seconds
        for proc in workers.procs:
            assert "the coordinator answers again" in workers.log(proc)


def test_redis_restarted_empty_mid_generation(reference, tmp_path, caplog):
    """redis-server killed and started again, empty, on the same port in generation 2:
    the master plants its generation again, the History is identical. With the server
    down for good, workers still exit on SIGTERM."""
    port = free_port()
    server = start_redis(port, tmp_path)
    workers = Workers(["--redis-host", "127.0.0.1", "--redis-port", str(port)], tmp_path)
    workers.start()
    workers.start()
    db = tmp_path / "r.db"

    def restart_empty():
        nonlocal server
        server.kill()
        server.wait()
        time.sleep(1.5)  # down long enough for every call to fail
        server = start_redis(port, tmp_path)

    restarter = in_generation_2(db, restart_empty)
    restarter.start()
    try:
        history = smc_for(RedisEvalParallelSampler("127.0.0.1", port), db).run(
            max_nr_populations=GENERATIONS)
        restarter.join()
        server.kill()
        server.wait()
        time.sleep(1.0)
        seconds = sigterm_and_time_exits(workers)
    finally:
        workers.stop_all()
        server.kill()
        server.wait()
    assert_histories_equal(history, reference)
    assert "generation 2: the coordinator forgot it" in caplog.text
    assert max(seconds) < 10, seconds
    for proc in workers.procs:
        assert "the coordinator answers again" in workers.log(proc)


def test_a_coordinator_gone_for_good_ends_the_run_within_the_bound(tmp_path):
    """Redis killed for good in generation 2: a SamplerError after wait_for_workers that
    says how to go on; the completed generations stay."""
    port = free_port()
    server = start_redis(port, tmp_path)
    workers = Workers(["--redis-host", "127.0.0.1", "--redis-port", str(port)], tmp_path)
    workers.start()
    broker = RedisBroker("127.0.0.1", port)
    wait_for(lambda: broker.status()["workers"] == 1)  # before the short wait_for_workers
    broker.close()
    db = tmp_path / "gone.db"
    killed_at = []

    def kill_for_good():
        server.kill()
        killed_at.append(time.monotonic())

    killer = in_generation_2(db, kill_for_good)
    killer.start()
    try:
        with pytest.raises(SamplerError, match=r"no coordinator could be reached for 3 s in "
                           r"generation 2 .*dask-abc resume"):
            smc_for(RedisEvalParallelSampler("127.0.0.1", port, wait_for_workers=3), db).run(
                max_nr_populations=GENERATIONS)
        waited = time.monotonic() - killed_at[0]
    finally:
        killer.join()
        server.kill()  # also if the run failed before the killer got to it
        server.wait()
        seconds = sigterm_and_time_exits(workers)
    assert 3 <= waited < 8, waited
    assert max(seconds) < 10, seconds
    with abc.History(f"sqlite:///{db}", create=False) as history:
        assert history.n_populations == 2


def manager(backend, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["dask-abc-manager", *args, *backend["connection"]],
                          capture_output=True, text=True, timeout=120)


def test_manager_info_and_stop(backend, tmp_path):
    assert manager(backend, "info").stdout.strip() == \
        "Workers=None Evaluations=None Acceptances=None/None"
    workers = Workers(backend["connection"], tmp_path)
    workers.start()
    db = tmp_path / "m.db"
    seen = []

    def watch():
        while max_t_of(db) < 1:
            out = manager(backend, "info").stdout.strip()
            if out.startswith("Workers=1 "):
                seen.append(out)
                if "Evaluations=0 " not in out:  # per worker once some have evaluated
                    assert re.fullmatch(
                        r"Evaluations per worker: min [\d,]+, median [\d,]+, max [\d,]+ "
                        r"\(1 worker, 1 slot, \d+ ranges? leased on 1 host\); "
                        r"slowest: \S+ [\d,]+( \([\d.,]+/slot/s\))?", out.splitlines()[1]), out
                    assert len(out.splitlines()) == 2  # one host: no per-host line
                assert re.search(r"\(generation -?\d+(, acceptance rate [\d.]+%)?, epsilon ", out)
            time.sleep(0.1)

    thread = threading.Thread(target=watch)
    smc = smc_for(backend["sampler"](), db)
    thread.start()
    try:
        smc.run(max_nr_populations=GENERATIONS)
    finally:
        thread.join()
    assert seen, "info never showed the running worker"
    fields = dict(part.split("=") for part in seen[-1].splitlines()[0].split(" (")[0].split())
    accepted, n = fields["Acceptances"].split("/")
    assert int(fields["Evaluations"]) >= int(accepted) and n == "100"
    assert manager(backend, "stop").returncode == 0
    assert workers.procs[0].wait(timeout=30) == 0  # idle: exits at once
    assert "stop requested" in workers.log(workers.procs[0])


def test_manager_info_summarises_1000_workers_on_50_hosts():
    per_worker, worker_info = {}, {}
    for i in range(1000):
        name, host = f"w{i}", f"node{i % 50:02d}.cluster"
        worker_info[name] = {"host": host, "pid": i, "threads": 8}
        if i != 123:  # Redis lists only the workers that have evaluated
            per_worker[name] = 100 if host == "node07.cluster" else 400 + i % 7
    status = {"workers": 1001, "slots": 8008, "leased": 7000, "evaluations": 399_000,
              "acceptances": 812, "n": 5000, "t": 3, "epsilon": 0.42,
              "per_worker": per_worker, "worker_info": worker_info}
    text = _info_line(status)
    first, workers, hosts = text.splitlines()
    assert first == ("Workers=1001 Evaluations=399000 Acceptances=812/5000 "
                     "(generation 3, acceptance rate 0.2%, epsilon 0.42)")
    assert workers.startswith("Evaluations per worker: min 0, median 403, max 406 "
                              "(1000 workers, 8008 slots, 7000 ranges leased on 50 hosts; "
                              "1 more not reporting); slowest: w123 0, w7 100, w57 100")
    assert hosts.startswith("Evaluations per host: min 2,000, median 8,0")
    assert hosts.endswith("slowest: node07.cluster 2,000 (20 workers), "
                          "node23.cluster 7,658 (20 workers), node00.cluster 8,057 (20 workers)")
    assert len(text) < 600  # whatever the number of workers


def test_manager_info_finds_hosts_in_worker_names_and_ranks_by_throughput_with_ages():
    status = {"workers": 3, "evaluations": 90, "acceptances": 9, "n": 10, "t": 0,
              "epsilon": None,
              "per_worker": {"nodeA-11-abcdef": 50, "nodeA-12-012345": 30, "custom": 10}}
    _, workers, hosts = _info_line(status).splitlines()
    assert "(3 workers on 2 hosts)" in workers and workers.endswith("slowest: custom 10, "
                                                                    "nodeA-12-012345 30, "
                                                                    "nodeA-11-abcdef 50")
    assert hosts.endswith("slowest: custom 10 (1 worker), nodeA 80 (2 workers)")
    # with each worker's age, a late joiner with few evaluations is not the slowest
    status["worker_info"] = {"nodeA-11-abcdef": {"threads": 2, "age": 100.0},
                             "nodeA-12-012345": {"threads": 2, "age": 100.0},
                             "custom": {"threads": 1, "age": 5.0}}
    workers = _info_line(status).splitlines()[1]
    assert "slowest: nodeA-12-012345 30 (0.15/slot/s), nodeA-11-abcdef 50 (0.25/slot/s), " \
        "custom 10 (2/slot/s)" in workers


def wait_for(condition, seconds=60.0):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_processes_and_reset_workers(backend, reference, tmp_path):
    sampler = backend["sampler"]()
    broker = sampler.broker  # creates the coordinator the workers wait for
    workers = Workers(backend["connection"], tmp_path)
    parent = workers.start("--processes", "2", "--runtime", "10m")
    wait_for(lambda: broker.status()["workers"] == 2)
    out = manager(backend, "reset-workers")
    assert out.returncode == 0 and out.stdout.strip() == "Reset 2 workers"
    try:
        history = smc_for(sampler, tmp_path / "p.db").run(max_nr_populations=GENERATIONS)
        assert_histories_equal(history, reference)
        assert len(broker.status()["per_worker"]) == 2  # both came back by their heartbeats
    finally:
        parent.send_signal(signal.SIGTERM)  # the parent stops its worker processes
        assert parent.wait(timeout=60) == 0
    assert workers.log(parent).count("Start worker. Max run time 600.0s") == 2


def test_an_actor_worker_over_tls_with_a_scheduler_file(tmp_path, reference):
    from distributed.security import Security

    security = Security.temporary()
    files = {}
    for option, pem in (("--tls-ca-file", security.tls_ca_file),
                        ("--tls-cert", security.tls_client_cert),
                        ("--tls-key", security.tls_client_key)):
        files[option] = tmp_path / f"{option.strip('-')}.pem"
        files[option].write_text(pem)
    scheduler_file = tmp_path / "scheduler.json"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", protocol="tls",
                      security=security) as cluster, \
            Client(cluster, security=security, set_as_default=False) as client:
        assert client.scheduler.address.startswith("tls://")
        client.write_scheduler_file(str(scheduler_file))
        workers = Workers(["--scheduler-file", str(scheduler_file),
                           *[str(x) for pair in files.items() for x in pair]], tmp_path)
        workers.start()
        try:
            history = smc_for(ActorEvalParallelSampler(client), tmp_path / "tls.db").run(
                max_nr_populations=GENERATIONS)
        finally:
            codes = workers.stop_all()
    assert_histories_equal(history, reference)
    assert codes == [0]


def test_a_second_master_gets_a_busy_error(backend, tmp_path):
    first = backend["sampler"]()
    first.broker.acquire(first.owner, ttl=60)
    try:
        smc = smc_for(backend["sampler"](), tmp_path / "b.db")
        with pytest.raises(BrokerBusy, match="busy with another analysis"):
            smc.run(max_nr_populations=1)
    finally:
        first.stop()


def test_the_claim_of_a_master_that_died_here_is_taken_over(backend, tmp_path):
    """A resumed run need not wait for the killed master's claim to expire."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = f"master {socket.gethostname()} PID {int(gone.stdout)} (killed)"
    backend["sampler"]().broker.acquire(dead, ttl=60)
    sampler = backend["sampler"](wait_for_workers=0.3)
    smc = smc_for(sampler, tmp_path / "t.db")
    with pytest.raises(SamplerError, match="no worker has connected"):  # past the claim
        smc.run(max_nr_populations=1)
    assert sampler.broker.status()["owner"] in (None, sampler.owner)


def test_redis_password_is_required(redis_server, tmp_path):
    port = str(redis_server)
    master = RedisBroker("127.0.0.1", redis_server, "s3cret", prefix="pw-test")
    master.acquire("master", ttl=60)
    master.start_generation("g", 0, 100, b"spec")
    master.add_ranges("g", [(0, 10)])
    before = master.status()
    out = subprocess.run(["dask-abc-worker", "--redis-host", "127.0.0.1", "--redis-port", port,
                          "--name", "pw-test", "--runtime", "5s"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "needs a password" in out.stdout + out.stderr
    out = subprocess.run(["dask-abc-manager", "reset-workers", "--redis-host", "127.0.0.1",
                          "--redis-port", port, "--redis-password", "wrong",
                          "--name", "pw-test"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "refused the password" in out.stderr
    assert master.status() == before and master.claim("w", "g") == (0, 10)  # untouched
    with pytest.raises(BrokerError, match="needs a password"):
        RedisBroker("127.0.0.1", redis_server)
    master.release("master")


# -- at scale: slots (threads), wake-ups, reproducibility under threads ----------------


def _settle(loop_turns: int = 20):
    """Let the event loop run a few turns (no clock: a woken waiter finishes in a few)."""

    async def turns():
        for _ in range(loop_turns):
            await asyncio.sleep(0)

    return turns()


@pytest.mark.parametrize("operation", ["push", "push_and_claim", "report_failure"])
def test_every_delivered_result_wakes_the_waiting_master(operation):
    """The Actor ends the master's ``take_results`` wait at once for any result, not only
    for ``push`` (the master used to sleep its whole timeout after ``push_and_claim``)."""
    args = {"push": ("w", "g", 0, 5, 1, b"r"), "push_and_claim": ("w", "g", 0, 5, 1, b"r"),
            "report_failure": ("w", "g", b"r")}[operation]

    async def scenario():
        coordinator = Coordinator()
        await coordinator.call("start_generation", "g", 0, 10, b"spec")
        await coordinator.call("add_ranges", "g", [(0, 5), (5, 5)])
        await coordinator.call("register", "w", {"threads": 2})
        assert await coordinator.call("claim", "w", "g") == ("ok", (0, 5))
        master = asyncio.ensure_future(coordinator.take_results("g", 3600))
        await _settle()
        assert not master.done()  # nothing delivered yet: it waits
        await coordinator.call(operation, *args)
        await _settle()
        assert master.done()
        return master.result()

    assert asyncio.run(scenario()) == [b"r"]


def test_waiting_worker_calls_wake_on_what_they_wait_for():
    """A worker process's ``watch`` returns when the generation ends or a stop comes, and
    its ``claim_many`` when ranges are queued, each at once."""

    async def scenario():
        coordinator = Coordinator()
        await coordinator.call("register", "w", {"threads": 3})
        await coordinator.call("start_generation", "g", 0, 10, b"spec")
        claiming = asyncio.ensure_future(coordinator.claim_many("w", "g", 3, 3600))
        watching = asyncio.ensure_future(coordinator.watch("w", "g", False, 3600))
        await _settle()
        assert not claiming.done() and not watching.done()
        await coordinator.call("add_ranges", "g", [(0, 2), (2, 2)])
        await _settle()
        assert unpack_ranges(claiming.result()) == [(0, 2), (2, 2)] and not watching.done()
        await coordinator.call("request_stop")
        await _settle()
        assert watching.result() == {"token": "g", "t": 0, "stop": True, "registered": True}
        stopped = asyncio.ensure_future(coordinator.watch("w", "g", True, 3600))
        claiming = asyncio.ensure_future(coordinator.claim_many("w", "g", 1, 3600))
        await _settle()
        assert not stopped.done() and not claiming.done()
        await coordinator.call("finish_generation", "g")
        await _settle()
        assert stopped.result()["token"] is None
        assert claiming.result() is None  # the generation is over
        status = await coordinator.call("status", False)
        return status[1]

    status = asyncio.run(scenario())
    assert (status["workers"], status["slots"], status["threads"]) == (1, 3, 3)
    assert "per_worker" not in status  # the master's poll does not grow with the workers


def test_slots_are_counted_per_process_and_survive_a_reset():
    state = BrokerState()
    state.register("a", {"threads": 32, "host": "n1", "pid": 1})
    state.register("b", {"threads": 32, "host": "n1", "pid": 2})
    state.register("c", {})
    status = state.status(per_worker=False)
    assert (status["workers"], status["slots"], status["threads"]) == (3, 65, 32)
    state.start_generation("g", 0, 10, b"spec")
    state.add_ranges("g", [(i, 1) for i in range(100)])
    assert state.claim_many("a", "g", 32) == [(i, 1) for i in range(32)]
    assert state.reset_workers() == 3
    assert state.heartbeat("a")["registered"] is False  # so the worker registers again
    state.register("a", {"threads": 32})
    assert state.claim_many("a", "g", 2) == [(0, 1), (1, 1)]  # its ranges came back first
    state.register("a", {"threads": 16})  # registering again keeps the leases
    assert state.status()["leased"] == 2 and state.status()["slots"] == 16
    state.give_back_many("a", "g", [(1, 1), (0, 1)])
    assert state.status()["leased"] == 0 and state.claim("a", "g") == (0, 1)


SLEEP_SETUP = {"n": 200, "generations": 3}


def run_sleeping(sampler, db, model, n=SLEEP_SETUP["n"], generations=SLEEP_SETUP["generations"]):
    smc = abc.ABCSMC(model, gaussian_prior(), population_size=n, sampler=sampler, seed=11)
    smc.new(f"sqlite:///{db}", {"y": 1.0})
    return smc.run(max_nr_populations=generations)


@pytest.fixture(scope="module")
def sleeping_reference(tmp_path_factory):
    """SingleCoreSampler's History of the sleeping ``rng`` model (without the sleep), per
    population size."""
    done = {}

    def reference(n=SLEEP_SETUP["n"]):
        if n not in done:
            where = tmp_path_factory.mktemp("sleep-ref")
            done[n] = run_sleeping(SingleCoreSampler(), where / "r.db", SleepingModel(where, 0.0),
                                   n=n)
        return done[n]

    return reference


def test_the_master_sizes_ranges_for_the_slots_of_threaded_workers(sleeping_reference,
                                                                   tmp_path):
    """A worker process of 8 threads is 8 slots: the master hands the policy 8 slots
    and keeps ranges in flight for 8 (not for one process)."""
    broker = LocalBroker()
    worker = BrokerWorker(broker, runtime=60, threads=8)
    thread = threading.Thread(target=worker.run)
    thread.start()
    sampler = ThreadBrokerSampler(broker)
    seen = []
    ranges = sampler.policy.ranges

    def spy(collector, handed_out, in_flight, window, slots=1):
        seen.append((window, slots))
        return ranges(collector, handed_out, in_flight, window, slots=slots)

    sampler.policy.ranges = spy
    try:
        wait_for(lambda: broker.status(per_worker=False)["slots"] == 8)
        history = run_sleeping(sampler, tmp_path / "q.db", SleepingModel(tmp_path, 0.0), n=50)
    finally:
        worker.interrupt()
        thread.join()
    assert_histories_equal(history, sleeping_reference(50))
    assert seen and set(seen) == {(16, 8)}  # 8 slots x (1 + pipeline-depth)


def start_threaded(backend, tmp_path, *options):
    """``dask-abc-worker`` with ``options``; the sampler, its broker and the workers, once
    all their slots are registered."""
    sampler = backend["sampler"]()
    broker = sampler.broker  # creates the coordinator the workers wait for
    workers = Workers(backend["connection"], tmp_path)
    proc = workers.start(*options, "--runtime", "10m")
    processes = int(dict(zip(options[::2], options[1::2])).get("--processes", 1))
    slots = processes * int(dict(zip(options[::2], options[1::2]))["--threads"])
    wait_for(lambda: broker.status(per_worker=False)["slots"] == slots)
    return sampler, broker, workers, proc


def stop_threaded(workers, proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_64_threads_keep_every_slot_busy(backend, sleeping_reference, tmp_path):
    """2 processes x 32 threads: the master queues ranges per slot, so at some moment at
    least 90 % of the 64 slots simulate at once; the History is SingleCore's."""
    sims = tmp_path / "simulations"
    sims.mkdir()
    sampler, _, workers, proc = start_threaded(backend, tmp_path, "--processes", "2",
                                               "--threads", "32")
    try:
        history = run_sleeping(sampler, tmp_path / "s.db", SleepingModel(sims, 0.1))
    finally:
        code = stop_threaded(workers, proc)
    assert_histories_equal(history, sleeping_reference())
    assert peak_concurrency(sims) >= 58  # 0.9 * 64
    assert code == 0
    assert workers.log(proc).count("Start worker. Max run time 600.0s") == 2
    assert "GlobalRandomStateWarning" not in workers.log(proc)  # an rng model: no warning


def test_threads_warn_about_a_model_on_the_global_random_state(backend, tmp_path):
    """``--threads`` with a model that calls ``np.random.normal``: the worker warns once,
    naming the model and the ``rng`` argument, and so does the master."""
    sampler, _, workers, proc = start_threaded(backend, tmp_path, "--threads", "4")
    try:
        with pytest.warns(GlobalRandomStateWarning,
                          match=r"model 'slow_model' draws from numpy's global random state, "
                                r"which the 4 threads of a dask-abc-worker process"):
            smc_for(sampler, tmp_path / "g.db").run(max_nr_populations=3)
    finally:
        code = stop_threaded(workers, proc)
    assert code == 0
    log = workers.log(proc)
    assert log.count("GlobalRandomStateWarning") == 1, log  # once, over three generations
    assert re.search(r"GlobalRandomStateWarning: model 'slow_model' draws from numpy's "
                     r"global random state, which the 4 threads of dask-abc-worker process "
                     r"\S+ share: .* Give the model an `rng` argument", log), log


@pytest.mark.parametrize("threads", [1, 4, 16])
def test_threads_reproduce_single_core_with_an_rng_model(redis_server, threads,
                                                         sleeping_reference, tmp_path):
    name = f"threads-{threads}-{os.getpid()}"
    connection = ["--redis-host", "127.0.0.1", "--redis-port", str(redis_server),
                  "--redis-password", "s3cret", "--name", name]
    backend = {"sampler": lambda: RedisEvalParallelSampler("127.0.0.1", redis_server,
                                                           "s3cret", name=name),
               "connection": connection}
    sampler, _, workers, proc = start_threaded(backend, tmp_path, "--threads", str(threads))
    try:
        history = run_sleeping(sampler, tmp_path / "t.db", SleepingModel(tmp_path, 0.002),
                               n=100)
    finally:
        code = stop_threaded(workers, proc)
    assert_histories_equal(history, sleeping_reference(100))
    assert code == 0


def test_sigterm_gives_back_every_range_of_a_threaded_worker(backend, sleeping_reference,
                                                             tmp_path):
    """SIGTERM while 8 threads hold ranges: the worker exits, every range is queued again
    at once (none waits for its lease) and another worker finishes the run identically."""
    sampler, broker, workers, proc = start_threaded(backend, tmp_path, "--threads", "8")
    sampler.lease_seconds = 3600.0  # a range not given back would hang the test
    result = {}

    def master():
        try:
            result["history"] = run_sleeping(sampler, tmp_path / "k.db",
                                             SleepingModel(tmp_path, 0.05), n=100)
        except BaseException as error:  # re-raised below
            result["error"] = error

    thread = threading.Thread(target=master)
    thread.start()
    try:
        wait_for(lambda: broker.status()["leased"] >= 8)
        assert stop_threaded(workers, proc) == 0
        status = broker.status()
        assert (status["workers"], status["leased"]) == (0, 0)
        assert status["running"] and status["queued"] >= 8
        workers.start("--threads", "16", "--runtime", "10m")
    finally:
        thread.join(timeout=300)
        codes = workers.stop_all()
    if "error" in result:
        raise result["error"]
    assert_histories_equal(result["history"], sleeping_reference(100))
    assert codes == [0, 0]
    assert "exits after" in workers.log(proc)
