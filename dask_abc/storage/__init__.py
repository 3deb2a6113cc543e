"""Storage of runs: the :class:`History` on SQLite, its checkpoint journal, and export."""

from .export import export
from .history import DatabaseError, History, RunLockedError

__all__ = ["DatabaseError", "History", "RunLockedError", "export"]
