"""SQLite connections and transactions shared by the History and the Journal."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from one
    thread at a time, waiting up to 30 s for another writer.

    Files use write-ahead logging: a reader never sees half a transaction, and a
    process killed at any instant leaves the database consistent.
    """
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection):
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

    Examples
    --------
    >>> conn = connect(":memory:")
    >>> with transaction(conn):
    ...     _ = conn.execute("CREATE TABLE x (a)")
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
