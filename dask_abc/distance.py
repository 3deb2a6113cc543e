"""Distances between simulated and observed summary statistics.

A distance works on flat statistic vectors (see :class:`~dask_abc.sumstat.SumStatLayout`):
``batch(X, x0, t)`` returns one distance per row of ``X``. Row-wise reductions
keep every distance independent of how many rows are computed together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .sumstat import SumStatLayout


class Distance:
    """Base class: a distance between statistics of one generation.

    Subclasses implement :meth:`batch`. Adaptive distances also implement
    :meth:`initialize` and :meth:`update` and set ``requires_all_sum_stats``.
    """

    #: Whether :meth:`update` needs the statistics of every evaluation, not only
    #: of accepted ones.
    requires_all_sum_stats = False
    layout: SumStatLayout | None = None
    _runtime_attributes = ("layout",)  # fitted at run time (fingerprint)

    def configure(self, layout: SumStatLayout) -> None:
        """Learn the layout of the statistics (called once by ABCSMC.new/load)."""
        self.layout = layout

    def initialize(self, t: int, sum_stats: np.ndarray, x0: np.ndarray) -> None:
        """Fit to the calibration sample (rows of ``sum_stats``)."""

    def update(self, t: int, sum_stats: np.ndarray, x0: np.ndarray) -> bool:
        """Adapt for generation ``t`` from the previous generation's sample."""
        return False

    def batch(self, X: np.ndarray, x0: np.ndarray, t: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: Mapping, x_0: Mapping, t: int | None = None, par=None) -> float:
        """pyABC's call shape: the distance of one dict of statistics."""
        if self.layout is None:
            self.configure(SumStatLayout.from_observed(x_0))
        layout = self.layout
        X = layout.flatten(x, who="x")[None, :]
        return float(self.batch(X, layout.flatten(x_0, who="x_0"), t if t is not None else 0)[0])

    @property
    def requires_calibration(self) -> bool:
        """Whether :meth:`initialize` needs a calibration sample from the prior."""
        return False

    def get_state(self, t: int):
        """The adapted state for generation ``t`` (JSON-able), stored with the History."""
        return None

    def set_state(self, t: int, state) -> None:
        """Restore what :meth:`get_state` returned (when a run is loaded)."""


def _pnorm(diff: np.ndarray, p: float) -> np.ndarray:
    """Row-wise p-norm of a 2D array of non-negative differences."""
    if p == np.inf:
        return diff.max(axis=1)
    if p == 1:
        return diff.sum(axis=1)
    if p == 2:
        return np.sqrt((diff * diff).sum(axis=1))
    return (diff**p).sum(axis=1) ** (1.0 / p)


class PNormDistance(Distance):
    """Weighted p-norm ``(sum_k |w_k (x_k - x0_k)|^p)^(1/p)``.

    Parameters
    ----------
    p : float
        1, 2, ``np.inf`` or any p >= 1.
    fixed_weights : dict, optional
        Weight per statistic key (a number, or an array of the statistic's
        shape). Missing keys weigh 1. ``weights`` is accepted as an alias.

    Examples
    --------
    >>> d = PNormDistance(p=1, fixed_weights={"b": 2})
    >>> d({"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 0.0})
    3.0
    """

    def __init__(self, p: float = 2, fixed_weights: Mapping | None = None, weights=None, **kwargs):
        if not p >= 1:
            raise ValueError(f"PNormDistance: p must be >= 1, got {p}")
        self.p = float(p)
        self.fixed_weights = dict(fixed_weights or weights or {})
        self._w: np.ndarray | None = None
        _warn_unused(type(self).__name__, kwargs)

    def configure(self, layout: SumStatLayout) -> None:
        super().configure(layout)
        self._w = self._weight_vector(self.fixed_weights)

    def _weight_vector(self, weights: Mapping) -> np.ndarray:
        """A flat weight vector from a weight per statistic key (missing keys: 1)."""
        layout = self.layout
        unknown = sorted(set(weights) - set(layout.keys))
        if unknown:
            raise KeyError(
                f"{type(self).__name__}: weights given for statistics {unknown} "
                f"that the observed data does not have (it has {layout.keys})"
            )
        w = np.ones(layout.size)
        for key, value in weights.items():
            shape = layout.shapes[layout.keys.index(key)]
            w[layout.slices[key]] = np.broadcast_to(np.asarray(value, float), shape).ravel()
        return w

    def weights_for(self, t: int) -> np.ndarray:
        if self._w is None:
            raise RuntimeError(f"{type(self).__name__} used before configure()")
        return self._w

    def batch(self, X: np.ndarray, x0: np.ndarray, t: int) -> np.ndarray:
        return _pnorm(np.abs((X - x0) * self.weights_for(t)), self.p)



