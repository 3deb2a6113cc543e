"""Writing generations: the calibration sample and each population, one transaction each.

A generation's transaction writes its row in ``populations``, the model
probabilities, one row per particle (index, model, weight, distance) and the
parameter and statistic arrays as columnar blobs in index order; it deletes the
ranges the journal streamed while the generation ran and renews the master's
heartbeat.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np

from ..population import Population
from . import journal
from .lock import RunLock
from .runs import Runs
from .schema import PRE_TIME, now, to_blob
from .sqlite import transaction


class Writer:
    """Write the generations of the current run of ``runs``, renewing ``lock``.

    Examples
    --------
    >>> from dask_abc.storage.schema import Database
    >>> runs = Runs(Database("sqlite://"), None)
    >>> runs.current = 1  # as if a run had been created
    >>> Writer(runs, RunLock(runs)).store_calibration(samples=100, seconds=0.5)
    >>> runs.conn.execute("SELECT t, samples FROM populations").fetchall()
    [(-1, 100)]
    """

    def __init__(self, runs: Runs, lock: RunLock):
        self.runs = runs
        self.lock = lock

    @contextmanager
    def _generation(self, t: int):
        """The transaction writing generation ``t``: it also deletes the ranges the
        journal streamed of ``t`` and earlier generations, and renews the lock."""
        conn, abc_id = self.runs.conn, self.runs.id
        with transaction(conn):
            yield conn, abc_id
            journal.discard(conn, abc_id, t)
            self.lock.refresh()

    def store_calibration(self, samples: int, seconds: float, theta: np.ndarray | None = None,
                          sum_stats: np.ndarray | None = None,
                          evaluations_performed: int | None = None,
                          failed_samples: int = 0) -> None:
        """Record the calibration sample (generation -1), its cost (and how many of its
        evaluations failed), and its parameters and statistics (from which a resumed run
        calibrates again without simulating)."""
        if evaluations_performed is None:
            evaluations_performed = samples
        with self._generation(PRE_TIME) as (conn, abc_id):
            _insert(conn, "populations", replace=True, abc_id=abc_id, t=PRE_TIME,
                    epsilon=float("inf"), samples=samples,
                    evaluations_performed=evaluations_performed, population_end_time=now(),
                    seconds=seconds, failed_samples=int(failed_samples))
            if sum_stats is not None:
                _insert(conn, "population_arrays", replace=True, abc_id=abc_id, t=PRE_TIME,
                        theta=to_blob(theta), sum_stats=to_blob(sum_stats))

    def append_population(self, t: int, population: Population, *, epsilon: float,
                          evaluations_performed: int | None = None, seconds: float = 0.0,
                          state: Mapping | None = None, failed_samples: int = 0) -> None:
        """Write generation ``t`` (its :class:`~dask_abc.population.Population`) in one
        transaction; the calibration's streamed ranges are deleted too. ``failed_samples``:
        the failed evaluations among the generation's ``samples``."""
        index = population.index
        with self._generation(t) as (conn, abc_id):
            _insert(conn, "populations", abc_id=abc_id, t=t, epsilon=float(epsilon),
                    samples=int(population.samples),
                    evaluations_performed=int(population.samples if evaluations_performed
                                              is None else evaluations_performed),
                    failed_samples=int(failed_samples), population_end_time=now(),
                    seconds=float(seconds), ess=population.ess,
                    acceptance_rate=population.acceptance_rate, state=json.dumps(state or {}))
            conn.executemany(
                "INSERT INTO model_probabilities VALUES (?, ?, ?, ?)",
                [(abc_id, t, m, float(p)) for m, p in enumerate(population.model_probabilities)])
            conn.executemany(
                "INSERT INTO particles VALUES (?, ?, ?, ?, ?, ?)",
                zip([abc_id] * len(index), [t] * len(index), index.tolist(),
                    population.model.tolist(), population.weight.tolist(),
                    population.distance.tolist()))
            _insert(conn, "population_arrays", abc_id=abc_id, t=t,
                    theta=to_blob(population.theta), sum_stats=to_blob(population.sum_stats))


def _insert(conn: sqlite3.Connection, table: str, replace: bool = False, **values) -> None:
    """One row of ``values`` (column -> value) into ``table`` (replacing one with its key)."""
    conn.execute(f"INSERT {'OR REPLACE ' if replace else ''}INTO {table} ({', '.join(values)}) "
                 f"VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
