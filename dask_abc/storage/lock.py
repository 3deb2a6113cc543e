"""The master's lock on a run: one process runs a run at a time.

The lock is a row of ``run_locks``: the owner's host, PID and process start
time (a PID reused later is another process) and a heartbeat that every write
of the master renews. A lock whose owner is dead (its process is gone on this
host, or its heartbeat is older than ``abc.storage.lock-timeout`` on another
host) is taken over.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time

from .. import config
from .errors import RunLockedError
from .runs import Runs
from .schema import now
from .sqlite import transaction


class RunLock:
    """The lock of the current run of ``runs``, held by this process or another.

    Examples
    --------
    >>> from dask_abc.storage.schema import Database
    >>> lock = RunLock(Runs(Database("sqlite://")))
    >>> lock.runs.current = 1  # a run id, for the example
    >>> lock.acquire(); lock.owner()["pid"] == os.getpid()
    True
    >>> lock.release(); lock.owner() is None
    True
    """

    def __init__(self, runs: Runs):
        self.runs = runs

    def acquire(self) -> None:
        """Make this process the run's master.

        Raises :class:`RunLockedError` naming the owner if another master holds the
        run: a live process on this host, or one on another host whose heartbeat is
        younger than ``abc.storage.lock-timeout`` seconds. A dead owner's lock is
        taken over.
        """
        host, pid, started = _process_identity()
        conn, abc_id = self.runs.conn, self.runs.id
        with transaction(conn):
            row = conn.execute(
                "SELECT host, pid, process_started, since, heartbeat FROM run_locks "
                "WHERE abc_id=?", (abc_id,)).fetchone()
            if row is not None and row[:3] != (host, pid, started) and _alive(*row):
                age = time.time() - row[4]
                raise RunLockedError(
                    f"run {abc_id} of {self.runs.db!r} is being run by another master: host "
                    f"{row[0]}, PID {row[1]}, since {row[3]} (last seen {age:.0f} s ago). "
                    "Stop that process first; a master that died on another host frees the "
                    f"run after {float(config.get('storage.lock-timeout')):.0f} s "
                    "(abc.storage.lock-timeout)")
            conn.execute("INSERT OR REPLACE INTO run_locks VALUES (?, ?, ?, ?, ?, ?)",
                         (abc_id, host, pid, started, now(), time.time()))

    def refresh(self, conn: sqlite3.Connection | None = None) -> None:
        """Renew this master's heartbeat (on ``conn``, e.g. the journal's)."""
        host, pid = socket.gethostname(), os.getpid()  # no psutil call per heartbeat
        (conn or self.runs.conn).execute(
            "UPDATE run_locks SET heartbeat=? WHERE abc_id=? AND host=? AND pid=?",
            (time.time(), self.runs.id, host, pid))

    def release(self) -> None:
        """Give the run up (if this process holds it)."""
        host, pid = socket.gethostname(), os.getpid()
        self.runs.conn.execute("DELETE FROM run_locks WHERE abc_id=? AND host=? AND pid=?",
                               (self.runs.id, host, pid))

    def owner(self) -> dict | None:
        """The master holding the run: host, pid, since, heartbeat age (or None)."""
        row = self.runs.conn.execute("SELECT host, pid, process_started, since, heartbeat "
                                     "FROM run_locks WHERE abc_id=?", (self.runs.id,)).fetchone()
        if row is None or not _alive(*row):
            return None
        return {"host": row[0], "pid": row[1], "since": row[3],
                "seconds_since_heartbeat": time.time() - row[4]}


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
