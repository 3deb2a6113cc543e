"""Models: simulators that map a parameter to a dict of outputs."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from .parameters import Parameter


class ModelError(RuntimeError):
    """A model raised while simulating; carries the parameter that made it fail.

    Attributes
    ----------
    model : str
        The model's name.
    parameter : dict
        The parameter values of the failing evaluation.
    index : int
        The evaluation index (reproduces the failure with the same seed).
    """

    def __init__(self, model: str, parameter: dict, index: int, t: int, cause: str):
        self.model, self.parameter, self.index, self.t, self.cause = (
            model, dict(parameter), index, t, cause)
        super().__init__(
            f"model {model!r} failed in generation {t} at evaluation {index} "
            f"with parameter {self.parameter}:\n{cause}"
        )

    def __reduce__(self):
        return ModelError, (self.model, self.parameter, self.index, self.t, self.cause)


class Model:
    """Base class of models.

    Subclasses implement :meth:`sample`. A model may also accept an ``rng``
    keyword: it then receives a ``numpy.random.Generator`` seeded from the
    evaluation's index; numpy's global RNG is seeded from the same key in any
    case, so models using ``np.random.*`` are reproducible too.
    """

    def __init__(self, name: str = "model"):
        self.name = name

    def sample(self, pars: Parameter, rng: np.random.Generator | None = None) -> dict:
        raise NotImplementedError

    @property
    def wants_rng(self) -> bool:
        return False

    def __call__(self, pars: Parameter):
        return self.sample(pars)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class FunctionModel(Model):
    """A model from a plain function ``f(parameter) -> dict``.

    Examples
    --------
    >>> def gauss(p):
    ...     return {"y": p["theta"]}
    >>> FunctionModel(gauss).sample({"theta": 1.0})
    {'y': 1.0}
    """

    def __init__(self, sample_function: Callable, name: str | None = None):
        super().__init__(name or getattr(sample_function, "__name__", "model"))
        self.sample_function = sample_function
        try:
            params = inspect.signature(sample_function).parameters
        except (TypeError, ValueError):  # builtins and some callables have none
            params = {}
        self._wants_rng = "rng" in params

    @property
    def wants_rng(self) -> bool:
        return self._wants_rng

    def sample(self, pars: Parameter, rng: np.random.Generator | None = None) -> dict:
        if self._wants_rng:
            return self.sample_function(pars, rng=rng)
        return self.sample_function(pars)


def to_model(model, position: int) -> Model:
    """Wrap a callable into a :class:`Model`, naming it after the function."""
    if isinstance(model, Model):
        return model
    if callable(model):
        return FunctionModel(model)
    raise TypeError(f"model {position} is not callable: {model!r}")
