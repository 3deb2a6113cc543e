"""Writing generations: the calibration sample and each population, one transaction each.

A generation's transaction writes its row in ``populations``, the model
probabilities, one row per particle (index, model, weight, distance) and the
parameter and statistic arrays as columnar blobs in index order; it deletes the
ranges the journal streamed while the generation ran and renews the master's
heartbeat.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

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
    >>> runs = Runs(Database("sqlite://"))
    >>> runs.current = 1  # a run id, for the example
    >>> Writer(runs, RunLock(runs)).store_calibration(samples=100, seconds=0.5)
    >>> runs.conn.execute("SELECT t, samples FROM populations").fetchall()
    [(-1, 100)]
    """

    def __init__(self, runs: Runs, lock: RunLock):
        self.runs = runs
        self.lock = lock

    def store_calibration(self, samples: int, seconds: float, theta: np.ndarray | None = None,
                          sum_stats: np.ndarray | None = None,
                          evaluations_performed: int | None = None) -> None:
        """Record the calibration sample (generation -1), its cost, and its parameters and
        statistics (from which a resumed run calibrates again without simulating)."""
        conn, abc_id = self.runs.conn, self.runs.id
        with transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO populations (abc_id, t, epsilon, samples, "
                "evaluations_performed, population_end_time, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (abc_id, PRE_TIME, float("inf"), samples,
                 samples if evaluations_performed is None else evaluations_performed, now(),
                 seconds))
            if sum_stats is not None:
                conn.execute("INSERT OR REPLACE INTO population_arrays VALUES (?, ?, ?, ?)",
                             (abc_id, PRE_TIME, to_blob(theta), to_blob(sum_stats)))
            journal.discard(conn, abc_id, PRE_TIME)
            self.lock.refresh()

    def append_population(self, t: int, *, epsilon: float, samples: int,
                          evaluations_performed: int, seconds: float, ess: float,
                          index: np.ndarray, model: np.ndarray, theta: np.ndarray,
                          weight: np.ndarray, distance: np.ndarray, sum_stats: np.ndarray,
                          model_probabilities: np.ndarray, state: Mapping | None = None) -> None:
        """Write generation ``t`` in one transaction."""
        conn, abc_id = self.runs.conn, self.runs.id
        with transaction(conn):
            conn.execute(
                "INSERT INTO populations (abc_id, t, epsilon, samples, evaluations_performed, "
                "population_end_time, seconds, ess, acceptance_rate, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (abc_id, t, float(epsilon), int(samples), int(evaluations_performed), now(),
                 float(seconds), float(ess), len(index) / samples,
                 json.dumps(state or {})))
            conn.executemany(
                "INSERT INTO model_probabilities VALUES (?, ?, ?, ?)",
                [(abc_id, t, m, float(p)) for m, p in enumerate(model_probabilities)])
            conn.executemany(
                "INSERT INTO particles VALUES (?, ?, ?, ?, ?, ?)",
                zip([abc_id] * len(index), [t] * len(index), index.tolist(), model.tolist(),
                    weight.tolist(), distance.tolist()))
            conn.execute("INSERT INTO population_arrays VALUES (?, ?, ?, ?)",
                         (abc_id, t, to_blob(theta), to_blob(sum_stats)))
            # the streamed ranges of this generation (and the calibration's) are done with
            journal.discard(conn, abc_id, t, earlier=True)
            self.lock.refresh()
