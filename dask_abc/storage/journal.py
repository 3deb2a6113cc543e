"""Stream the running generation's results to the database as they return.

A :class:`Journal` keeps every evaluated index range of the running
generation in the table ``partial_batches``, keyed by its start index, so
that a master killed mid-generation resumes without evaluating those ranges
again. Writes happen on a background thread, one transaction for what returns
within ``abc.storage.checkpoint-interval`` seconds, consecutive ranges merged
into one row, so the master is not slowed. The thread lives only while a
generation returns results, so samplers that fork worker processes never fork
a threaded master.

The table's SQL and the reads and deletes of other parts of the storage
(:data:`TABLE`, :func:`read_batches`, :func:`read_ranges`, :func:`discard`)
are module-level functions here too.
"""

from __future__ import annotations

import logging
import pickle
import queue
import sqlite3
import threading
import time

from .. import config
from ..generation import BatchResult
from ..observers import GenerationObserver
from ..ranges import consecutive_runs
from .sqlite import connect, transaction

logger = logging.getLogger("dask_abc")

_STOP = object()

#: The table of streamed ranges: one row per range, keyed by its start index.
TABLE = """
CREATE TABLE IF NOT EXISTS partial_batches (
    abc_id INTEGER NOT NULL, t INTEGER NOT NULL, start INTEGER NOT NULL, stop INTEGER,
    n_evaluated INTEGER, n_accepted INTEGER, epsilon REAL, data BLOB,
    PRIMARY KEY (abc_id, t, start)
)"""


def encode(batch: BatchResult) -> bytes:
    return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> BatchResult:
    return pickle.loads(data)


def read_batches(conn: sqlite3.Connection, abc_id: int, t: int,
                 epsilon: float | None = None) -> list[BatchResult]:
    """The stored ranges of generation ``t`` in index order (only those evaluated with
    threshold ``epsilon``, if given)."""
    rows = conn.execute(
        "SELECT epsilon, data FROM partial_batches WHERE abc_id=? AND t=? ORDER BY start",
        (abc_id, t)).fetchall()
    return [decode(data) for eps, data in rows if epsilon is None or eps == epsilon]


def read_ranges(conn: sqlite3.Connection, abc_id: int, t: int) -> list[tuple[int, int, int]]:
    """``(start, stop, n_accepted)`` of the stored ranges of generation ``t``, by start."""
    return conn.execute(
        "SELECT start, stop, n_accepted FROM partial_batches WHERE abc_id=? AND t=? "
        "ORDER BY start", (abc_id, t)).fetchall()


def discard(conn: sqlite3.Connection, abc_id: int, t: int) -> None:
    """Delete the stored ranges of generation ``t`` and of earlier ones (the calibration's):
    they are done with once the generation is committed."""
    conn.execute("DELETE FROM partial_batches WHERE abc_id=? AND t<=?", (abc_id, t))


def merge_consecutive(batches: list[BatchResult]) -> list[BatchResult]:
    """Batches sorted by start, runs of consecutive ones merged into one.

    Examples
    --------
    >>> import numpy as np
    >>> def empty(start, n):
    ...     z = np.zeros(0)
    ...     return BatchResult(start=start, n_evaluated=n, index=z.astype(int),
    ...                        model=z.astype(int), theta=z.reshape(0, 1), distance=z,
    ...                        weight=z, sum_stats=z.reshape(0, 1))
    >>> [(b.start, b.stop) for b in merge_consecutive([empty(5, 5), empty(0, 5), empty(20, 1)])]
    [(0, 10), (20, 21)]
    """
    return [BatchResult.concat(run) for run in consecutive_runs(batches)]


class Journal(GenerationObserver):
    """The checkpoint of the running generation of one run: a generation observer
    that writes every returned range (:meth:`begin` reads back an earlier attempt's).

    Parameters
    ----------
    path : str
        The SQLite file (a journal of an in-memory database is useless: use
        :meth:`History.journal`, which returns None then).
    abc_id : int
        The run.
    on_write : callable, optional
        Called on the writer thread with its connection inside every write
        transaction (the run lock's heartbeat).

    Examples
    --------
    >>> import os, tempfile
    >>> from dask_abc.storage import History
    >>> path = os.path.join(tempfile.mkdtemp(), "j.db")
    >>> with History(path) as h:
    ...     journal = Journal(path, abc_id=1)
    ...     journal.begin(0, epsilon=1.0)
    ...     journal.close()
    []
    """

    def __init__(self, path: str, abc_id: int, on_write=None):
        self.path = path
        self.abc_id = abc_id
        self.on_write = on_write
        self.t: int | None = None
        self.epsilon: float | None = None
        self.restored: list[BatchResult] = []  # what begin() read back
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def begin(self, t: int, epsilon: float) -> list[BatchResult]:
        """Start journaling generation ``t`` (threshold ``epsilon``); returns the ranges
        stored by an earlier attempt at it.

        Ranges stored with another threshold are from a different setup (a
        resume that was allowed to change it) and are dropped.
        """
        self.end()
        self.t, self.epsilon = t, float(epsilon)
        self.restored = []
        if self._conn is None:
            self._conn = connect(self.path)
        stale = self._conn.execute(
            "DELETE FROM partial_batches WHERE abc_id=? AND t=? AND epsilon!=?",
            (self.abc_id, t, self.epsilon)).rowcount
        if stale:
            logger.warning("generation %d: dropped %d checkpointed ranges evaluated with "
                           "another epsilon", t, stale)
        self.restored = read_batches(self._conn, self.abc_id, t)
        return self.restored

    def record(self, batch: BatchResult) -> None:
        """Queue a returned batch of the current generation for writing."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="dask-abc-journal",
                                            args=(self.t,), daemon=True)
            self._thread.start()
        self._queue.put(batch)

    def end(self) -> None:
        """Stop journaling the current generation, after writing what is queued (the
        generation may fail to commit, or the run end with an error)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self.t = None

    def on_batch(self, batch: BatchResult) -> None:
        self.record(batch)

    def on_sampled(self, sample) -> None:
        self.end()  # the generation is committed next, with its ranges deleted

    def close(self) -> None:
        self.end()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the writer thread -----------------------------------------------------

    def _writer(self, t: int) -> None:
        interval = float(config.get("storage.checkpoint-interval"))
        stopping = False
        while not stopping:
            pending = [self._queue.get()]
            deadline = time.monotonic() + interval
            while pending[-1] is not _STOP:  # gather what arrives within the interval
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                pending.append(item)
            stopping = pending[-1] is _STOP
            batches = [b for b in pending if b is not _STOP]
            if batches:
                try:
                    self._write(t, merge_consecutive(batches))
                except Exception:  # never take the run down: the results are in memory
                    logger.exception("generation %d: writing a checkpoint failed", t)

    def _write(self, t: int, batches: list[BatchResult]) -> None:
        rows = [(self.abc_id, t, b.start, b.stop, b.n_evaluated, b.n_accepted, self.epsilon,
                 encode(b)) for b in batches]
        conn = self._conn
        with transaction(conn):
            conn.executemany("INSERT OR REPLACE INTO partial_batches (abc_id, t, start, stop, "
                             "n_evaluated, n_accepted, epsilon, data) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if self.on_write is not None:
                self.on_write(conn)
