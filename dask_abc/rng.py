"""Counter-based random numbers keyed by (seed, generation, index).

Every evaluation of a generation draws its randomness from its own key, so the
numbers an index receives do not depend on how indices are batched, ordered or
distributed. Within a batch the draws are vectorised: a SplitMix64 hash of
(generation key, index, stream, position) gives 53-bit uniforms.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

#: Streams of an evaluation; distinct so that adding draws to one leaves the others.
MODEL_CHOICE, MODEL_JUMP, ANCESTOR, NORMALS, PRIOR, SIMULATION = range(6)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


class IndexStreams:
    """Random numbers for the evaluations of one generation.

    Parameters
    ----------
    seed : int
        The run's seed.
    t : int
        The generation: -1 is the calibration sample, -2 the pre-flight check.

    Examples
    --------
    >>> s = IndexStreams(seed=42, t=0)
    >>> u = s.uniforms(np.arange(5), stream=0, width=2)
    >>> bool(np.all(u[2:] == s.uniforms(np.arange(2, 5), stream=0, width=2)))
    True
    """

    def __init__(self, seed: int, t: int):
        key = np.random.SeedSequence([int(seed), t + 2]).generate_state(1, np.uint64)
        self._key = key  # shape (1,), kept as an array so that arithmetic wraps silently
        self._stream_keys: dict[tuple[int, int], np.ndarray] = {}

    def _stream_key(self, stream: int, attempt: int) -> np.ndarray:
        sk = self._stream_keys.get((stream, attempt))
        if sk is None:
            tag = np.full(1, stream * 1_000_003 + attempt, dtype=np.uint64)
            sk = self._stream_keys[stream, attempt] = _mix(self._key ^ _mix(tag + _GOLDEN))
        return sk

    def _words(self, indices: np.ndarray, stream: int, width: int, attempt: int) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.uint64)
        base = _mix(idx * _GOLDEN + self._stream_key(stream, attempt))
        pos = np.arange(1, width + 1, dtype=np.uint64) * _GOLDEN
        return _mix(base[:, None] + pos)

    def uniforms(
        self, indices: np.ndarray, stream: int, width: int = 1, attempt: int = 0
    ) -> np.ndarray:
        """Uniforms in (0, 1), shape ``(len(indices), width)``."""
        words = self._words(indices, stream, width, attempt) >> np.uint64(11)
        return (words.astype(np.float64) + 0.5) * 2.0**-53

    def normals(
        self, indices: np.ndarray, stream: int, width: int = 1, attempt: int = 0
    ) -> np.ndarray:
        """Standard normals, shape ``(len(indices), width)``."""
        return ndtri(self.uniforms(indices, stream, width, attempt))

    def seeds(self, indices: np.ndarray, stream: int = SIMULATION) -> np.ndarray:
        """One 32-bit seed per index (for ``np.random.seed`` and model generators)."""
        words = self._words(indices, stream, 1, 0)[:, 0] >> np.uint64(32)
        return words.astype(np.uint32)
