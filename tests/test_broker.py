"""Standalone workers through a coordinator: the protocol, the Actor and Redis backends,
``dask-abc-worker`` and ``dask-abc-manager``."""

from __future__ import annotations

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
from helpers import assert_histories_equal, gaussian_prior

import dask_abc as abc
from dask_abc.broker import (
    BrokerBusy,
    BrokerError,
    BrokerState,
    BrokerWorker,
    LocalBroker,
    RedisBroker,
)
from dask_abc.broker.worker import SpecLoadError
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


def test_a_coordinator_that_loses_its_state_ends_the_run(tmp_path):
    broker = LocalBroker()
    worker = BrokerWorker(broker, runtime=60)
    thread = threading.Thread(target=worker.run)
    db = tmp_path / "lost.db"

    def restart_coordinator():  # like an actor recomputed on another worker
        while True:  # once generation 2 runs on the coordinator
            with broker._changed:
                if broker.state.t == 2 and broker.state.token is not None:
                    broker.state = BrokerState()
                    return
            time.sleep(0.002)

    saboteur = threading.Thread(target=restart_coordinator)
    thread.start()
    saboteur.start()
    try:
        with pytest.raises(SamplerError, match="coordinator lost generation 2"):
            smc_for(ThreadBrokerSampler(broker), db).run(max_nr_populations=GENERATIONS)
    finally:
        saboteur.join()
        worker.interrupt()
        thread.join()
    with abc.History(f"sqlite:///{db}", create=False) as history:
        assert history.n_populations == 2  # the completed generations stay


# -- real backends, real worker processes ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on loopback with a password."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (ci/test.sh installs it as root)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--requirepass", "s3cret",
                             "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
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


def max_t_of(db) -> int:
    try:
        with abc.History(f"sqlite:///{db}", create=False) as h:
            return h.max_t
    except abc.DatabaseError:
        return -2


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
                    assert "Evaluations per worker: " in out.splitlines()[-1]
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
