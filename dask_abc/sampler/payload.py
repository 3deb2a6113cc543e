"""Ship a generation spec once, evaluate ranges of it many times.

Samplers that hand tasks to an executor send the spec as cloudpickled bytes
with a token. A worker process unpickles a token's spec once and keeps it;
a task without the bytes whose token the worker has not seen answers
:class:`Missing`, and the sampler sends the spec again. A Dask worker gets the
spec through :func:`install` before any range of it, and :func:`finish` tells
it that the generation is complete: ranges of it still running stop early.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict, deque

import cloudpickle

from ..generation import BatchResult, GenerationSpec

_CACHE: OrderedDict[str, GenerationSpec] = OrderedDict()
_CACHE_SIZE = 4  # a few concurrent runs may share a worker
_FINISHED: set[str] = set()  # asked before every simulation: a set, not a list
_FINISHED_ORDER: deque[str] = deque()
_FINISHED_SIZE = 64
_INSTALLED = threading.Condition()  # notified when a spec arrives


class Missing:
    """The worker (``address``, if known) does not have the spec of this token."""

    def __init__(self, address: str | None = None):
        self.address = address

    def __repr__(self) -> str:
        return f"Missing({self.address!r})"


class SpecPayload:
    """A spec pickled once, with a token that names it."""

    def __init__(self, spec: GenerationSpec):
        self.token = uuid.uuid4().hex
        self.data = cloudpickle.dumps(spec)
        _CACHE[self.token] = spec  # the local process (threads, builtin map) reuses it
        _trim()

    def task(self, start: int, count: int, with_data: bool = True) -> tuple:
        """Arguments of :func:`evaluate_packed` for one range."""
        return (self.token, self.data if with_data else None, start, count)


def _trim() -> None:
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _store(token: str, data: bytes) -> None:
    if token not in _CACHE:
        spec = cloudpickle.loads(data)
        with _INSTALLED:
            _CACHE[token] = spec
            _trim()
            _INSTALLED.notify_all()


async def install(token: str, data: bytes) -> None:
    """Unpickle and keep a spec (run on every worker by ``Client.run``)."""
    _store(token, data)


async def finish(token: str) -> None:
    """Forget a completed generation's spec; its ranges still running stop early."""
    with _INSTALLED:
        _FINISHED.add(token)
        _FINISHED_ORDER.append(token)
        while len(_FINISHED_ORDER) > _FINISHED_SIZE:
            _FINISHED.discard(_FINISHED_ORDER.popleft())
        _CACHE.pop(token, None)
        _INSTALLED.notify_all()


def evaluate(token: str, data: bytes | None, start: int, count: int, wait: float = 0.0
             ) -> BatchResult | Missing | None:
    """Evaluate ``[start, start + count)`` of the spec named ``token``.

    Without ``data``, wait up to ``wait`` seconds for the spec to be installed.
    ``None`` if the generation finished while the range ran.
    """
    if data is not None:
        _store(token, data)
    with _INSTALLED:
        _INSTALLED.wait_for(lambda: token in _CACHE or token in _FINISHED, timeout=wait)
        spec = _CACHE.get(token)
    if spec is None:
        return None if token in _FINISHED else Missing()
    return spec.evaluate(start, count, stop=lambda: token in _FINISHED)


def evaluate_packed(task: tuple) -> BatchResult | Missing | None:
    """:func:`evaluate` on one tuple, for ``map``-style interfaces."""
    return evaluate(*task)
