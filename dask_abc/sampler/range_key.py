"""The Dask task key of an index range, written and read in one place.

The Dask sampler names each range task ``abc-range-{token}-{start}-{count}-{attempt}``
(visible in Dask's task stream); the dashboard's scheduler plugin reads the count
back from the key to count evaluations per worker, without asking the task.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What every range task's key starts with.
PREFIX = "abc-range-"


@dataclass(frozen=True)
class RangeKey:
    """The key of the task that evaluates ``[start, start + count)`` of generation ``token``
    for the ``attempt``-th time.

    Examples
    --------
    >>> key = RangeKey("3f2a", start=100, count=25, attempt=1)
    >>> str(key)
    'abc-range-3f2a-100-25-1'
    >>> RangeKey.parse("abc-range-3f2a-100-25-1") == key
    True
    >>> RangeKey.parse("another-task-1") is None
    True
    """

    token: str
    start: int
    count: int
    attempt: int

    def __str__(self) -> str:
        return f"{PREFIX}{self.token}-{self.start}-{self.count}-{self.attempt}"

    @staticmethod
    def matches(key) -> bool:
        """Whether ``key`` (any Dask key) names a range task; cheap, for every transition."""
        return isinstance(key, str) and key.startswith(PREFIX)

    @classmethod
    def parse(cls, key) -> RangeKey | None:
        """The range a task key names; None for any other key."""
        if not cls.matches(key):
            return None
        token, start, count, attempt = key[len(PREFIX):].rsplit("-", 3)
        return cls(token, int(start), int(count), int(attempt))
