"""The population of a completed generation, as the next one uses it and as it is stored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Population:
    """A completed generation as the next one uses it (and as it is stored)."""

    t: int
    index: np.ndarray
    model: np.ndarray
    theta: np.ndarray
    weight: np.ndarray  # normalised over the population
    distance: np.ndarray
    sum_stats: np.ndarray
    model_probabilities: np.ndarray
    samples: int

    @property
    def ess(self) -> float:
        return float(1.0 / np.sum(self.weight**2))

    @property
    def acceptance_rate(self) -> float:
        return len(self.index) / self.samples
