"""The ABC page on the Dask dashboard, fed live by a running inference."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import dask_abc as abc
from dask_abc.dashboard.plugin import ABCState


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
    # both workers evaluated; every evaluation the master received ran on one of them
    workers = json.loads(get(base, "/abc/data/workers"))
    assert len(workers["worker"]) == 2 and min(workers["evaluations"]) > 0
    with abc.History(f"sqlite:///{tmp_path / 'run.db'}", create=False) as h:
        performed = int(pd.read_sql_query("SELECT SUM(evaluations_performed) AS n FROM "
                                          "populations", h.conn)["n"][0])
    assert sum(workers["evaluations"]) >= performed
    metrics = get(base, "/metrics")
    assert "dask_abc_generation 2.0" in metrics and "dask_abc_accepted 300.0" in metrics
    page = get(base, "/abc")
    assert "dask-abc" in page and "cdn.bokeh.org" not in page and "/abc/data/all" in page


def test_state_from_events():
    state = ABCState()
    state.update({"kind": "start", "run": "run 1"})
    state.update({"kind": "status", "generation": 0, "accepted": 10, "population": 20})
    state.update({"kind": "generation", "t": 0, "epsilon": 1.5, "acceptance_rate": 0.5,
                  "ess": 18.0, "samples": 40, "seconds": 0.1,
                  "model_probabilities": {"a": 0.25, "b": 0.75},
                  "posterior": {"a: x": ([0.0, 1.0, 2.0], [0.5, 0.5])}})
    assert state.status["run"] == ["run 1"] and state.status["accepted"] == [10]
    assert state.generations["epsilon"] == [1.5]
    assert state.model_probabilities == {"t": [0, 0], "model": [0, 1], "name": ["a", "b"],
                                         "p": [0.25, 0.75]}
    assert state.posterior == {"name": ["a: x"] * 2, "left": [0.0, 1.0], "right": [1.0, 2.0],
                               "density": [0.5, 0.5]}


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
