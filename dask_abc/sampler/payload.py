"""Ship a generation spec once, evaluate ranges of it many times.

A sampler wraps each generation's spec in a :class:`SpecPayload`: pickled once
(cloudpickle), named by a token. Tasks carry the token (and, when needed, the
bytes). A worker process keeps what it knows of generations in one
:class:`WorkerGenerations` object, :data:`GENERATIONS`: the specs it has
unpickled, the generations that are finished and the ranges that are paused.
A task without the bytes whose token the worker has not seen answers
:class:`Missing`, and the sampler sends the spec again. A Dask worker gets the
spec through :func:`install` before any range of it, :func:`finish` tells it
that the generation is complete (ranges of it still running stop early), and
:func:`pause` makes ranges submitted up to an epoch return :class:`Paused`
unevaluated (the Dask sampler's quarantine, :mod:`~dask_abc.sampler.triage`).
The module-level functions are what samplers send to workers: they pickle by
reference, and act on the worker's :data:`GENERATIONS`.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict, deque

import cloudpickle

from ..generation import BatchResult, GenerationSpec


class Missing:
    """The worker (``address``, if known) does not have the spec of this token."""

    def __init__(self, address: str | None = None):
        self.address = address

    def __repr__(self) -> str:
        return f"Missing({self.address!r})"


class Paused:
    """A range that found its generation paused when it started; it evaluated nothing."""

    def __repr__(self) -> str:
        return "Paused()"


class WorkerGenerations:
    """What one process knows of generations: specs, finished tokens, paused epochs.

    Threads of the process share it (a Dask worker's threads, a thread pool); a
    range waiting for its spec waits on it.

    Parameters
    ----------
    specs : int
        Specs kept at most (a few concurrent runs may share a worker).
    remembered : int
        Finished and paused generations remembered at most.

    Examples
    --------
    >>> generations = WorkerGenerations()
    >>> generations.evaluate("no-such-token", None, 0, 5)
    Missing(None)
    >>> generations.finish("no-such-token")
    >>> generations.evaluate("no-such-token", None, 0, 5) is None  # finished: nothing to do
    True
    >>> generations.pause("g", epoch=2)
    >>> generations.paused("g", epoch=2), generations.paused("g", epoch=3)
    (True, False)
    """

    def __init__(self, specs: int = 4, remembered: int = 64):
        self._specs: OrderedDict[str, GenerationSpec] = OrderedDict()
        self._size = specs
        self._finished: set[str] = set()  # asked before every simulation: a set
        self._finished_order: deque[str] = deque()
        self._paused: OrderedDict[str, int] = OrderedDict()  # token -> pause up to epoch
        self._remembered = remembered
        self._changed = threading.Condition()  # notified when a spec arrives or finishes

    def keep(self, token: str, spec: GenerationSpec) -> None:
        """Keep ``spec`` under ``token`` (the oldest spec beyond ``specs`` is dropped)."""
        with self._changed:
            self._specs[token] = spec
            while len(self._specs) > self._size:
                self._specs.popitem(last=False)
            self._changed.notify_all()

    def store(self, token: str, data: bytes) -> None:
        """Unpickle and keep a spec, unless it is known already."""
        if token not in self._specs:
            self.keep(token, cloudpickle.loads(data))

    def finish(self, token: str) -> None:
        """Forget a completed generation's spec; its ranges still running stop early."""
        with self._changed:
            self._finished.add(token)
            self._finished_order.append(token)
            while len(self._finished_order) > self._remembered:
                self._finished.discard(self._finished_order.popleft())
            self._specs.pop(token, None)
            self._changed.notify_all()

    def finished(self, token: str) -> bool:
        return token in self._finished

    def pause(self, token: str, epoch: int) -> None:
        """Ranges of ``token`` submitted in ``epoch`` or before that start from now on
        are paused (:meth:`paused`)."""
        self._paused[token] = max(epoch, self._paused.get(token, -1))
        self._paused.move_to_end(token)
        while len(self._paused) > self._remembered:
            self._paused.popitem(last=False)

    def paused(self, token: str, epoch: int) -> bool:
        return self._paused.get(token, -1) >= epoch

    def evaluate(self, token: str, data: bytes | None, start: int, count: int,
                 wait: float = 0.0) -> BatchResult | Missing | None:
        """Evaluate ``[start, start + count)`` of the spec named ``token``.

        Without ``data``, wait up to ``wait`` seconds for the spec to be installed.
        ``None`` if the generation finished while the range ran.
        """
        if data is not None:
            self.store(token, data)
        with self._changed:
            self._changed.wait_for(lambda: token in self._specs or token in self._finished,
                                   timeout=wait)
            spec = self._specs.get(token)
        if spec is None:
            return None if self.finished(token) else Missing()
        return spec.evaluate(start, count, stop=lambda: token in self._finished)


#: This process's generations (on a worker: what the sampler sent it).
GENERATIONS = WorkerGenerations()


class SpecPayload:
    """A spec pickled once, with a token that names it; with ``keep`` this process keeps
    the spec too (threads and a builtin ``map`` in this process reuse it).

    Examples
    --------
    ``shipped = SpecPayload(spec)``, then ``shipped.token`` and ``shipped.data``
    travel to the workers, or ``shipped.task(start, count)`` per range.
    """

    def __init__(self, spec: GenerationSpec, keep: bool = True):
        self.token = uuid.uuid4().hex
        self.data = cloudpickle.dumps(spec)
        if keep:
            GENERATIONS.keep(self.token, spec)

    def task(self, start: int, count: int, with_data: bool = True) -> tuple:
        """Arguments of :func:`evaluate_packed` for one range."""
        return (self.token, self.data if with_data else None, start, count)


async def install(token: str, data: bytes) -> None:
    """Unpickle and keep a spec (run on every worker by ``Client.run``)."""
    GENERATIONS.store(token, data)


async def finish(token: str) -> None:
    """Forget a completed generation's spec; its ranges still running stop early."""
    GENERATIONS.finish(token)


async def pause(token: str, epoch: int) -> None:
    """Ranges of generation ``token`` submitted in ``epoch`` or before that start from now
    on return :class:`Paused` (run on every worker by ``Client.run``)."""
    GENERATIONS.pause(token, epoch)


def evaluate(token: str, data: bytes | None, start: int, count: int, wait: float = 0.0
             ) -> BatchResult | Missing | None:
    """:meth:`WorkerGenerations.evaluate` on this process's :data:`GENERATIONS`."""
    return GENERATIONS.evaluate(token, data, start, count, wait)


def evaluate_packed(task: tuple) -> BatchResult | Missing | None:
    """:func:`evaluate` on one tuple, for ``map``-style interfaces."""
    return evaluate(*task)
