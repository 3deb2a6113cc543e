"""Acceptance thresholds per generation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def weighted_quantile(points: np.ndarray, weights: np.ndarray | None = None,
                      alpha: float = 0.5) -> float:
    """Weighted quantile with linear interpolation between sample points (as pyABC).

    Examples
    --------
    >>> weighted_quantile(np.array([1.0, 2.0, 3.0]), alpha=0.5)
    2.0
    """
    points = np.asarray(points, dtype=float)
    weights = np.ones_like(points) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(points, kind="stable")
    points, weights = points[order], weights[order] / weights.sum()
    cumulative = np.cumsum(weights) - 0.5 * weights
    return float(np.interp(alpha, cumulative, points))


class Epsilon:
    """Base class: the threshold ``eps(t)`` of every generation ``t``."""

    #: Whether generation 0 needs a calibration sample from the prior.
    requires_calibration = False

    def initialize(self, t: int, distances: np.ndarray, weights: np.ndarray) -> None:
        """Set the first threshold from the calibration sample."""

    def update(self, t: int, distances: np.ndarray, weights: np.ndarray) -> None:
        """Set ``eps(t)`` from the previous population's distances and weights."""

    def restore(self, t: int, value: float) -> None:
        """Take ``eps(t)`` of a stored generation (a loaded run)."""

    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def max_generations(self) -> float:
        """The number of generations this schedule defines (inf if unbounded)."""
        return np.inf


class ConstantEpsilon(Epsilon):
    """The same threshold in every generation.

    Examples
    --------
    >>> ConstantEpsilon(0.5)(3)
    0.5
    """

    def __init__(self, constant_epsilon_value: float):
        self.constant_epsilon_value = float(constant_epsilon_value)

    def __call__(self, t: int) -> float:
        return self.constant_epsilon_value


class ListEpsilon(Epsilon):
    """A fixed list of thresholds; the run stops when it is used up.

    Examples
    --------
    >>> ListEpsilon([3, 2, 1])(1)
    2.0
    """

    def __init__(self, values: Sequence[float]):
        self.epsilon_values = [float(v) for v in values]
        if not self.epsilon_values:
            raise ValueError("ListEpsilon needs at least one value")

    def __call__(self, t: int) -> float:
        return self.epsilon_values[t]

    def max_generations(self) -> float:
        return len(self.epsilon_values)


class QuantileEpsilon(Epsilon):
    """The alpha-quantile of the previous population's weighted distances.

    Parameters
    ----------
    initial_epsilon : float or "from_sample"
        The first threshold; ``"from_sample"`` takes the quantile of a
        calibration sample from the prior.
    alpha : float
        The quantile, in (0, 1].
    quantile_multiplier : float
        Factor applied to the quantile.
    weighted : bool
        Weight the distances by the particle weights.
    """

    _runtime_attributes = ("values",)  # fitted at run time (fingerprint)

    def __init__(self, initial_epsilon="from_sample", alpha: float = 0.5,
                 quantile_multiplier: float = 1, weighted: bool = True):
        if not 0 < alpha <= 1:
            raise ValueError(f"{type(self).__name__}: alpha must be in (0, 1], got {alpha}")
        if initial_epsilon != "from_sample" and not float(initial_epsilon) > 0:
            raise ValueError(f"{type(self).__name__}: initial_epsilon must be > 0 or "
                             f"'from_sample', got {initial_epsilon!r}")
        self.initial_epsilon = initial_epsilon
        self.alpha = alpha
        self.quantile_multiplier = quantile_multiplier
        self.weighted = weighted
        self.values: dict[int, float] = {}

    @property
    def requires_calibration(self) -> bool:
        return self.initial_epsilon == "from_sample"

    def _quantile(self, distances, weights) -> float:
        w = weights if self.weighted else None
        return weighted_quantile(distances, w, self.alpha) * self.quantile_multiplier

    def initialize(self, t: int, distances: np.ndarray, weights: np.ndarray) -> None:
        if self.requires_calibration:
            self.values[t] = self._quantile(distances, weights)
        else:
            self.values[t] = float(self.initial_epsilon)

    def update(self, t: int, distances: np.ndarray, weights: np.ndarray) -> None:
        self.values[t] = self._quantile(distances, weights)

    def restore(self, t: int, value: float) -> None:
        self.values[t] = float(value)

    def __call__(self, t: int) -> float:
        return self.values[t]


class MedianEpsilon(QuantileEpsilon):
    """The weighted median of the previous population's distances (pyABC's default)."""

    def __init__(self, initial_epsilon="from_sample", median_multiplier: float = 1,
                 weighted: bool = True):
        super().__init__(initial_epsilon=initial_epsilon, alpha=0.5,
                         quantile_multiplier=median_multiplier, weighted=weighted)
