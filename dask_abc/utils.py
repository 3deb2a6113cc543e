"""Small helpers that pyABC scripts use."""

from __future__ import annotations

import os
import tempfile


def create_sqlite_db_id(dir_: str | None = None, file_: str = "pyabc_test.db") -> str:
    """A ``sqlite:///`` URL for ``file_`` in ``dir_`` (default: the temporary folder).

    Examples
    --------
    >>> create_sqlite_db_id("/data", "run.db")
    'sqlite:////data/run.db'
    """
    return "sqlite:///" + os.path.join(dir_ or tempfile.gettempdir(), file_)
