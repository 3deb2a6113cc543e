"""The one record of accepted particles, from a worker's range to the database.

A worker's :class:`~dask_abc.generation.BatchResult`, the collector's
:class:`~dask_abc.sample.Sample` and the stored
:class:`~dask_abc.population.Population` are all :class:`Particles`: the same
columns in index order, with what each stage adds (the range evaluated, the
evaluation count, the normalised weights and model probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(kw_only=True)
class Particles:
    """Accepted particles as columns, in index order.

    Attributes
    ----------
    index : ndarray of int
        The evaluation indices.
    model : ndarray of int
        The model of each particle.
    theta : ndarray, shape (n, max parameters)
        The parameters, NaN-padded for models with fewer.
    distance : ndarray
    weight : ndarray
        Importance weights (unnormalised until the population is complete).
    sum_stats : ndarray, shape (n, statistics)

    Examples
    --------
    >>> z = np.zeros(2)
    >>> p = Particles(index=np.arange(2), model=z.astype(int), theta=z[:, None], distance=z,
    ...               weight=z + 1, sum_stats=z[:, None])
    >>> p.n_accepted, sorted(p.columns(slice(0, 1)))[0]
    (2, 'distance')
    """

    COLUMNS: ClassVar[tuple[str, ...]] = ("index", "model", "theta", "distance", "weight",
                                          "sum_stats")

    index: np.ndarray
    model: np.ndarray
    theta: np.ndarray
    distance: np.ndarray
    weight: np.ndarray
    sum_stats: np.ndarray

    @property
    def n_accepted(self) -> int:
        return len(self.index)

    def columns(self, rows=slice(None)) -> dict[str, np.ndarray]:
        """The particle columns, restricted to ``rows`` (a slice, indices or a mask)."""
        return {name: getattr(self, name)[rows] for name in self.COLUMNS}

    @classmethod
    def concat_columns(cls, parts: Sequence[Particles]) -> dict[str, np.ndarray]:
        """The columns of ``parts`` one after the other."""
        return {name: np.concatenate([getattr(p, name) for p in parts])
                for name in cls.COLUMNS}
