"""Random numbers for a vectorised model: one row of draws per evaluation index."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from .rng import SIMULATION, IndexStreams


class BatchRandom:
    """Draws for a batch of evaluations, row ``r`` belonging to index ``indices[r]``.

    Every call uses a fresh stream, so a row's numbers depend only on (seed,
    generation, index, call number): a vectorised model gives the same result
    for an index whatever batch it is evaluated in.

    Examples
    --------
    >>> br = BatchRandom(IndexStreams(1, 0), np.arange(4))
    >>> br.normal(size=3).shape
    (4, 3)
    """

    def __init__(self, streams: IndexStreams, indices: np.ndarray):
        self._streams = streams
        self.indices = np.asarray(indices)
        self._calls = 0

    def __len__(self) -> int:
        return len(self.indices)

    def _uniforms(self, size) -> np.ndarray:
        shape = () if size is None else tuple(np.atleast_1d(size))
        width = int(np.prod(shape)) if shape else 1
        self._calls += 1
        u = self._streams.uniforms(self.indices, SIMULATION + self._calls, width)
        return u.reshape((len(self.indices),) + shape)

    def random(self, size=None) -> np.ndarray:
        """Uniforms in (0, 1), shape ``(n,) + size``."""
        return self._uniforms(size)

    def uniform(self, low=0.0, high=1.0, size=None) -> np.ndarray:
        return low + (high - low) * self._uniforms(size)

    def standard_normal(self, size=None) -> np.ndarray:
        return ndtri(self._uniforms(size))

    def normal(self, loc=0.0, scale=1.0, size=None) -> np.ndarray:
        return loc + scale * self.standard_normal(size)

    def exponential(self, scale=1.0, size=None) -> np.ndarray:
        return -scale * np.log(self._uniforms(size))

    def from_distribution(self, distribution, size=None) -> np.ndarray:
        """Draws of a frozen ``scipy.stats`` distribution by inverse CDF (any shape parameters
        broadcast against the batch)."""
        return distribution.ppf(self._uniforms(size))
