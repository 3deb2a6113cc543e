"""The errors of the storage layer."""

from __future__ import annotations


class DatabaseError(ValueError):
    """The database is closed, not a dask-abc database, or lacks what was asked for.

    Examples
    --------
    >>> from dask_abc.storage import History
    >>> try:
    ...     History("postgresql://host/db")
    ... except DatabaseError as e:
    ...     print(str(e).split(":")[0])
    unsupported database URL 'postgresql
    """


class RunLockedError(DatabaseError):
    """Another live master is running this run (see :class:`~dask_abc.storage.lock.RunLock`)."""
