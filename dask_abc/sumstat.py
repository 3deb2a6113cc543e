"""The layout of summary statistics: dicts of numbers and arrays <-> flat vectors."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class SumStatError(ValueError):
    """A model's summary statistics do not match the observed data."""


def _as_numeric(key: str, value, who: str) -> np.ndarray:
    if hasattr(value, "to_numpy"):  # pandas objects
        value = value.to_numpy()
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise SumStatError(f"{who}: statistic {key!r} is not numeric ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise SumStatError(
            f"{who}: statistic {key!r} is not numeric "
            f"(got {type(value).__name__} of dtype {arr.dtype})"
        )
    return arr.astype(np.float64, copy=False)


def identity(x):
    """The default summary statistics: the model output itself."""
    return x


class SumStatLayout:
    """Keys, shapes and positions of statistics in a flat vector.

    Built from the observed data; every simulated dict must have the same keys
    and shapes.

    Examples
    --------
    >>> layout = SumStatLayout.from_observed({"y": 1.0, "z": [1, 2]})
    >>> layout.flatten({"y": 0.5, "z": [3, 4]}, who="model")
    array([0.5, 3. , 4. ])
    >>> layout.unflatten(layout.flatten({"y": 0.5, "z": [3, 4]}))["z"]
    array([3., 4.])
    """

    def __init__(self, keys: list[str], shapes: list[tuple[int, ...]]):
        self.keys = list(keys)
        self.shapes = [tuple(s) for s in shapes]
        sizes = [int(np.prod(s)) for s in self.shapes]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.slices = {k: slice(bounds[i], bounds[i + 1]) for i, k in enumerate(self.keys)}
        self.size = int(bounds[-1])
        self._keyset = set(self.keys)

    @classmethod
    def from_observed(cls, observed: Mapping) -> SumStatLayout:
        if not isinstance(observed, Mapping) or not observed:
            raise SumStatError(
                "observed_sum_stat must be a non-empty dict of statistics, "
                f"got {type(observed).__name__}"
            )
        arrays = {k: _as_numeric(k, v, "observed data") for k, v in observed.items()}
        return cls(list(arrays), [a.shape for a in arrays.values()])

    def _check_keys(self, stats, who: str) -> None:
        if not isinstance(stats, Mapping):
            raise SumStatError(
                f"{who} returned {type(stats).__name__}; expected a dict with keys {self.keys}"
            )
        if stats.keys() != self._keyset:
            raise SumStatError(
                f"{who} returned keys different from the observed data: "
                f"missing {sorted(self._keyset - set(stats))}, "
                f"unexpected {sorted(set(stats) - self._keyset)}"
            )

    def flatten(self, stats: Mapping, who: str = "model") -> np.ndarray:
        """Flatten one dict of statistics; clear errors on any mismatch."""
        self._check_keys(stats, who)
        out = np.empty(self.size)
        for key, shape in zip(self.keys, self.shapes):
            value = stats[key]
            if shape == () and isinstance(value, float | int) and not isinstance(value, bool):
                out[self.slices[key]] = value
                continue
            arr = _as_numeric(key, value, who)
            if arr.shape != shape:
                raise SumStatError(
                    f"{who}: statistic {key!r} has shape {arr.shape}, the observed data {shape}"
                )
            out[self.slices[key]] = arr.ravel()
        return out

    def flatten_batch(self, stats: Mapping, n: int, who: str = "model") -> np.ndarray:
        """Flatten a dict of arrays with ``n`` rows (a vectorised model's output)."""
        self._check_keys(stats, who)
        out = np.empty((n, self.size))
        for key, shape in zip(self.keys, self.shapes):
            arr = _as_numeric(key, stats[key], who)
            if arr.shape != (n, *shape):
                raise SumStatError(
                    f"{who}: statistic {key!r} has shape {arr.shape} for a batch of {n}; "
                    f"expected {(n, *shape)}"
                )
            out[:, self.slices[key]] = arr.reshape(n, -1)
        return out

    def unflatten(self, vector: np.ndarray) -> dict:
        """The dict form of one flat vector."""
        return {
            k: (float(vector[self.slices[k]][0]) if s == () else vector[self.slices[k]].reshape(s))
            for k, s in zip(self.keys, self.shapes)
        }

    def column_names(self) -> list[str]:
        """A name per flat entry: the key, with ``[i]`` suffixes for array entries."""
        names = []
        for k, s in zip(self.keys, self.shapes):
            if s == ():
                names.append(k)
            else:
                names.extend(f"{k}[{i}]" for i in range(int(np.prod(s))))
        return names

    def to_dict(self) -> dict:
        return {"keys": self.keys, "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_dict(cls, d: Mapping) -> SumStatLayout:
        return cls(d["keys"], [tuple(s) for s in d["shapes"]])
