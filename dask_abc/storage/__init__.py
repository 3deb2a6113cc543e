"""Storage of runs: the :class:`History` on SQLite, its checkpoint journal, and export."""

from .errors import DatabaseError, RunLockedError
from .export import export
from .history import History

__all__ = ["DatabaseError", "History", "RunLockedError", "export"]
