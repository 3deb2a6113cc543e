"""Storage of runs: the :class:`History` on SQLite."""

from .history import DatabaseError, History

__all__ = ["DatabaseError", "History"]
