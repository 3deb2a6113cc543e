"""Priors: random variables over scipy.stats and distributions over named parameters."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.stats as st

from .parameters import Parameter


class RVBase:
    """A one-dimensional random variable that samples by inverse CDF."""

    def rvs(self, size=None, random_state=None):
        u = np.random.default_rng(random_state).uniform(size=size)
        return self.ppf(u)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pdf(self, x):
        raise NotImplementedError

    def cdf(self, x):
        raise NotImplementedError

    def in_support(self, x: np.ndarray) -> np.ndarray:
        """Whether the density is positive at ``x``."""
        return self.pdf(x) > 0


class RV(RVBase):
    """A random variable named after any ``scipy.stats`` distribution.

    Parameters
    ----------
    name : str
        The scipy.stats name, e.g. ``"norm"``, ``"uniform"``, ``"poisson"``.
    *args, **kwargs
        The distribution's shape, ``loc`` and ``scale`` arguments.

    Examples
    --------
    >>> rv = RV("norm", 0, 3)
    >>> round(float(rv.pdf(0.0)), 4)
    0.133
    """

    _runtime_attributes = ("distribution", "discrete")  # derived from name and args (fingerprint)

    def __init__(self, name: str, *args, **kwargs):
        dist = getattr(st, name, None)
        if not isinstance(dist, st.rv_continuous | st.rv_discrete):
            raise ValueError(f"RV: {name!r} is not a scipy.stats distribution")
        self.name, self.args, self.kwargs = name, args, kwargs
        self.distribution = dist(*args, **kwargs)
        self.discrete = isinstance(dist, st.rv_discrete)
        self._support = tuple(float(b) for b in self.distribution.support())

    def in_support(self, x: np.ndarray) -> np.ndarray:
        if self.discrete:
            return self.pdf(x) > 0
        # Cheaper than the density; scipy's continuous densities are positive
        # inside the open support.
        x = np.asarray(x, dtype=float)
        lower, upper = self._support
        inside = np.atleast_1d((x > lower) & (x < upper))
        edge = np.flatnonzero((x == lower) | (x == upper))
        if edge.size:
            inside[edge] = self.pdf(np.atleast_1d(x)[edge]) > 0
        return inside.reshape(x.shape)

    def ppf(self, u):
        return self.distribution.ppf(u)

    def pdf(self, x):
        if self.discrete:
            return self.distribution.pmf(x)
        return self.distribution.pdf(x)

    def cdf(self, x):
        return self.distribution.cdf(x)

    def __repr__(self) -> str:
        args = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"RV({self.name!r}{''.join(', ' + a for a in args)})"

    def __reduce__(self):
        return _make_rv, (self.name, self.args, self.kwargs)


def _make_rv(name, args, kwargs):
    return RV(name, *args, **kwargs)


class RVDecorator(RVBase):
    """Base of random variables that wrap another one."""

    def __init__(self, component: RVBase):
        self.component = component


class BoundedRV(RVDecorator):
    """A random variable truncated to ``[lower, upper]`` and renormalised.

    Examples
    --------
    >>> rv = BoundedRV(RV("norm", 0, 1), lower=0)
    >>> bool(rv.ppf(np.array([0.01]))[0] > 0)
    True
    """

    def __init__(self, component: RVBase, lower: float = -np.inf, upper: float = np.inf):
        super().__init__(component)
        if not lower < upper:
            raise ValueError(f"BoundedRV: lower bound {lower} is not below upper bound {upper}")
        self.lower, self.upper = lower, upper
        self._cdf_lower = component.cdf(lower) if np.isfinite(lower) else 0.0
        self._cdf_upper = component.cdf(upper) if np.isfinite(upper) else 1.0
        self._mass = self._cdf_upper - self._cdf_lower
        if not self._mass > 0:
            raise ValueError(f"BoundedRV: {component!r} has no mass in [{lower}, {upper}]")

    def ppf(self, u):
        return self.component.ppf(self._cdf_lower + np.asarray(u) * self._mass)

    def pdf(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.lower) & (x <= self.upper)
        return np.where(inside, self.component.pdf(x) / self._mass, 0.0)

    def cdf(self, x):
        c = (self.component.cdf(np.clip(x, self.lower, self.upper)) - self._cdf_lower)
        return c / self._mass

    def __repr__(self) -> str:
        return f"BoundedRV({self.component!r}, lower={self.lower}, upper={self.upper})"


def LowerBoundDecorator(component: RVBase, lower_bound: float) -> BoundedRV:  # noqa: N802
    """pyABC's name for a random variable truncated below."""
    return BoundedRV(component, lower=lower_bound)


class Distribution(dict):
    """A prior over named parameters: independent random variables by name.

    Parameters are kept in sorted name order, as in pyABC's results tables.

    Examples
    --------
    >>> prior = Distribution(theta=RV("norm", 0, 3), sigma=RV("uniform", 0, 1))
    >>> prior.get_parameter_names()
    ['sigma', 'theta']
    >>> sorted(prior.rvs())
    ['sigma', 'theta']
    """

    def __init__(self, mapping: Mapping[str, RVBase] | None = None, **kwargs: RVBase):
        items = dict(mapping or {}, **kwargs)
        for name, rv in items.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Distribution: parameter names must be strings, got {name!r}")
            if not isinstance(rv, RVBase):
                raise TypeError(
                    f"Distribution: parameter {name!r} must be an RV, got {type(rv).__name__}"
                )
        super().__init__(sorted(items.items()))

    @classmethod
    def from_dictionary_of_dictionaries(cls, spec: Mapping[str, Mapping]) -> Distribution:
        """pyABC's ``{"x": {"type": "norm", "args": [0, 1]}}`` form."""
        return cls(
            {
                name: RV(d["type"], *d.get("args", ()), **d.get("kwargs", {}))
                for name, d in spec.items()
            }
        )

    def get_parameter_names(self) -> list[str]:
        return list(self)

    @property
    def dim(self) -> int:
        return len(self)

    def rvs(self, random_state=None) -> Parameter:
        """One sample as a :class:`Parameter`."""
        u = np.random.default_rng(random_state).uniform(size=(1, len(self)))
        return Parameter(zip(self, self.ppf_matrix(u)[0].tolist()))

    def pdf(self, x: Mapping[str, float]) -> float:
        """Density of one parameter (a dict or :class:`Parameter`)."""
        missing = set(self) - set(x)
        if missing:
            raise KeyError(f"Distribution.pdf: parameter(s) {sorted(missing)} missing")
        return float(self.pdf_matrix(np.array([[x[n] for n in self]], dtype=float))[0])

    def ppf_matrix(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms of shape ``(n, dim)`` to samples, column per parameter."""
        out = np.empty(u.shape, dtype=float)
        for j, rv in enumerate(self.values()):
            out[:, j] = rv.ppf(u[:, j])
        return out

    def in_support(self, x: np.ndarray) -> np.ndarray:
        """Whether the density of each row of ``x`` is positive."""
        ok = np.ones(x.shape[0], dtype=bool)
        for j, rv in enumerate(self.values()):
            ok &= rv.in_support(x[:, j])
        return ok

    def pdf_matrix(self, x: np.ndarray) -> np.ndarray:
        """Densities of the rows of ``x`` (shape ``(n, dim)``)."""
        dens = np.ones(x.shape[0])
        for j, rv in enumerate(self.values()):
            dens = dens * rv.pdf(x[:, j])
        return dens

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Distribution({inner})"
