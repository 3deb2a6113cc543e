"""Models: simulators that map a parameter to a dict of outputs."""

from __future__ import annotations

import inspect
import traceback
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

    def brief(self) -> ModelError:
        """The same failure with only its exception's message as the cause (no traceback):
        what a rejected evaluation keeps, small enough to travel with every result."""
        cause = self.__cause__
        message = ("".join(traceback.format_exception_only(cause)).strip() if cause is not None
                   else self.cause)
        return ModelError(self.model, self.parameter, self.index, self.t, message)


class AllEvaluationsFailed(ModelError):
    """Every one of the first evaluations of a generation failed (``model_errors="reject"``):
    the model raises whatever the parameter, so the run cannot go on.

    The attributes are those of the first failure (:class:`ModelError`), plus
    ``evaluations``, the number of evaluations that all failed.

    Examples
    --------
    >>> error = AllEvaluationsFailed("ode", {"k": 1.5}, 0, 2, "ValueError: diverged", 100)
    >>> str(error).splitlines()[0][:60]
    'all of the first 100 evaluations of generation 2 failed: mod'
    """

    def __init__(self, model: str, parameter: dict, index: int, t: int, cause: str,
                 evaluations: int):
        super().__init__(model, parameter, index, t, cause)
        self.evaluations = evaluations
        generation = "the calibration sample" if t < 0 else f"generation {t}"
        RuntimeError.__init__(
            self, f"all of the first {evaluations} evaluations of {generation} failed: "
            f"model {model!r} raises for every parameter tried, e.g. at evaluation {index} "
            f"with parameter {self.parameter}:\n{cause}\n"
            "Check the model (and its prior): model_errors='reject' skips failing "
            "parameters, but here none succeeds.")

    def __reduce__(self):
        return AllEvaluationsFailed, (self.model, self.parameter, self.index, self.t,
                                      self.cause, self.evaluations)


#: The values of ``ABCSMC(model_errors=...)``: what a simulation that raises does.
MODEL_ERRORS = ("raise", "reject")


class Model:
    """Base class of models.

    A model with ``vectorized = True`` implements :meth:`sample_batch` and is
    called once per batch of evaluations (see :class:`VectorizedModel`).

    Subclasses implement :meth:`sample`. A model may also accept an ``rng``
    keyword: it then receives a ``numpy.random.Generator`` seeded from the
    evaluation's index; numpy's global RNG is seeded from the same key in any
    case, so models using ``np.random.*`` are reproducible too.
    """

    #: Whether :meth:`sample_batch` simulates many evaluations in one call.
    vectorized = False

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


class VectorizedModel(Model):
    """A model that simulates a whole batch in one call: ``f(parameters, rng) -> dict``.

    ``parameters`` maps every parameter name to an array with one entry per
    evaluation; ``rng`` is a :class:`~dask_abc.batch_random.BatchRandom` whose
    draws have one row per evaluation, so each evaluation's result depends only
    on its own index, whatever the batch. The result maps each statistic to an
    array of shape ``(n,) + observed shape``. ``summary_statistics``, if given
    to ABCSMC, receives this dict of arrays.

    Examples
    --------
    >>> @vectorized
    ... def gauss(p, rng):
    ...     return {"y": p["theta"] + rng.normal()}
    >>> gauss.vectorized, gauss.name
    (True, 'gauss')
    """

    vectorized = True

    def __init__(self, sample_batch_function: Callable, name: str | None = None):
        super().__init__(name or getattr(sample_batch_function, "__name__", "model"))
        self.sample_batch_function = sample_batch_function

    def sample_batch(self, pars: Parameter, rng) -> dict:
        return self.sample_batch_function(pars, rng)

    def sample(self, pars: Parameter, rng: np.random.Generator | None = None) -> dict:
        """One evaluation (pyABC's call shape), as a batch of one."""
        from .batch_random import BatchRandom
        from .rng import IndexStreams

        seed = int(rng.integers(2**32)) if rng is not None else int(np.random.randint(2**31))
        batch = Parameter({k: np.array([v], dtype=float) for k, v in pars.items()})
        out = self.sample_batch(batch, BatchRandom(IndexStreams(seed, 0), np.zeros(1, np.int64)))
        return {k: np.asarray(v)[0] for k, v in out.items()}


def vectorized(function: Callable | None = None, *, name: str | None = None):
    """Declare a function a vectorised model (usable as ``@vectorized`` or
    ``@vectorized(name=...)``); see :class:`VectorizedModel`."""
    if function is None:
        return lambda f: VectorizedModel(f, name=name)
    return VectorizedModel(function, name=name)
