"""Shared models and assertions for the tests."""

from __future__ import annotations

import socket

import numpy as np

import dask_abc as abc


def gaussian_model(parameter):
    """y ~ N(theta, 1)."""
    return {"y": parameter["theta"] + np.random.normal()}


def gaussian_prior():
    return abc.Distribution(theta=abc.RV("norm", 0, 3))


def weighted_mean_sd(history, m=0, t=None, name="theta"):
    df, w = history.get_distribution(m, t)
    mean = float(np.sum(w * df[name]))
    return mean, float(np.sqrt(np.sum(w * (df[name] - mean) ** 2)))


def assert_histories_equal(h1, h2):
    """Same generations, epsilons, evaluation counts (and failed ones), particles, weights,
    distances."""
    assert h1.max_t == h2.max_t
    p1, p2 = h1.get_all_populations(), h2.get_all_populations()
    assert p1["t"].tolist() == p2["t"].tolist()
    assert p1["samples"].tolist() == p2["samples"].tolist()
    assert p1["failed_samples"].tolist() == p2["failed_samples"].tolist()
    assert p1["epsilon"].tolist() == p2["epsilon"].tolist()
    assert h1.total_nr_simulations == h2.total_nr_simulations
    for t in range(h1.max_t + 1):
        a, b = h1.get_population_arrays(t), h2.get_population_arrays(t)
        for key in a:
            assert np.array_equal(a[key], b[key], equal_nan=True), (t, key)
    assert h1.get_model_probabilities().equals(h2.get_model_probabilities())


class SleepingModel:
    """y ~ N(theta, 1) from the ``rng`` it is given, after sleeping ``seconds`` (which
    releases the GIL, as an external simulator does).

    Each simulation appends its start and end time to a file of its process and thread
    in ``directory``, so :func:`peak_concurrency` can tell afterwards how many ran at
    once, across threads and processes (the model is pickled by reference: its workers
    need this directory on their ``PYTHONPATH``).
    """

    __name__ = "sleeping_model"

    def __init__(self, directory, seconds: float):
        self.directory, self.seconds = str(directory), seconds

    def __call__(self, parameter, rng):
        import os
        import threading
        import time

        start = time.time()
        time.sleep(self.seconds)
        path = os.path.join(self.directory, f"{os.getpid()}-{threading.get_ident()}.log")
        with open(path, "a") as log:
            log.write(f"{start} {time.time()}\n")
        return {"y": parameter["theta"] + rng.normal()}


def peak_concurrency(directory, since: float = float("-inf"),
                     until: float = float("inf")) -> int:
    """The most simulations of a :class:`SleepingModel` that ran at the same time (of
    those that started between ``since`` and ``until``, ``time.time()`` values)."""
    from pathlib import Path

    events = []
    for path in Path(directory).glob("*.log"):
        for line in path.read_text().splitlines():
            start, end = map(float, line.split())
            if since <= start < until:
                events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def max_t_of(db) -> int:
    """The last generation stored in the database file ``db``; -2 while there is none."""
    try:
        with abc.History(f"sqlite:///{db}", create=False) as h:
            return h.max_t
    except abc.DatabaseError:
        return -2
