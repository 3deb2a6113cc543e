"""What ``dask-abc-manager info`` prints: pyABC's counter line, then a summary of the
workers whose length does not grow with their number.

The first line is pyABC's ``Workers=… Evaluations=… Acceptances=i/n`` (scripts parse
it), followed by the running generation and, with ``model_errors="reject"``, how many
of its evaluations returned so far failed (``failures``). Then, instead of one entry per worker, the
distribution of evaluations over workers (min, median, max) with the slowest named,
and the same per host once the workers span several hosts.

It reads ``per_worker`` (evaluations since each worker connected) and, when the
coordinator reports them, ``worker_info`` (each worker's registration: ``host``,
``threads``), ``slots`` and ``leased`` (ranges held now). A worker's host is its
``worker_info`` host, else the host part of the default worker name
(``{host}-{pid}-{6 hex digits}``), else the name itself; a registered worker that has
not evaluated yet counts with 0. An optional per-worker ``age`` (seconds since it
registered) ranks the slowest by evaluations per slot-second instead of by
evaluations, so that a worker that joined late is not taken for a slow one.
"""

from __future__ import annotations

import re
import statistics

#: How many of the slowest workers (and hosts) are named.
SLOWEST = 3

_DEFAULT_NAME = re.compile(r"^(?P<host>.+)-\d+-[0-9a-f]{6}$")


def info_text(status: dict | None, slowest: int = SLOWEST) -> str:
    """pyABC's counter line, then the workers' summary.

    Parameters
    ----------
    status : dict or None
        A coordinator's ``status()`` (None: no master has run yet).
    slowest : int
        How many of the slowest workers and hosts to name.

    Returns
    -------
    str
        At most three lines, whatever the number of workers.

    Examples
    --------
    >>> status = {"workers": 3, "evaluations": 60, "acceptances": 7, "n": 10, "t": 2,
    ...           "epsilon": 0.5, "per_worker": {"a-1-0000aa": 30, "a-2-0000bb": 25,
    ...                                          "b-1-0000cc": 5}}
    >>> print(info_text(status, slowest=1))
    Workers=3 Evaluations=60 Acceptances=7/10 (generation 2, acceptance rate 11.7%, epsilon 0.5)
    Evaluations per worker: min 5, median 25, max 30 (3 workers on 2 hosts); slowest: b-1-0000cc 5
    Evaluations per host: min 5, median 30, max 55 (2 hosts); slowest: b 5 (1 worker)
    >>> info_text({**status, "failures": 4, "per_worker": {}}).split(", ")[-1]
    '4 failed)'
    >>> info_text(None)
    'Workers=None Evaluations=None Acceptances=None/None'
    """
    if status is None or status.get("n") is None:
        return "Workers=None Evaluations=None Acceptances=None/None"
    rate = (f", acceptance rate {status['acceptances'] / status['evaluations']:.1%}"
            if status["evaluations"] else "")
    if status.get("epsilon") is not None:
        rate += f", epsilon {status['epsilon']:.4g}"
    if status.get("failures"):  # model_errors="reject": failed evaluations, excess included
        rate += f", {status['failures']} failed"
    lines = [f"Workers={status['workers']} Evaluations={status['evaluations']} "
             f"Acceptances={status['acceptances']}/{status['n']} "
             f"(generation {status['t']}{rate})"]
    if status.get("per_worker") or status.get("worker_info"):
        lines += _summary(status, slowest)
    return "\n".join(lines)


def host_of(name: str, info: dict | None = None) -> str:
    """The host a worker runs on: reported, else from its default name, else its name.

    Examples
    --------
    >>> host_of("node07.cluster-4121-a1b2c3"), host_of("my-worker")
    ('node07.cluster', 'my-worker')
    """
    if info and info.get("host"):
        return str(info["host"])
    found = _DEFAULT_NAME.match(name)
    return found["host"] if found else name


class _Unit:
    __slots__ = ("name", "workers", "evaluations", "slot_seconds")

    def __init__(self, name: str):
        self.name, self.workers, self.evaluations, self.slot_seconds = name, 0, 0, 0.0

    def add(self, evaluations: int, info: dict) -> None:
        self.workers += 1
        self.evaluations += evaluations
        self.slot_seconds += int(info.get("threads") or 1) * float(info.get("age") or 0.0)

    def rate(self) -> float:
        return self.evaluations / self.slot_seconds if self.slot_seconds else 0.0


def _summary(status: dict, slowest: int) -> list[str]:
    per_worker = status.get("per_worker") or {}
    details = status.get("worker_info") or {}
    workers: list[_Unit] = []
    hosts: dict[str, _Unit] = {}
    for name in {**details, **per_worker}:  # registered ones that have not evaluated: 0
        info = details.get(name) or {}
        evaluations = int(per_worker.get(name, 0))
        unit = _Unit(name)
        unit.add(evaluations, info)
        workers.append(unit)
        host = host_of(name, info)
        hosts.setdefault(host, _Unit(host)).add(evaluations, info)
    timed = all((details.get(u.name) or {}).get("age") for u in workers)
    where = _plural(len(workers), "worker")
    if status.get("slots"):
        where += f", {_plural(status['slots'], 'slot')}"
    if status.get("leased") is not None:
        where += f", {_plural(status['leased'], 'range')} leased"
    where += f" on {_plural(len(hosts), 'host')}"
    missing = int(status.get("workers") or 0) - len(workers)
    if missing > 0:
        where += f"; {missing} more not reporting"
    lines = [_line("worker", workers, where, slowest, timed)]
    if len(hosts) > 1:
        lines.append(_line("host", list(hosts.values()), _plural(len(hosts), "host"),
                           slowest, timed))
    return lines


def _line(kind: str, units: list[_Unit], where: str, slowest: int, timed: bool) -> str:
    counts = [u.evaluations for u in units]
    key = (lambda u: (u.rate(), u.evaluations)) if timed else (lambda u: u.evaluations)
    named = []
    for u in sorted(units, key=key)[:slowest]:
        entry = f"{u.name} {u.evaluations:,}"
        if timed:
            entry += f" ({u.rate():.3g}/slot/s)"
        if kind == "host":
            entry += f" ({_plural(u.workers, 'worker')})"
        named.append(entry)
    return (f"Evaluations per {kind}: min {min(counts):,}, "
            f"median {statistics.median(counts):,.0f}, max {max(counts):,} ({where}); "
            f"slowest: {', '.join(named)}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
