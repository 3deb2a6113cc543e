"""The ABC page on the Dask dashboard, fed live by a running inference."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import dask_abc as abc
from dask_abc.dashboard.load import ClusterLoad
from dask_abc.dashboard.plugin import ABCDashboardPlugin, ABCState
from dask_abc.dashboard.reporter import _model_and_parameter


def slow_model(p):
    time.sleep(0.003)
    return {"y": p["theta"] + np.random.normal()}


def get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def test_the_abc_page_follows_a_running_inference(client, tmp_path):
    base = client.dashboard_link.rsplit("/", 1)[0]
    smc = abc.ABCSMC(slow_model, abc.Distribution(theta=abc.RV("norm", 0, 3)),
                     population_size=300, seed=2,
                     sampler=abc.sampler.DaskDistributedSampler(client))
    smc.new(f"sqlite:///{tmp_path / 'run.db'}", {"y": 1.0})
    done = threading.Event()
    errors = []

    def run():
        try:
            smc.run(max_nr_populations=3).close()
        except BaseException as e:  # reported by the test
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    seen, points = [], []
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline:
        try:
            status = json.loads(get(base, "/abc/data/status"))
            generations = json.loads(get(base, "/abc/data/generations"))
        except OSError:  # the plugin's routes are not there yet
            time.sleep(0.2)
            continue
        seen.append((status["generation"][0], status["accepted"][0]))
        points.append(len(generations["t"]))
        time.sleep(0.3)
    assert done.wait(120) and not errors
    # the accepted counter advanced within a generation, and the epsilon plot gained points
    advancing = [(g, a) for (g, a), (g2, a2) in zip(seen, seen[1:])
                 if g == g2 and None not in (a, a2) and a2 > a]
    assert advancing, seen
    generations = json.loads(get(base, "/abc/data/generations"))
    assert generations["t"] == [0, 1, 2] and max(points) <= 3 and len(set(points)) >= 2
    with abc.History(f"sqlite:///{tmp_path / 'run.db'}", create=False) as h:
        assert generations["epsilon"] == pytest.approx(h.get_generation_info()["epsilon"])
    posterior = json.loads(get(base, "/abc/data/posterior"))
    assert set(posterior["name"]) == {"slow_model: theta"} and len(posterior["density"]) == 30
    assert set(posterior["model"]) == {"slow_model"} and set(posterior["parameter"]) == {"theta"}
    # one host: the summary is per worker; both evaluated, and every evaluation the
    # master received ran on one of them
    workers = json.loads(get(base, "/abc/data/workers"))
    assert (workers["unit"], workers["workers"], workers["hosts"], workers["slots"]) == \
        ("worker", 2, 1, 2)
    slowest = workers["slowest"]
    assert len(slowest["name"]) == 2 and min(slowest["evaluations"]) > 0
    assert all(s > 0.003 for s in slowest["seconds_per_evaluation"])  # the model sleeps 3 ms
    with abc.History(f"sqlite:///{tmp_path / 'run.db'}", create=False) as h:
        performed = int(pd.read_sql_query("SELECT SUM(evaluations_performed) AS n FROM "
                                          "populations", h.conn)["n"][0])
    assert sum(slowest["evaluations"]) == workers["evaluations"] >= performed
    assert workers["busy"] == 0 and max(workers["history"]["busy"]) > 0  # busy while it ran
    metrics = get(base, "/metrics")
    assert "dask_abc_generation 2.0" in metrics and "dask_abc_accepted 300.0" in metrics
    assert "dask_abc_slots 2.0" in metrics and "dask_abc_slots_busy 0.0" in metrics
    page = get(base, "/abc")
    assert "dask-abc" in page and "cdn.bokeh.org" not in page and '"abc/data/all"' in page
    assert "Posterior of theta (model slow_model)" in page
    # the dashboard's menu (rendered by Dask's own pages) lists the page
    assert '<a href="abc">' in get(base, "/status")


def test_state_from_events():
    state = ABCState()
    state.update({"kind": "start", "run": "run 1"})
    state.update({"kind": "status", "generation": 0, "accepted": 10, "population": 20})
    state.update({"kind": "generation", "t": 0, "epsilon": 1.5, "acceptance_rate": 0.5,
                  "ess": 18.0, "samples": 40, "failed_samples": 3, "seconds": 0.1,
                  "model_probabilities": {"a": 0.25, "b": 0.75},
                  "posterior": [{"model": "a", "parameter": "x", "edges": [0.0, 1.0, 2.0],
                                 "density": [0.5, 0.5]}]})
    assert state.status["run"] == ["run 1"] and state.status["accepted"] == [10]
    assert state.generations["epsilon"] == [1.5]
    assert state.generations["failed_samples"] == [3]
    assert state.model_probabilities == {"t": [0, 0], "model": [0, 1], "name": ["a", "b"],
                                         "p": [0.25, 0.75]}
    assert state.posterior == {"name": ["a: x"] * 2, "model": ["a"] * 2,
                               "parameter": ["x"] * 2, "left": [0.0, 1.0],
                               "right": [1.0, 2.0], "density": [0.5, 0.5]}
    assert state.marginals() == [("a", "x")]
    state.update({"kind": "generation", "t": 1, "epsilon": 1.0, "acceptance_rate": 0.5,
                  "ess": 18.0, "samples": 40, "seconds": 0.1})  # from an older dask-abc
    assert state.generations["failed_samples"] == [3, None]


def test_posterior_names_split_at_the_model():
    assert _model_and_parameter("m: a: b", ["m", "m: a"]) == ("m: a", "b")
    assert _model_and_parameter("gauss: mu", ["gauss"]) == ("gauss", "mu")


def test_any_sampler_reports_to_the_current_clients_dashboard(client, tmp_path):
    """A run without Dask sampling (here single-core) still shows on the page of the
    session's Dask client."""
    base = client.dashboard_link.rsplit("/", 1)[0]
    smc = abc.ABCSMC(slow_model, abc.Distribution(theta=abc.RV("norm", 0, 3)),
                     population_size=50, seed=4, sampler=abc.sampler.SingleCoreSampler())
    db = tmp_path / "single.db"
    smc.new(f"sqlite:///{db}", {"y": 1.0})
    smc.run(max_nr_populations=2).close()

    def latest():
        status = json.loads(get(base, "/abc/data/status"))
        return status["run"][0], status["generation"][0], status["accepted"][0]

    deadline = time.monotonic() + 30
    while latest() != (f"run 1 of sqlite:///{db}", 1, 50):  # events arrive asynchronously
        assert time.monotonic() < deadline, latest()
        time.sleep(0.1)


