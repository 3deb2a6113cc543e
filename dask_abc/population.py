"""The population of a completed generation, as the next one uses it and as it is stored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .particles import Particles


@dataclass(kw_only=True)
class Population(Particles):
    """A completed generation: its :class:`~dask_abc.particles.Particles` with weights
    normalised over the population, the model probabilities and the number of
    evaluations it took (``samples``).

    Examples
    --------
    >>> z = np.zeros(4)
    >>> p = Population(t=0, index=np.arange(4), model=z.astype(int), theta=z[:, None],
    ...                distance=z, weight=z + 0.25, sum_stats=z[:, None],
    ...                model_probabilities=np.ones(1), samples=8)
    >>> p.ess, p.acceptance_rate
    (4.0, 0.5)
    """

    t: int
    model_probabilities: np.ndarray
    samples: int

    @classmethod
    def from_sample(cls, t: int, sample: Particles, n_models: int) -> Population:
        """Generation ``t`` of a collector's :class:`~dask_abc.sample.Sample`: weights
        normalised, model probabilities their sums per model."""
        weight = sample.weight / sample.weight.sum()
        probs = np.bincount(sample.model, weights=weight, minlength=n_models)
        columns = sample.columns()
        columns["weight"] = weight
        return cls(t=t, model_probabilities=probs, samples=sample.n_evaluations, **columns)

    @property
    def ess(self) -> float:
        """The effective sample size, 1 / sum of squared normalised weights."""
        return float(1.0 / np.sum(self.weight**2))

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted / self.samples
