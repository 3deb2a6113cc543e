"""The History: runs, generations and particles in a SQLite database.

One file holds any number of runs (``abc_id``). A generation is written in one
transaction: its row in ``populations``, the model probabilities, one row per
particle (index, model, weight, distance) and the parameter and statistic
arrays as columnar blobs in index order. While a generation runs, its evaluated
index ranges are streamed to ``partial_batches`` (see
:mod:`~dask_abc.storage.journal`); they are deleted in the transaction that
commits the generation. A run also stores its setup (a cloudpickle and a
structural description, see :mod:`~dask_abc.fingerprint`), the arguments of the
``run()`` call in progress, and the lock of the master that runs it.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping

import cloudpickle
import numpy as np
import pandas as pd

from .. import config
from ..sumstat import SumStatLayout
from .journal import Journal, merge_consecutive, read_batches
from .sqlite import connect, transaction

SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dask_abc_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS abc_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start_time TEXT, end_time TEXT, seed TEXT,
    model_names TEXT, parameter_names TEXT, sum_stat_layout TEXT,
    observed BLOB, observed_flat BLOB,
    gt_model INTEGER, gt_par TEXT, meta_info TEXT, stop_reason TEXT,
    setup BLOB, setup_description TEXT, setup_hash TEXT, run_call TEXT
);
CREATE TABLE IF NOT EXISTS populations (
    abc_id INTEGER NOT NULL REFERENCES abc_runs(id), t INTEGER NOT NULL,
    epsilon REAL, samples INTEGER, evaluations_performed INTEGER,
    population_end_time TEXT, seconds REAL, ess REAL, acceptance_rate REAL,
    state TEXT,
    PRIMARY KEY (abc_id, t)
);
CREATE TABLE IF NOT EXISTS model_probabilities (
    abc_id INTEGER NOT NULL, t INTEGER NOT NULL, m INTEGER NOT NULL, p REAL,
    PRIMARY KEY (abc_id, t, m)
);
CREATE TABLE IF NOT EXISTS particles (
    abc_id INTEGER NOT NULL, t INTEGER NOT NULL, idx INTEGER NOT NULL,
    m INTEGER, weight REAL, distance REAL,
    PRIMARY KEY (abc_id, t, idx)
);
CREATE TABLE IF NOT EXISTS population_arrays (
    abc_id INTEGER NOT NULL, t INTEGER NOT NULL, theta BLOB, sum_stats BLOB,
    PRIMARY KEY (abc_id, t)
);
"""

# what version 2 added to version 1 (abc_runs also got the columns setup .. run_call)
_ADDED_IN_2 = """
CREATE TABLE IF NOT EXISTS partial_batches (
    abc_id INTEGER NOT NULL, t INTEGER NOT NULL, start INTEGER NOT NULL, stop INTEGER,
    n_evaluated INTEGER, n_accepted INTEGER, epsilon REAL, data BLOB,
    PRIMARY KEY (abc_id, t, start)
);
CREATE TABLE IF NOT EXISTS run_locks (
    abc_id INTEGER PRIMARY KEY, host TEXT, pid INTEGER, process_started REAL,
    since TEXT, heartbeat REAL
);
"""
_RUN_COLUMNS_ADDED_IN_2 = ("setup BLOB", "setup_description TEXT", "setup_hash TEXT",
                          "run_call TEXT")

PRE_TIME = -1  # the calibration sample's generation


class DatabaseError(ValueError):
    """The database is closed, not a dask-abc database, or lacks what was asked for."""


class RunLockedError(DatabaseError):
    """Another live master is running this run."""


