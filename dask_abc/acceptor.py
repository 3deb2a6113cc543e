"""Acceptance of an evaluation given its distance and the threshold."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Acceptor:
    """Base class: ``accept(distances, eps) -> bool array``."""

    def accept(self, distances: np.ndarray, eps: float) -> np.ndarray:
        raise NotImplementedError


class UniformAcceptor(Acceptor):
    """Accept an evaluation when its distance is at most epsilon.

    Examples
    --------
    >>> UniformAcceptor().accept(np.array([0.1, 0.3]), 0.2)
    array([ True, False])
    """

    def accept(self, distances: np.ndarray, eps: float) -> np.ndarray:
        return distances <= eps


class FunctionAcceptor(Acceptor):
    """An acceptor from a function ``f(distance, eps) -> bool``, applied per evaluation."""

    def __init__(self, function: Callable[[float, float], bool]):
        self.function = function

    def accept(self, distances: np.ndarray, eps: float) -> np.ndarray:
        return np.array([bool(self.function(float(d), eps)) for d in distances], dtype=bool)


def to_acceptor(acceptor) -> Acceptor:
    if acceptor is None:
        return UniformAcceptor()
    if isinstance(acceptor, Acceptor):
        return acceptor
    if callable(acceptor):
        return FunctionAcceptor(acceptor)
    raise TypeError(f"acceptor must be an Acceptor or a callable, got {acceptor!r}")
