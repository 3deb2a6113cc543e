"""Reading completed generations: pyABC's read API of the History.

Weights are normalised over each whole population; parameters come back per
model (:meth:`Reader.get_distribution`) or in one table over all models with
NaN where a model lacks a parameter (:meth:`Reader.get_population_extended`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..population import Population
from .errors import DatabaseError
from .runs import Runs
from .schema import PRE_TIME, from_blob


class Reader:
    """Read the generations of the current run of ``runs``.

    Examples
    --------
    >>> from dask_abc.storage.schema import Database
    >>> Reader(Runs(Database("sqlite://"))).max_t
    -1
    """

    def __init__(self, runs: Runs):
        self.runs = runs

    @property
    def max_t(self) -> int:
        """The last completed generation (-1 if none)."""
        if self.runs.current is None:
            return PRE_TIME
        row = self.runs.conn.execute("SELECT MAX(t) FROM populations WHERE abc_id=? AND t>=0",
                                     (self.runs.current,)).fetchone()
        return PRE_TIME if row[0] is None else int(row[0])

    @property
    def n_populations(self) -> int:
        return self.max_t + 1

    @property
    def total_nr_simulations(self) -> int:
        """Evaluations of all generations, the calibration sample included."""
        row = self.runs.conn.execute("SELECT SUM(samples) FROM populations WHERE abc_id=?",
                                     (self.runs.id,)).fetchone()
        return int(row[0] or 0)

    def generation(self, t: int | str | None) -> int:
        """The completed generation ``t`` (None or "last": the last one), checked."""
        max_t = self.max_t
        if t is None or t == "last":
            t = max_t
        if not 0 <= t <= max_t:
            raise DatabaseError(f"run {self.runs.id} of {self.runs.db!r} has no generation t={t} "
                                f"(generations 0..{max_t})")
        return int(t)

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        """``sql`` with the current run's id as its first parameter, as a DataFrame."""
        return pd.read_sql_query(sql, self.runs.conn, params=(self.runs.id, *params))

    def get_all_populations(self) -> pd.DataFrame:
        """Columns t, population_end_time, samples, epsilon, particles (t=-1: calibration)
        and failed_samples (evaluations among the samples whose simulation raised, with
        ``model_errors="reject"``)."""
        df = self._query(
            "SELECT p.t, p.population_end_time, p.samples, p.epsilon, "
            "(SELECT COUNT(*) FROM particles q WHERE q.abc_id=p.abc_id AND q.t=p.t) AS particles, "
            "p.failed_samples "
            "FROM populations p WHERE p.abc_id=? ORDER BY p.t")
        df["population_end_time"] = pd.to_datetime(df["population_end_time"])
        return df

    def get_generation_info(self) -> pd.DataFrame:
        """Per generation: epsilon, samples, evaluations performed, acceptance rate, ESS,
        seconds and failed samples."""
        return self._query(
            "SELECT t, epsilon, samples, evaluations_performed, acceptance_rate, ess, seconds, "
            "failed_samples FROM populations WHERE abc_id=? AND t>=0 ORDER BY t")

    def get_nr_particles_per_population(self) -> pd.Series:
        df = self._query("SELECT t, COUNT(*) AS n FROM particles WHERE abc_id=? GROUP BY t")
        return df.set_index("t")["n"]

    def get_state(self, t: int) -> dict:
        """The state of the adaptive components stored with generation ``t``."""
        row = self.runs.conn.execute("SELECT state FROM populations WHERE abc_id=? AND t=?",
                                     (self.runs.id, self.generation(t))).fetchone()
        return json.loads(row[0] or "{}")

    def _arrays(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
        row = self.runs.conn.execute(
            "SELECT theta, sum_stats FROM population_arrays WHERE abc_id=? AND t=?",
            (self.runs.id, t)).fetchone()
        return None if row is None else (from_blob(row[0]), from_blob(row[1]))

    def get_calibration_arrays(self) -> dict[str, np.ndarray] | None:
        """Parameters and statistics of the calibration sample (None if not stored)."""
        arrays = self._arrays(PRE_TIME)
        return None if arrays is None else dict(zip(("theta", "sum_stats"), arrays))

    def get_population_arrays(self, t: int | None = None) -> dict[str, np.ndarray]:
        """Generation ``t`` as arrays in index order: index, model, theta, weight, distance,
        sum_stats; weights are normalised over the whole population."""
        return self._population_arrays(self.generation(t))

    def _population_arrays(self, t: int) -> dict[str, np.ndarray]:
        rows = np.array(self.runs.conn.execute(
            "SELECT idx, m, weight, distance FROM particles WHERE abc_id=? AND t=? ORDER BY idx",
            (self.runs.id, t)).fetchall(), dtype=float).reshape(-1, 4)
        theta, sum_stats = self._arrays(t)
        return {"index": rows[:, 0].astype(np.int64), "model": rows[:, 1].astype(int),
                "weight": rows[:, 2], "distance": rows[:, 3],
                "theta": theta, "sum_stats": sum_stats}

    def population(self, t: int | None = None) -> Population:
        """Generation ``t`` (default the last) as the
        :class:`~dask_abc.population.Population` it was stored from."""
        t = self.generation(t)
        conn, abc_id = self.runs.conn, self.runs.id
        samples, = conn.execute("SELECT samples FROM populations WHERE abc_id=? AND t=?",
                                (abc_id, t)).fetchone()
        probabilities = np.zeros(len(self.runs.model_names))
        for m, p in conn.execute("SELECT m, p FROM model_probabilities WHERE abc_id=? AND t=?",
                                 (abc_id, t)):
            probabilities[m] = p
        return Population(t=t, model_probabilities=probabilities, samples=int(samples),
                          **self._population_arrays(t))

    def get_distribution(self, m: int = 0, t: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """Parameters of model ``m`` in generation ``t`` (default last) and their weights,
        normalised to sum 1 within the model."""
        pop = self.get_population_arrays(t)
        names = self.runs.parameter_names[m]
        rows = np.flatnonzero(pop["model"] == m)
        df = pd.DataFrame(pop["theta"][rows, : len(names)], columns=pd.Index(names, name="name"),
                          index=pd.Index(pop["index"][rows], name="id"))
        w = pop["weight"][rows]
        return df, (w / w.sum() if len(w) else w)

    def get_model_probabilities(self, t: int | None = None) -> pd.DataFrame:
        """One row per generation, one column per model."""
        query = "SELECT t, m, p FROM model_probabilities WHERE abc_id=?"
        params: tuple = ()
        if t is not None:
            query += " AND t=?"
            params = (self.generation(t),)
        table = self._query(query, params).pivot(index="t", columns="m", values="p")
        table.columns = table.columns.astype(int)
        table.columns.name = "m"
        return table.reindex(columns=range(len(self.runs.model_names)),
                             fill_value=0.0).fillna(0.0)

    def alive_models(self, t: int | None = None) -> list[int]:
        """The models with a positive probability in generation ``t`` (default last)."""
        probs = self.get_model_probabilities(self.generation(t)).iloc[0]
        return [int(m) for m, p in probs.items() if p > 0]

    def get_weighted_distances(self, t: int | None = None) -> pd.DataFrame:
        """Columns distance and w (weights over the whole population, summing to 1)."""
        pop = self.get_population_arrays(t)
        return pd.DataFrame({"distance": pop["distance"], "w": pop["weight"]})

    def get_weighted_sum_stats(self, t: int | None = None) -> tuple[list[float], list[dict]]:
        """Weights and statistics (dicts) of all particles of generation ``t``."""
        pop = self.get_population_arrays(t)
        layout = self.runs.sum_stat_layout
        return pop["weight"].tolist(), [layout.unflatten(x) for x in pop["sum_stats"]]

    def get_weighted_sum_stats_for_model(self, m: int = 0, t: int | None = None
                                         ) -> tuple[list[float], list[dict]]:
        """Weights (normalised within model ``m``) and statistics of its particles."""
        pop = self.get_population_arrays(t)
        layout = self.runs.sum_stat_layout
        rows = np.flatnonzero(pop["model"] == m)
        w = pop["weight"][rows]
        return (w / w.sum()).tolist(), [layout.unflatten(x) for x in pop["sum_stats"][rows]]

    def get_population_extended(self, m: int | None = None, t: int | str = "last") -> pd.DataFrame:
        """One row per particle: t, m, w, distance, ``par_<name>`` and ``sumstat_<key>``."""
        t = self.generation(t)
        pop = self.get_population_arrays(t)
        frame = {"t": t, "m": pop["model"], "w": pop["weight"], "distance": pop["distance"]}
        for name, col in parameter_columns(self.runs.parameter_names, pop["model"],
                                           pop["theta"]).items():
            frame[f"par_{name}"] = col
        for c, name in enumerate(self.runs.sum_stat_layout.column_names()):
            frame[f"sumstat_{name}"] = pop["sum_stats"][:, c]
        df = pd.DataFrame(frame, index=pd.Index(pop["index"], name="id"))
        return df if m is None else df[df["m"] == m]


def parameter_columns(names: list[list[str]], model: np.ndarray, theta: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """One column per parameter name over all models (NaN where a model lacks it).

    Examples
    --------
    >>> parameter_columns([["a"], ["a", "b"]], np.array([0, 1]), np.array([[1.0, 9], [2, 3]]))
    {'a': array([1., 2.]), 'b': array([nan,  3.])}
    """
    columns = {}
    for name in sorted({n for model_names in names for n in model_names}):
        col = np.full(len(model), np.nan)
        for j, model_names in enumerate(names):
            if name in model_names:
                rows = model == j
                col[rows] = theta[rows, model_names.index(name)]
        columns[name] = col
    return columns