# -- the load of the workers, at scale ----------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_cluster(load: ClusterLoad, workers: int, hosts: int, slots: int = 4) -> list[str]:
    addresses = [f"tcp://10.0.{i % hosts}.1:{4000 + i}" for i in range(workers)]
    for address in addresses:
        load.add_worker(address, address[6:].split(":")[0], slots)
    return addresses


def run_ranges(load, clock, addresses, seconds, per_second=lambda address: 4, skip=()):
    """Every worker returns one range a second of ``per_second(address)`` evaluations."""
    for _ in range(seconds):
        clock.now += 1.0
        for address in addresses:
            if address in skip:
                continue
            key = f"abc-range-tok-{clock.now:.0f}-{address}-1-0"
            load.range_started(key, address)
            load.range_stopped(key)
            load.range_finished(address, per_second(address), 1.0)


def test_1000_workers_on_50_hosts_summarised_in_bounded_size_naming_the_slow():
    clock = Clock()
    load = ClusterLoad(window=30, slowest=5, bins=20, clock=clock)
    addresses = fake_cluster(load, 1000, 50)
    slow = {a for a in addresses if a.startswith("tcp://10.0.3.1:")}  # half speed
    idle = {a for a in addresses if a.startswith("tcp://10.0.7.1:")}  # stopped delivering
    run_ranges(load, clock, addresses, 60, lambda a: 2 if a in slow else 4)
    run_ranges(load, clock, addresses, 60, lambda a: 2 if a in slow else 4, skip=idle)
    for i, address in enumerate(addresses):  # a range running on every worker but idle ones
        if address not in idle:
            load.range_started(f"abc-range-tok-x-{i}-1-0", address)
    summary = load.summary()
    assert (summary["unit"], summary["workers"], summary["hosts"]) == ("host", 1000, 50)
    assert (summary["slots"], summary["busy"], summary["idle"]) == (4000, 980, 1)
    slowest = summary["slowest"]
    assert slowest["name"][:2] == ["10.0.7.1", "10.0.3.1"]  # idle first, then slow
    assert slowest["busy"][:2] == [0, 20] and slowest["slots"][0] == 80
    assert slowest["relative"][1] == pytest.approx(0.5, abs=0.01)
    assert slowest["rate"][2] == pytest.approx(1.0, rel=0.03)  # 4 per s on 4 slots
    assert len(slowest["name"]) == 5 and sum(summary["histogram"]["count"]) == 50
    assert len(summary["histogram"]["left"]) == 20


