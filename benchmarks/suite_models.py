"""Models of the Dask suite, importable by workers so that they count their calls.

The benchmark's ``PYTHONPATH`` includes this directory; workers import this
module by name, and :data:`CALLS` counts the simulations that ran in each
process, excess and abandoned ones included.
"""

from __future__ import annotations

import time

import numpy as np

CALLS = 0


def spin(seconds: float) -> None:
    """Keep the CPU busy for ``seconds`` (no sleeping)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class GaussianModel:
    """``y ~ N(theta, 1)`` after ``seconds`` of CPU work."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, parameter):
        global CALLS
        CALLS += 1
        if self.seconds:
            spin(self.seconds)
        return {"y": np.random.normal(parameter["theta"], 1.0)}


def calls() -> int:
    """Simulations run in this process since the last :func:`reset`."""
    return CALLS


def reset() -> None:
    global CALLS
    CALLS = 0
