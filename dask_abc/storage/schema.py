"""The database file: its URL, connection, tables and their migration.

A :class:`Database` opens a ``sqlite:///`` URL (or a path), creates the tables
of schema version :data:`SCHEMA_VERSION` in a new file, migrates an older
dask-abc file and refuses anything else (a pyABC database, another SQLite
file, a file that is not SQLite). Arrays are stored as ``.npy`` blobs
(:func:`to_blob`), times as ISO text (:func:`now`).
"""

from __future__ import annotations

import datetime
import io
import os
import sqlite3

import numpy as np

from . import journal
from .errors import DatabaseError
from .sqlite import connect, transaction

SCHEMA_VERSION = "3"

PRE_TIME = -1  # the calibration sample's generation

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
    state TEXT, failed_samples INTEGER NOT NULL DEFAULT 0,
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
_ADDED_IN_2 = journal.TABLE + """;
CREATE TABLE IF NOT EXISTS run_locks (
    abc_id INTEGER PRIMARY KEY, host TEXT, pid INTEGER, process_started REAL,
    since TEXT, heartbeat REAL
);
"""
_RUN_COLUMNS_ADDED_IN_2 = ("setup BLOB", "setup_description TEXT", "setup_hash TEXT",
                          "run_call TEXT")
# what version 3 added: the failed evaluations of a generation (none before: they raised)
_POPULATION_COLUMN_ADDED_IN_3 = "failed_samples INTEGER NOT NULL DEFAULT 0"


def database_path(db: str | os.PathLike) -> str:
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


def to_blob(a: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (no pickles).

    Examples
    --------
    >>> from_blob(to_blob(np.arange(3)))
    array([0, 1, 2])
    """
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def from_blob(b: bytes) -> np.ndarray:
    """The array of :func:`to_blob`'s bytes."""
    return np.load(io.BytesIO(b), allow_pickle=False)


def now() -> str:
    """The local time as stored: ISO text with a space, e.g. ``2026-12-01 10:00:00.123456``."""
    return datetime.datetime.now().isoformat(sep=" ")


class Database:
    """The connection to one dask-abc database file, its tables created or migrated.

    Parameters
    ----------
    db : str or os.PathLike
        ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://``
        (in memory) or a file path.
    create : bool
        Create the file and tables if they do not exist.

    Examples
    --------
    >>> database = Database("sqlite://")
    >>> database.conn.execute("SELECT value FROM dask_abc_meta").fetchone()[0] == SCHEMA_VERSION
    True
    >>> database.close(); database.closed
    True
    """

    def __init__(self, db: str | os.PathLike, create: bool = True):
        self.db = db
        self.path = database_path(db)
        if self.path != ":memory:":
            if not create and not os.path.exists(self.path):
                raise DatabaseError(f"database {db!r} does not exist")
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise DatabaseError(f"cannot create database {db!r}: folder {folder} does not "
                                    "exist")
        self._conn: sqlite3.Connection | None = None
        self._conn = self._open(create)

    def _tables(self) -> set[str]:
        """The tables of the file, after checking that it is a dask-abc database or empty."""
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
        return tables

    def _open(self, create: bool) -> sqlite3.Connection:
        tables = self._tables()
        conn = connect(self.path)
        if not tables:
            if not create:
                conn.close()
                raise DatabaseError(f"{self.db!r} is an empty database, not a dask-abc database")
            conn.executescript(_SCHEMA + _ADDED_IN_2)
            conn.execute("INSERT INTO dask_abc_meta VALUES ('schema_version', ?)",
                         (SCHEMA_VERSION,))
            return conn
        version = conn.execute(
            "SELECT value FROM dask_abc_meta WHERE key='schema_version'").fetchone()
        if version and version[0] in _MIGRATIONS:
            for migrate in _MIGRATIONS[version[0]]:
                migrate(conn)
        elif not version or version[0] != SCHEMA_VERSION:
            conn.close()
            raise DatabaseError(
                f"{self.db!r} has dask-abc schema version {version and version[0]}, "
                f"this dask-abc reads {SCHEMA_VERSION}")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection; :class:`DatabaseError` once closed."""
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


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        for column in _RUN_COLUMNS_ADDED_IN_2:
            conn.execute(f"ALTER TABLE abc_runs ADD COLUMN {column}")
        for statement in _ADDED_IN_2.split(";"):
            if statement.strip():
                conn.execute(statement)
        _set_version(conn, "2")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.execute(f"ALTER TABLE populations ADD COLUMN {_POPULATION_COLUMN_ADDED_IN_3}")
        _set_version(conn, "3")


def _set_version(conn: sqlite3.Connection, version: str) -> None:
    conn.execute("UPDATE dask_abc_meta SET value=? WHERE key='schema_version'", (version,))


#: The migrations from each older version, in order, up to :data:`SCHEMA_VERSION`.
_MIGRATIONS = {"1": (_migrate_1_to_2, _migrate_2_to_3), "2": (_migrate_2_to_3,)}