def test_the_summary_does_not_grow_with_the_cluster():
    def size(workers, hosts):
        clock = Clock()
        load = ClusterLoad(slowest=10, bins=20, history=50, clock=clock)
        addresses = fake_cluster(load, workers, hosts)
        run_ranges(load, clock, addresses, 3)
        for _ in range(100):
            load.sample(at=0.0)
        summary = load.summary()
        lists = [len(v) for part in summary.values() if isinstance(part, dict)
                 for v in part.values()]
        return lists, len(json.dumps(summary))

    small, big = size(40, 20), size(5000, 500)
    assert small[0] == big[0]  # the same columns of the same lengths
    assert big[1] < 6000 and big[1] < 1.3 * small[1]


def test_a_late_worker_is_not_slow_and_busy_counts_slots_not_queued_ranges():
    clock = Clock()
    load = ClusterLoad(window=20, clock=clock)
    early = fake_cluster(load, 2, 2, slots=2)
    run_ranges(load, clock, early, 100, lambda a: 2)
    load.add_worker("tcp://10.0.9.1:4000", "10.0.9.1", 2)
    run_ranges(load, clock, [*early, "tcp://10.0.9.1:4000"], 5, lambda a: 2)
    rates = dict(zip(load.summary()["slowest"]["name"], load.summary()["slowest"]["rate"]))
    assert rates["10.0.9.1"] == pytest.approx(rates["10.0.0.1"], rel=0.01)
    for i in range(5):  # 5 ranges sent to a worker of 2 slots: 2 busy
        load.range_started(f"abc-range-q-{i}-1-0", early[0])
    assert (load.busy, load.slots) == (2, 6)
    load.range_stopped("abc-range-q-0-1-0")
    assert load.busy == 2
    load.remove_worker(early[0])  # its ranges go with it
    assert (load.busy, load.slots, len(load.hosts)) == (0, 4, 2)
    load.range_stopped("abc-range-q-1-1-0")  # released after the worker left: ignored
    assert load.busy == 0 and load.summary()["workers"] == 2


class Untouchable:
    """What the plugin must not walk on a poll or in a transition."""

    def __iter__(self):
        raise AssertionError("walked over all of them")

    def __len__(self):
        raise AssertionError("walked over all of them")


class Tasks(Untouchable):
    def __init__(self):
        self.by_key = {}

    def get(self, key, default=None):
        return self.by_key.get(key, default)


def test_the_plugin_follows_ranges_in_constant_time_and_polls_without_walking_tasks():
    workers = {f"tcp://10.1.{i % 100}.1:{5000 + i}":
               SimpleNamespace(address=f"tcp://10.1.{i % 100}.1:{5000 + i}",
                               host=f"10.1.{i % 100}.1", nthreads=8, processing=Untouchable())
               for i in range(1000)}
    scheduler = SimpleNamespace(workers=workers, tasks=Tasks(), http_application=None)
    plugin = ABCDashboardPlugin()

    async def run():
        await plugin.start(scheduler)
        try:
            sizes = []
            for round_ in range(3):
                for i, ws in enumerate(workers.values()):
                    key = f"abc-range-tok-{round_ * 1000 + i}-7-0"
                    scheduler.tasks.by_key[key] = SimpleNamespace(processing_on=ws)
                    plugin.transition(key, "waiting", "processing", stimulus_id="s")
                    if i % 2:
                        plugin.transition(key, "processing", "memory", stimulus_id="s",
                                          worker=ws.address, startstops=[
                                              {"action": "compute", "start": 1.0,
                                               "stop": 1.5}])
                    plugin.transition("other-task", "waiting", "processing", stimulus_id="s")
                sizes.append(len(json.dumps(plugin.state.all())))
            return sizes
        finally:
            await plugin.close()

    sizes = asyncio.run(run())
    summary = plugin.state.all()["workers"]
    assert (summary["workers"], summary["hosts"], summary["slots"]) == (1000, 100, 8000)
    assert summary["busy"] == 1500 and summary["evaluations"] == 3 * 500 * 7
    assert summary["slowest"]["seconds_per_evaluation"][0] == pytest.approx(0.5 / 7)
    assert max(sizes) < 10_000