def _to_blob(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _from_blob(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


def database_path(db: str) -> str:
    """The file path of a ``sqlite:///`` URL (or a plain path); ``:memory:`` for ``sqlite://``.

    Examples
    --------
    >>> database_path("sqlite:///run.db"), database_path("sqlite:////tmp/run.db")
    ('run.db', '/tmp/run.db')
    """
    if not isinstance(db, str | os.PathLike):
        raise DatabaseError(f"db must be a 'sqlite:///path' URL or a path, got {db!r}")
    db = os.fspath(db)
    if db in ("sqlite://", "sqlite:///:memory:", ":memory:"):
        return ":memory:"
    if db.startswith("sqlite:///"):
        return db[len("sqlite:///"):]
    if "://" in db:
        raise DatabaseError(f"unsupported database URL {db!r}: dask-abc stores runs in SQLite "
                            "('sqlite:///relative.db', 'sqlite:////absolute.db', 'sqlite://')")
    return db


class History:
    """Read and write runs in a SQLite database (pyABC's read API).

    Parameters
    ----------
    db : str
        ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://``
        (in memory) or a file path.
    stores_sum_stats : bool
        Accepted for pyABC; statistics are always stored.
    _id : int, optional
        pyABC's name for ``abc_id``.
    create : bool
        Create the file and tables if they do not exist.
    abc_id : int, optional
        The run to read; default the latest.

    Examples
    --------
    >>> h = History("sqlite://")
    >>> h.n_populations
    0
    """

    PRE_TIME = PRE_TIME

    def __init__(self, db: str, stores_sum_stats: bool = True, _id: int | None = None,
                 create: bool = True, *, abc_id: int | None = None):
        self.db = db
        self.path = database_path(db)
        self._id = None
        if self.path != ":memory:":
            if not create and not os.path.exists(self.path):
                raise DatabaseError(f"database {db!r} does not exist")
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise DatabaseError(f"cannot create database {db!r}: folder {folder} does not "
                                    "exist")
        self._conn: sqlite3.Connection | None = None
        self._connect(create)
        ids = self._run_ids()
        abc_id = abc_id if abc_id is not None else _id
        if abc_id is not None and abc_id not in ids:
            raise DatabaseError(f"database {db!r} has no run with abc_id={abc_id} "
                                f"(runs: {ids or 'none'})")
        self._id = abc_id if abc_id is not None else (ids[-1] if ids else None)

    # -- connection ----------------------------------------------------------

    def _connect(self, create: bool) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise DatabaseError(f"{self.db!r} is not a SQLite database ({e})") from None
        conn.close()
        if tables and "dask_abc_meta" not in tables:
            kind = "a pyABC database" if "abc_smc" in tables else "not a dask-abc database"
            raise DatabaseError(f"{self.db!r} is {kind} (it has tables {sorted(tables)})")
        conn = connect(self.path)
        if not tables:
            if not create:
                conn.close()
                raise DatabaseError(f"{self.db!r} is an empty database, not a dask-abc database")
            conn.executescript(_SCHEMA + _ADDED_IN_2)
            conn.execute("INSERT INTO dask_abc_meta VALUES ('schema_version', ?)",
                         (SCHEMA_VERSION,))
        else:
            version = conn.execute(
                "SELECT value FROM dask_abc_meta WHERE key='schema_version'").fetchone()
            if version and version[0] == "1":
                self._migrate_1_to_2(conn)
            elif not version or version[0] != SCHEMA_VERSION:
                conn.close()
                raise DatabaseError(
                    f"{self.db!r} has dask-abc schema version {version and version[0]}, "
                    f"this dask-abc reads {SCHEMA_VERSION}")
        self._conn = conn

    @staticmethod
    def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
        with transaction(conn):
            for column in _RUN_COLUMNS_ADDED_IN_2:
                conn.execute(f"ALTER TABLE abc_runs ADD COLUMN {column}")
            for statement in _ADDED_IN_2.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("UPDATE dask_abc_meta SET value=? WHERE key='schema_version'",
                         (SCHEMA_VERSION,))

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError(f"History({self.db!r}) is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection; any later use raises :class:`DatabaseError`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        raise TypeError("a History holds a database connection and is not sent to workers")

    def __repr__(self) -> str:
        return f"<History {self.db!r} abc_id={self._id}{' closed' if self.closed else ''}>"

    # -- runs ----------------------------------------------------------------

    def _run_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM abc_runs ORDER BY id")]

    @property
    def id(self) -> int:
        if self._id is None:
            raise DatabaseError(f"database {self.db!r} holds no run yet")
        return self._id

    def all_runs(self) -> pd.DataFrame:
        """One row per run in the database."""
        return pd.read_sql_query(
            "SELECT id, start_time, end_time, seed, model_names, stop_reason FROM abc_runs",
            self.conn)

    def _run(self, column: str):
        row = self.conn.execute(f"SELECT {column} FROM abc_runs WHERE id=?", (self.id,)).fetchone()
        return row[0]

    def create_run(self, *, seed: int, model_names: list[str], parameter_names: list[list[str]],
                   layout: SumStatLayout, observed: Mapping, observed_flat: np.ndarray,
                   gt_model: int | None = None, gt_par: Mapping | None = None,
                   meta_info: Mapping | None = None) -> int:
        """Store a new run's setup and make it the current one."""
        cur = self.conn.execute(
            "INSERT INTO abc_runs (start_time, seed, model_names, parameter_names, "
            "sum_stat_layout, observed, observed_flat, gt_model, gt_par, meta_info) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_now(), str(seed), json.dumps(model_names), json.dumps(parameter_names),
             json.dumps(layout.to_dict()), cloudpickle.dumps(dict(observed)),
             _to_blob(observed_flat), gt_model,
             json.dumps(dict(gt_par)) if gt_par is not None else None,
             json.dumps(dict(meta_info or {}), default=str)))
        self._id = cur.lastrowid
        return self._id

    @property
    def seed(self) -> int:
        return int(self._run("seed"))

    @property
    def model_names(self) -> list[str]:
        return json.loads(self._run("model_names"))

    @property
    def parameter_names(self) -> list[list[str]]:
        return json.loads(self._run("parameter_names"))

    @property
    def sum_stat_layout(self) -> SumStatLayout:
        return SumStatLayout.from_dict(json.loads(self._run("sum_stat_layout")))

    def observed_sum_stat(self) -> dict:
        """The observed data of the run."""
        return cloudpickle.loads(self._run("observed"))

    def get_ground_truth_parameter(self) -> dict | None:
        gt = self._run("gt_par")
        return json.loads(gt) if gt else None

    @property
    def meta_info(self) -> dict:
        return json.loads(self._run("meta_info") or "{}")

    @property
    def stop_reason(self) -> str | None:
        return self._run("stop_reason")

    def done(self, stop_reason: str, failed: bool = False) -> None:
        """Mark the run as ended, and why. A run that ``failed`` keeps its ``run()``
        arguments, so that a resume finishes that call."""
        self.conn.execute(
            "UPDATE abc_runs SET end_time=?, stop_reason=?, run_call=CASE WHEN ? THEN run_call "
            "END WHERE id=?", (_now(), stop_reason, failed, self.id))

    # -- setup and resume --------------------------------------------------------

    def store_setup(self, pickled: bytes, description: Mapping, digest: str) -> None:
        """Store the run's setup: its cloudpickle (for ``dask-abc resume``) and its
        structural description with a hash (to check a resumed setup)."""
        self.conn.execute(
            "UPDATE abc_runs SET setup=?, setup_description=?, setup_hash=? WHERE id=?",
            (pickled, json.dumps(description), digest, self.id))

    @property
    def setup_description(self) -> dict | None:
        """The stored description of the setup (None for a run stored without one)."""
        text = self._run("setup_description")
        return json.loads(text) if text else None

    @property
    def setup_hash(self) -> str | None:
        return self._run("setup_hash")

    def load_setup(self) -> dict:
        """The stored setup: the keyword arguments of :class:`~dask_abc.ABCSMC`."""
        data = self._run("setup")
        if data is None:
            raise DatabaseError(f"run {self.id} of {self.db!r} has no stored setup")
        try:
            return cloudpickle.loads(data)
        except Exception as e:
            raise DatabaseError(
                f"the setup of run {self.id} of {self.db!r} does not unpickle here "
                f"({type(e).__name__}: {e}); make the modules that define its models and "
                "functions importable, or resume from your script with ABCSMC.load()") from None

    @property
    def run_call(self) -> dict | None:
        """The ``run()`` call in progress (arguments and first generation), or None."""
        text = self._run("run_call")
        return json.loads(text) if text else None

    def store_run_call(self, call: Mapping | None) -> None:
        self.conn.execute("UPDATE abc_runs SET run_call=?, end_time=NULL, stop_reason=NULL "
                          "WHERE id=?", (json.dumps(call) if call is not None else None, self.id))

    # -- the master's lock -----------------------------------------------------------

    def acquire_lock(self) -> None:
        """Make this process the run's master.

        Raises :class:`RunLockedError` naming the owner if another master holds the
        run: a live process on this host, or one on another host whose heartbeat is
        younger than ``abc.storage.lock-timeout`` seconds. A dead owner's lock is
        taken over.
        """
        host, pid, started = _process_identity()
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT host, pid, process_started, since, heartbeat FROM run_locks "
                "WHERE abc_id=?", (self.id,)).fetchone()
            if row is not None and row[:3] != (host, pid, started) and _alive(*row):
                age = time.time() - row[4]
                raise RunLockedError(
                    f"run {self.id} of {self.db!r} is being run by another master: host "
                    f"{row[0]}, PID {row[1]}, since {row[3]} (last seen {age:.0f} s ago). "
                    "Stop that process first; a master that died on another host frees the "
                    f"run after {float(config.get('storage.lock-timeout')):.0f} s "
                    "(abc.storage.lock-timeout)")
            self.conn.execute("INSERT OR REPLACE INTO run_locks VALUES (?, ?, ?, ?, ?, ?)",
                              (self.id, host, pid, started, _now(), time.time()))

    def refresh_lock(self, conn: sqlite3.Connection | None = None) -> None:
        """Renew this master's heartbeat (on ``conn``, e.g. the journal's)."""
        host, pid, _ = _process_identity()
        (conn or self.conn).execute(
            "UPDATE run_locks SET heartbeat=? WHERE abc_id=? AND host=? AND pid=?",
            (time.time(), self.id, host, pid))

    def release_lock(self) -> None:
        host, pid, _ = _process_identity()
        self.conn.execute("DELETE FROM run_locks WHERE abc_id=? AND host=? AND pid=?",
                          (self.id, host, pid))

    def lock_owner(self) -> dict | None:
        """The master holding the run: host, pid, since, heartbeat age (or None)."""
        row = self.conn.execute("SELECT host, pid, process_started, since, heartbeat "
                                "FROM run_locks WHERE abc_id=?", (self.id,)).fetchone()
        if row is None or not _alive(*row):
            return None
        return {"host": row[0], "pid": row[1], "since": row[3],
                "seconds_since_heartbeat": time.time() - row[4]}

    def journal(self) -> Journal | None:
        """A :class:`~dask_abc.storage.journal.Journal` of this run's running generation
        (None for an in-memory database, which cannot outlive its process)."""
        if self.path == ":memory:":
            return None
        return Journal(self.path, self.id, on_write=self.refresh_lock)

    # -- writing generations -------------------------------------------------

    def store_calibration(self, samples: int, seconds: float, theta: np.ndarray | None = None,
                          sum_stats: np.ndarray | None = None,
                          evaluations_performed: int | None = None) -> None:
        """Record the calibration sample (generation -1), its cost, and its parameters and
        statistics (from which a resumed run calibrates again without simulating)."""
        conn = self.conn
        with transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO populations (abc_id, t, epsilon, samples, "
                "evaluations_performed, population_end_time, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.id, PRE_TIME, float("inf"), samples,
                 samples if evaluations_performed is None else evaluations_performed, _now(),
                 seconds))
            if sum_stats is not None:
                conn.execute("INSERT OR REPLACE INTO population_arrays VALUES (?, ?, ?, ?)",
                             (self.id, PRE_TIME, _to_blob(theta), _to_blob(sum_stats)))
            conn.execute("DELETE FROM partial_batches WHERE abc_id=? AND t=?",
                         (self.id, PRE_TIME))
            self.refresh_lock()

    def get_calibration_arrays(self) -> dict[str, np.ndarray] | None:
        """Parameters and statistics of the calibration sample (None if not stored)."""
        row = self.conn.execute(
            "SELECT theta, sum_stats FROM population_arrays WHERE abc_id=? AND t=?",
            (self.id, PRE_TIME)).fetchone()
        return None if row is None else {"theta": _from_blob(row[0]),
                                         "sum_stats": _from_blob(row[1])}

    def append_population(self, t: int, *, epsilon: float, samples: int,
                          evaluations_performed: int, seconds: float, ess: float,
                          index: np.ndarray, model: np.ndarray, theta: np.ndarray,
                          weight: np.ndarray, distance: np.ndarray, sum_stats: np.ndarray,
                          model_probabilities: np.ndarray, state: Mapping | None = None) -> None:
        """Write generation ``t`` in one transaction."""
        conn = self.conn
        with transaction(conn):
            conn.execute(
                "INSERT INTO populations (abc_id, t, epsilon, samples, evaluations_performed, "
                "population_end_time, seconds, ess, acceptance_rate, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.id, t, float(epsilon), int(samples), int(evaluations_performed), _now(),
                 float(seconds), float(ess), len(index) / samples,
                 json.dumps(state or {})))
            conn.executemany(
                "INSERT INTO model_probabilities VALUES (?, ?, ?, ?)",
                [(self.id, t, m, float(p)) for m, p in enumerate(model_probabilities)])
            conn.executemany(
                "INSERT INTO particles VALUES (?, ?, ?, ?, ?, ?)",
                zip([self.id] * len(index), [t] * len(index), index.tolist(), model.tolist(),
                    weight.tolist(), distance.tolist()))
            conn.execute("INSERT INTO population_arrays VALUES (?, ?, ?, ?)",
                         (self.id, t, _to_blob(theta), _to_blob(sum_stats)))
            # the streamed ranges of this generation (and the calibration's) are done with
            conn.execute("DELETE FROM partial_batches WHERE abc_id=? AND t<=?", (self.id, t))
            self.refresh_lock()

    # -- reading -------------------------------------------------------------

    @property
    def max_t(self) -> int:
        """The last completed generation (-1 if none)."""
        if self._id is None:
            return PRE_TIME
        row = self.conn.execute("SELECT MAX(t) FROM populations WHERE abc_id=? AND t>=0",
                                (self._id,)).fetchone()
        return PRE_TIME if row[0] is None else int(row[0])

    @property
    def n_populations(self) -> int:
        return self.max_t + 1

    @property
    def total_nr_simulations(self) -> int:
        """Evaluations of all generations, the calibration sample included."""
        row = self.conn.execute("SELECT SUM(samples) FROM populations WHERE abc_id=?",
                                (self.id,)).fetchone()
        return int(row[0] or 0)

    def _t(self, t: int | None) -> int:
        max_t = self.max_t
        if t is None or t == "last":
            t = max_t
        if not 0 <= t <= max_t:
            raise DatabaseError(f"run {self.id} of {self.db!r} has no generation t={t} "
                                f"(generations 0..{max_t})")
        return int(t)

    def get_all_populations(self) -> pd.DataFrame:
        """Columns t, population_end_time, samples, epsilon, particles (t=-1: calibration)."""
        df = pd.read_sql_query(
            "SELECT p.t, p.population_end_time, p.samples, p.epsilon, "
            "(SELECT COUNT(*) FROM particles q WHERE q.abc_id=p.abc_id AND q.t=p.t) AS particles "
            "FROM populations p WHERE p.abc_id=? ORDER BY p.t", self.conn, params=(self.id,))
        df["population_end_time"] = pd.to_datetime(df["population_end_time"])
        return df

    def get_generation_info(self) -> pd.DataFrame:
        """Per generation: epsilon, samples, evaluations performed, acceptance rate, ESS and
        seconds."""
        return pd.read_sql_query(
            "SELECT t, epsilon, samples, evaluations_performed, acceptance_rate, ess, seconds "
            "FROM populations WHERE abc_id=? AND t>=0 ORDER BY t", self.conn, params=(self.id,))

    def get_state(self, t: int) -> dict:
        row = self.conn.execute("SELECT state FROM populations WHERE abc_id=? AND t=?",
                                (self.id, self._t(t))).fetchone()
        return json.loads(row[0] or "{}")

    def get_population_arrays(self, t: int | None = None) -> dict[str, np.ndarray]:
        """Generation ``t`` as arrays in index order: index, model, theta, weight, distance,
        sum_stats; weights are normalised over the whole population."""
        t = self._t(t)
        rows = np.array(self.conn.execute(
            "SELECT idx, m, weight, distance FROM particles WHERE abc_id=? AND t=? ORDER BY idx",
            (self.id, t)).fetchall(), dtype=float).reshape(-1, 4)
        theta_b, stats_b = self.conn.execute(
            "SELECT theta, sum_stats FROM population_arrays WHERE abc_id=? AND t=?",
            (self.id, t)).fetchone()
        return {"index": rows[:, 0].astype(np.int64), "model": rows[:, 1].astype(int),
                "weight": rows[:, 2], "distance": rows[:, 3],
                "theta": _from_blob(theta_b), "sum_stats": _from_blob(stats_b)}

    def get_distribution(self, m: int = 0, t: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """Parameters of model ``m`` in generation ``t`` (default last) and their weights,
        normalised to sum 1 within the model."""
        pop = self.get_population_arrays(t)
        names = self.parameter_names[m]
        rows = np.flatnonzero(pop["model"] == m)
        df = pd.DataFrame(pop["theta"][rows, : len(names)], columns=pd.Index(names, name="name"),
                          index=pd.Index(pop["index"][rows], name="id"))
        w = pop["weight"][rows]
        return df, (w / w.sum() if len(w) else w)

    def get_model_probabilities(self, t: int | None = None) -> pd.DataFrame:
        """One row per generation, one column per model."""
        query = "SELECT t, m, p FROM model_probabilities WHERE abc_id=?"
        params: tuple = (self.id,)
        if t is not None:
            query += " AND t=?"
            params += (self._t(t),)
        df = pd.read_sql_query(query, self.conn, params=params)
        table = df.pivot(index="t", columns="m", values="p")
        table.columns = table.columns.astype(int)
        table.columns.name = "m"
        return table.reindex(columns=range(len(self.model_names)), fill_value=0.0).fillna(0.0)

    def alive_models(self, t: int | None = None) -> list[int]:
        probs = self.get_model_probabilities(self._t(t)).iloc[0]
        return [int(m) for m, p in probs.items() if p > 0]

    def get_weighted_distances(self, t: int | None = None) -> pd.DataFrame:
        """Columns distance and w (weights over the whole population, summing to 1)."""
        pop = self.get_population_arrays(t)
        return pd.DataFrame({"distance": pop["distance"], "w": pop["weight"]})

    def get_weighted_sum_stats(self, t: int | None = None) -> tuple[list[float], list[dict]]:
        """Weights and statistics (dicts) of all particles of generation ``t``."""
        pop = self.get_population_arrays(t)
        layout = self.sum_stat_layout
        return pop["weight"].tolist(), [layout.unflatten(x) for x in pop["sum_stats"]]

    def get_weighted_sum_stats_for_model(self, m: int = 0, t: int | None = None):
        pop = self.get_population_arrays(t)
        layout = self.sum_stat_layout
        rows = np.flatnonzero(pop["model"] == m)
        w = pop["weight"][rows]
        return (w / w.sum()).tolist(), [layout.unflatten(x) for x in pop["sum_stats"][rows]]

    def get_population_extended(self, m: int | None = None, t: int | str = "last") -> pd.DataFrame:
        """One row per particle: t, m, w, distance, ``par_<name>`` and ``sumstat_<key>``."""
        t = self._t(None if t == "last" else t)
        pop = self.get_population_arrays(t)
        frame = {"t": t, "m": pop["model"], "w": pop["weight"], "distance": pop["distance"]}
        for name, col in _parameter_columns(self.parameter_names, pop["model"],
                                            pop["theta"]).items():
            frame[f"par_{name}"] = col
        for c, name in enumerate(self.sum_stat_layout.column_names()):
            frame[f"sumstat_{name}"] = pop["sum_stats"][:, c]
        df = pd.DataFrame(frame, index=pd.Index(pop["index"], name="id"))
        return df if m is None else df[df["m"] == m]

    def export(self, out, out_format: str | None = None, generation="all", model="all"
               ) -> pd.DataFrame:
        """Write this run's particles (all generations by default) to a csv, parquet,
        feather, json or html table; see :func:`dask_abc.storage.export.export`."""
        from .export import export

        return export(self, out, out_format, generation=generation, model=model, id=self.id)

    # -- the running generation ----------------------------------------------------

    def _partial_t(self, t: int | None) -> int:
        return self.max_t + 1 if t is None else int(t)

    def get_partial_info(self, t: int | None = None) -> dict:
        """What has been streamed of generation ``t`` (default: the running one, max_t + 1):
        ``ranges`` (evaluated ``(start, stop)`` index ranges, consecutive ones merged),
        ``evaluations``, ``accepted``, and ``prefix``/``prefix_accepted`` (the contiguous
        evaluations from index 0, which is what the population is built from).

        Examples
        --------
        >>> History("sqlite://").get_partial_info(0)["evaluations"]
        0
        """
        t = self._partial_t(t)
        rows = [] if self._id is None else self.conn.execute(
            "SELECT start, stop, n_accepted FROM partial_batches WHERE abc_id=? AND t=? "
            "ORDER BY start", (self._id, t)).fetchall()
        ranges: list[list[int]] = []
        prefix = prefix_accepted = 0
        for start, stop, accepted in rows:
            if ranges and ranges[-1][1] == start:
                ranges[-1][1] = stop
            else:
                ranges.append([start, stop])
            if start == prefix:
                prefix, prefix_accepted = stop, prefix_accepted + accepted
        return {"t": t, "ranges": [tuple(r) for r in ranges],
                "evaluations": sum(stop - start for start, stop, _ in rows),
                "accepted": sum(a for _, _, a in rows), "prefix": prefix,
                "prefix_accepted": prefix_accepted}

    def get_partial_population(self, t: int | None = None) -> pd.DataFrame:
        """The accepted particles streamed so far of generation ``t`` (default: the running
        one), for monitoring: index ``id``; columns m, w (unnormalised weight), distance
        and ``par_<name>``. The population itself is the first n of them by index."""
        t = self._partial_t(t)
        batches = merge_consecutive(read_batches(self.conn, self.id, t))
        names = self.parameter_names
        index = np.concatenate([b.index for b in batches]) if batches else np.zeros(0, int)
        model = np.concatenate([b.model for b in batches]) if batches else np.zeros(0, int)
        theta = (np.concatenate([b.theta for b in batches]) if batches
                 else np.zeros((0, max(len(n) for n in names))))
        frame = {"m": model,
                 "w": np.concatenate([b.weight for b in batches]) if batches else np.zeros(0),
                 "distance": (np.concatenate([b.distance for b in batches]) if batches
                              else np.zeros(0))}
        for name, col in _parameter_columns(names, model, theta).items():
            frame[f"par_{name}"] = col
        return pd.DataFrame(frame, index=pd.Index(index, name="id"))

    def get_nr_particles_per_population(self) -> pd.Series:
        df = pd.read_sql_query("SELECT t, COUNT(*) AS n FROM particles WHERE abc_id=? GROUP BY t",
                               self.conn, params=(self.id,))
        return df.set_index("t")["n"]


def _parameter_columns(names: list[list[str]], model: np.ndarray, theta: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """One column per parameter name over all models (NaN where a model lacks it)."""
    columns = {}
    for name in sorted({n for model_names in names for n in model_names}):
        col = np.full(len(model), np.nan)
        for j, model_names in enumerate(names):
            if name in model_names:
                rows = model == j
                col[rows] = theta[rows, model_names.index(name)]
        columns[name] = col
    return columns


def _process_identity() -> tuple[str, int, float]:
    """This process as (host, PID, start time): a PID reused later is another process."""
    import psutil

    return socket.gethostname(), os.getpid(), psutil.Process().create_time()


def _alive(host: str, pid: int, started: float, since: str, heartbeat: float) -> bool:
    """Whether the lock owner may still run: its process exists (this host), or its
    heartbeat is recent (another host)."""
    import psutil

    if host == socket.gethostname():
        try:
            return psutil.Process(pid).create_time() == started
        except psutil.Error:
            return False
    return time.time() - heartbeat < float(config.get("storage.lock-timeout"))


def _now() -> str:
    return datetime.datetime.now().isoformat(sep=" ")
