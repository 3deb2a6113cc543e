"""Ship a generation spec once, evaluate ranges of it many times.

Samplers that hand tasks to an executor send the spec as cloudpickled bytes
with a token. A worker process unpickles a token's spec once and keeps it; a
task without the bytes whose token the worker has not seen answers
:data:`MISSING`, and the sampler sends it again with the bytes.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

import cloudpickle

from ..generation import BatchResult, GenerationSpec

_CACHE: OrderedDict[str, GenerationSpec] = OrderedDict()
_CACHE_SIZE = 2


class _Missing:
    """The worker does not have the spec of this token."""

    def __reduce__(self):
        return _missing, ()


def _missing():
    return MISSING


MISSING = _Missing()


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


def evaluate(token: str, data: bytes | None, start: int, count: int) -> BatchResult | _Missing:
    """Evaluate ``[start, start + count)`` of the spec named ``token``."""
    spec = _CACHE.get(token)
    if spec is None:
        if data is None:
            return MISSING
        spec = _CACHE[token] = cloudpickle.loads(data)
        _trim()
    return spec.evaluate(start, count)


def evaluate_packed(task: tuple) -> BatchResult | _Missing:
    """:func:`evaluate` on one tuple, for ``map``-style interfaces."""
    return evaluate(*task)
