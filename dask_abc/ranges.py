"""Index ranges that arrive in any order: runs of consecutive ones and the contiguous prefix.

An item covers the index range ``[start, stop)``. Items are consecutive when
each starts where the previous one stops; the contiguous prefix of a
generation is the run that starts at index 0. The sample collector (its
prefix), the checkpoint journal (merged writes) and the monitoring of a running
generation follow runs through :func:`pop_consecutive` and
:func:`consecutive_runs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from operator import attrgetter
from typing import TypeVar

T = TypeVar("T")

_start = attrgetter("start")
_stop = attrgetter("stop")


def pop_consecutive(waiting: MutableMapping[int, T], start: int,
                    stop: Callable[[T], int] = _stop,
                    until: Callable[[], bool] | None = None) -> Iterator[T]:
    """Remove from ``waiting`` (start index -> item) and yield the run of consecutive
    items that begins at ``start``.

    Parameters
    ----------
    waiting : mutable mapping
        Items by their start index; the items yielded are removed.
    start : int
        Where the run begins.
    stop : callable
        An item's stop index (default: its ``stop`` attribute).
    until : callable, optional
        Checked before each item (after the caller handled the previous one):
        the run ends early once it returns True.

    Examples
    --------
    >>> waiting = {0: (0, 5), 5: (5, 7), 9: (9, 12)}
    >>> list(pop_consecutive(waiting, 0, stop=lambda r: r[1]))
    [(0, 5), (5, 7)]
    >>> waiting
    {9: (9, 12)}
    """
    while start in waiting and (until is None or not until()):
        item = waiting.pop(start)
        start = stop(item)
        yield item


def consecutive_runs(items: Iterable[T], start: Callable[[T], int] = _start,
                     stop: Callable[[T], int] = _stop) -> list[list[T]]:
    """``items`` (with distinct starts) in index order, grouped into runs of consecutive
    ones.

    Examples
    --------
    >>> consecutive_runs([(5, 9), (0, 5), (12, 13)], start=lambda r: r[0], stop=lambda r: r[1])
    [[(0, 5), (5, 9)], [(12, 13)]]
    """
    waiting = {start(item): item for item in items}
    return [list(pop_consecutive(waiting, s, stop)) for s in sorted(waiting) if s in waiting]
