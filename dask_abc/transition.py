"""Perturbation kernels: proposals for parameters and for the model index.

Kernels sample from given uniforms and normals (drawn per evaluation index) and
evaluate densities with elementwise products summed over the last axis, never
with matrix products, so every row is computed identically whatever the batch.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from . import config

_LOG_2PI = np.log(2 * np.pi)


def silverman_rule_of_thumb(n_samples: float, dimension: int) -> float:
    """Silverman's bandwidth factor."""
    return (4 / n_samples / (dimension + 2)) ** (1 / (dimension + 4))


def scott_rule_of_thumb(n_samples: float, dimension: int) -> float:
    """Scott's bandwidth factor."""
    return n_samples ** (-1.0 / (dimension + 4))


def weighted_covariance(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted covariance of the rows of ``X``, regularised to be positive definite."""
    n, d = X.shape
    if n > 1 and np.count_nonzero(w) > 1:
        cov = np.atleast_2d(np.cov(X, rowvar=False, aweights=w))
    else:
        cov = np.zeros((d, d))
    # A population of one point, or on a line, has a singular covariance; a
    # small ridge keeps the kernel proper without changing regular cases.
    ridge = 1e-10 * max(1.0, float(np.max(np.abs(X)))) ** 2
    if n < 2 or np.linalg.eigvalsh(cov)[0] <= ridge:
        cov = cov + np.eye(d) * max(ridge, 1e-8 * float(np.trace(cov)) / d)
    return cov


def _apply(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrices @ vectors`` row by row, batch-invariant (no BLAS)."""
    return (matrices * vectors[..., None, :]).sum(axis=-1)


class Transition:
    """Base class of parameter kernels: ``fit``, ``rvs_from``, ``pdf``."""

    _runtime_attributes = ("X", "w", "cov", "chol", "chol_inv", "log_norm")  # fitted (fingerprint)
    X: np.ndarray
    w: np.ndarray

    def fit(self, X: np.ndarray, w: np.ndarray) -> None:
        raise NotImplementedError

    def _ancestors(self, u: np.ndarray) -> np.ndarray:
        cum = np.cumsum(self.w)
        return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(self.w) - 1)

    def rvs_from(self, u: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Proposals from ancestor uniforms ``u`` (n,) and normals ``z`` (n, d)."""
        raise NotImplementedError

    def pdf(self, Y: np.ndarray) -> np.ndarray:
        """Kernel density of the rows of ``Y`` (n, d), in blocks of rows."""
        n, d = self.X.shape
        if d == 0:  # a model without parameters
            return np.ones(len(Y))
        block = max(1, int(config.get("kernel.block-elements")) // (n * d * d))
        parts = [self._density(Y[i:i + block]) for i in range(0, len(Y), block)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _density(self, Y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MultivariateNormalTransition(Transition):
    """A Gaussian kernel around every particle, one covariance for all.

    The covariance is the weighted sample covariance times
    ``bandwidth_selector(n, d)**2 * scaling``.

    Examples
    --------
    >>> tr = MultivariateNormalTransition()
    >>> tr.fit(np.array([[0.0], [1.0], [2.0]]), np.ones(3) / 3)
    >>> tr.rvs_from(np.array([0.5]), np.zeros((1, 1)))
    array([[1.]])
    """

    def __init__(self, scaling: float = 1, bandwidth_selector=silverman_rule_of_thumb):
        self.scaling = scaling
        self.bandwidth_selector = bandwidth_selector

    def fit(self, X: np.ndarray, w: np.ndarray) -> None:
        self.X, self.w = np.asarray(X, float), np.asarray(w, float) / np.sum(w)
        n, d = self.X.shape
        if d == 0:
            self.chol = np.zeros((0, 0))
            return
        factor = self.bandwidth_selector(n, d) ** 2 * self.scaling
        self.cov = weighted_covariance(self.X, self.w) * factor
        self.chol = np.linalg.cholesky(self.cov)
        self.chol_inv = np.linalg.inv(self.chol)
        self.log_norm = np.log(np.diag(self.chol)).sum() + 0.5 * d * _LOG_2PI

    def rvs_from(self, u: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.X[self._ancestors(u)] + _apply(self.chol, z)

    def _density(self, Y: np.ndarray) -> np.ndarray:
        diff = Y[:, None, :] - self.X[None, :, :]
        q = (_apply(self.chol_inv, diff) ** 2).sum(axis=-1)
        return (np.exp(-0.5 * q - self.log_norm) * self.w).sum(axis=-1)


class LocalTransition(Transition):
    """A Gaussian kernel per particle with the covariance of its k nearest neighbours.

    Parameters
    ----------
    k : int, optional
        Neighbours per particle; by default ``k_fraction`` of the population.
    k_fraction : float
        Fraction of the population used when ``k`` is None.
    scaling : float
        Factor on every local covariance.
    """

    def __init__(self, k: int | None = None, k_fraction: float = 0.25, scaling: float = 1):
        if k is None and not 0 < k_fraction <= 1:
            raise ValueError(f"LocalTransition: k_fraction must be in (0, 1], got {k_fraction}")
        self.k, self.k_fraction, self.scaling = k, k_fraction, scaling

    def fit(self, X: np.ndarray, w: np.ndarray) -> None:
        self.X, self.w = np.asarray(X, float), np.asarray(w, float) / np.sum(w)
        n, d = self.X.shape
        if d == 0:
            self.chol = np.zeros((n, 0, 0))
            return
        k = self.k if self.k is not None else max(int(round(self.k_fraction * n)), d + 1)
        k = min(max(k, 1), n)
        _, neighbours = cKDTree(self.X).query(self.X, k=k)
        neighbours = np.asarray(neighbours).reshape(n, k)
        covs = np.stack([
            weighted_covariance(self.X[nb], np.ones(k)) * self.scaling for nb in neighbours
        ])
        self.chol = np.linalg.cholesky(covs)
        self.chol_inv = np.linalg.inv(self.chol)
        self.log_norm = (np.log(np.diagonal(self.chol, axis1=1, axis2=2)).sum(axis=1)
                         + 0.5 * d * _LOG_2PI)

    def rvs_from(self, u: np.ndarray, z: np.ndarray) -> np.ndarray:
        anc = self._ancestors(u)
        return self.X[anc] + _apply(self.chol[anc], z)

    def _density(self, Y: np.ndarray) -> np.ndarray:
        diff = Y[:, None, :] - self.X[None, :, :]
        q = (_apply(self.chol_inv[None], diff) ** 2).sum(axis=-1)
        return (np.exp(-0.5 * q - self.log_norm) * self.w).sum(axis=-1)


class ModelPerturbationKernel:
    """Jump between models: stay with ``probability_to_stay``, else move uniformly.

    Examples
    --------
    >>> k = ModelPerturbationKernel(2, probability_to_stay=0.7)
    >>> round(float(k.pmf(1, 0)), 6)
    0.3
    """

    def __init__(self, nr_of_models: int, probability_to_stay: float | None = 0.7):
        self.nr_of_models = nr_of_models
        if probability_to_stay is None:
            probability_to_stay = 0.7
        self.probability_to_stay = 1.0 if nr_of_models == 1 else float(probability_to_stay)
        if not 0 <= self.probability_to_stay <= 1:
            raise ValueError("ModelPerturbationKernel: probability_to_stay must be in [0, 1]")

    def rvs_from(self, m: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Jump from models ``m`` using uniforms ``u`` (n,)."""
        stay = u < self.probability_to_stay
        others = self.nr_of_models - 1
        if others == 0:
            return m.copy()
        # Rescale the remaining uniform mass onto the other models.
        v = (u - self.probability_to_stay) / (1 - self.probability_to_stay)
        step = np.minimum((v * others).astype(int), others - 1) + 1
        return np.where(stay, m, (m + step) % self.nr_of_models)

    def pmf(self, m_new, m_old) -> np.ndarray:
        m_new, m_old = np.asarray(m_new), np.asarray(m_old)
        if self.nr_of_models == 1:
            return np.ones(np.broadcast(m_new, m_old).shape)
        move = (1 - self.probability_to_stay) / (self.nr_of_models - 1)
        return np.where(m_new == m_old, self.probability_to_stay, move)