def median_absolute_deviation(X: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    """Column-wise median absolute deviation from the median."""
    return np.median(np.abs(X - np.median(X, axis=0)), axis=0)


def mean_absolute_deviation(X: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    """Column-wise mean absolute deviation from the mean."""
    return np.mean(np.abs(X - np.mean(X, axis=0)), axis=0)


def standard_deviation(X: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    """Column-wise standard deviation."""
    return np.std(X, axis=0)


def median_absolute_deviation_to_observation(X: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Column-wise median absolute deviation from the observed value."""
    return np.median(np.abs(X - x0), axis=0)


def mean_absolute_deviation_to_observation(X: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Column-wise mean absolute deviation from the observed value."""
    return np.mean(np.abs(X - x0), axis=0)


def root_mean_square_deviation(X: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Column-wise root mean square deviation from the observed value."""
    return np.sqrt(np.mean((X - x0) ** 2, axis=0))


class AdaptivePNormDistance(PNormDistance):
    """p-norm whose per-statistic weights are ``1 / scale`` of the latest sample.

    The weights are fitted to the calibration sample and then, before each
    generation, to all statistics evaluated in the previous generation (as in
    pyABC). Statistics with zero scale get weight 0.

    Parameters
    ----------
    p : float
        The norm.
    initial_weights : dict, optional
        Weights for generation 0 instead of fitting to the calibration sample.
    adaptive : bool
        Update the weights every generation (else only once at the start).
    scale_function : callable
        ``f(X, x0) -> scales`` column-wise; default median absolute deviation.
    normalize_weights : bool
        Scale the weights to mean 1.
    """

    requires_all_sum_stats = True
    _runtime_attributes = ("weights",)  # fitted at run time (fingerprint)

    def __init__(
        self,
        p: float = 2,
        initial_weights: Mapping | None = None,
        adaptive: bool = True,
        scale_function: Callable | None = None,
        normalize_weights: bool = True,
        fixed_weights: Mapping | None = None,
        **kwargs,
    ):
        super().__init__(p=p, fixed_weights=fixed_weights, **kwargs)
        self.initial_weights = dict(initial_weights or {})
        self.adaptive = adaptive
        self.scale_function = scale_function or median_absolute_deviation
        self.normalize_weights = normalize_weights
        self.weights: dict[int, np.ndarray] = {}

    def _fit(self, t: int, sum_stats: np.ndarray, x0: np.ndarray) -> None:
        scale = np.asarray(self.scale_function(sum_stats, x0), dtype=float)
        with np.errstate(divide="ignore"):
            w = np.where(scale > 0, 1.0 / scale, 0.0)
        if self.normalize_weights and w.sum() > 0:
            w = w * (len(w) / w.sum())
        self.weights[t] = w * self._w

    def initialize(self, t: int, sum_stats: np.ndarray, x0: np.ndarray) -> None:
        if self.initial_weights:
            self.weights[t] = self._weight_vector(self.initial_weights) * self._w
        else:
            self._fit(t, sum_stats, x0)

    def update(self, t: int, sum_stats: np.ndarray, x0: np.ndarray) -> bool:
        if not self.adaptive:
            return False
        self._fit(t, sum_stats, x0)
        return True

    @property
    def requires_calibration(self) -> bool:
        return not self.initial_weights

    def get_state(self, t: int):
        return self.weights_for(t).tolist()

    def set_state(self, t: int, state) -> None:
        if state is not None:
            self.weights[t] = np.asarray(state, dtype=float)

    def weights_for(self, t: int) -> np.ndarray:
        usable = [s for s in self.weights if s <= t]
        if not usable:
            return super().weights_for(t)
        return self.weights[max(usable)]


class FunctionDistance(Distance):
    """A plain callable ``f(x, x0) -> float`` on dicts of statistics.

    Examples
    --------
    >>> d = FunctionDistance(lambda x, x0: abs(x["y"] - x0["y"]))
    >>> d({"y": 2.0}, {"y": 0.5})
    1.5
    """

    def __init__(self, function: Callable):
        self.function = function

    def __repr__(self) -> str:
        return getattr(self.function, "__name__", repr(self.function))

    def batch(self, X: np.ndarray, x0: np.ndarray, t: int) -> np.ndarray:
        layout = self.layout
        obs = layout.unflatten(x0)
        return np.array([float(self.function(layout.unflatten(x), obs)) for x in X])

    def __call__(self, x: Mapping, x_0: Mapping, t: int | None = None, par=None) -> float:
        return float(self.function(x, x_0))



def to_distance(distance) -> Distance:
    """Wrap a plain callable; default to :class:`PNormDistance`."""
    if distance is None:
        return PNormDistance()
    if isinstance(distance, Distance):
        return distance
    if callable(distance):
        return FunctionDistance(distance)
    raise TypeError(f"distance_function must be a Distance or a callable, got {distance!r}")


def _warn_unused(owner: str, kwargs: Mapping) -> None:
    if kwargs:
        import warnings

        warnings.warn(
            f"{owner}: pyABC options {sorted(kwargs)} have no effect in dask-abc",
            UserWarning,
            stacklevel=3,
        )
