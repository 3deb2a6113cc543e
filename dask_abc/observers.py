"""Generation observers: what watches a run's generations (the checkpoint journal, the
progress bars, the Dask dashboard's ABC page) through one seam.

:class:`~dask_abc.ABCSMC` calls, for every generation (the calibration sample is
generation -1):

``on_start(t, n, epsilon, restored)``
    before sampling; ``restored`` are the ranges a resumed generation starts with;
``on_batch(batch)``
    for every result as it returns (on the thread that collects results);
``on_sampled(sample)``
    when the sampler has determined the population (before it is stored);
``on_end(outcome)``
    last, with a :class:`GenerationOutcome` (also when sampling failed);

and ``close()`` once at the end of ``run()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .generation import BatchResult


class GenerationObserver:
    """Base class of generation observers: every hook does nothing.

    Examples
    --------
    >>> class Counter(GenerationObserver):
    ...     def __init__(self):
    ...         self.evaluations = 0
    ...     def on_batch(self, batch):
    ...         self.evaluations += batch.n_evaluated
    """

    def on_start(self, t: int, n: int, epsilon: float,
                 restored: Sequence[BatchResult] = ()) -> None:
        """Generation ``t`` (population ``n``, threshold ``epsilon``) starts."""

    def on_batch(self, batch: BatchResult) -> None:
        """A range's result returned."""

    def on_sampled(self, sample) -> None:
        """The sampler determined the generation's :class:`~dask_abc.sample.Sample`."""

    def on_end(self, outcome: GenerationOutcome) -> None:
        """The generation ended (completed, stopped early or failed)."""

    def close(self) -> None:
        """The run ended: release what the observer holds."""


class Observers(GenerationObserver):
    """Several observers as one, called in order.

    Examples
    --------
    >>> observers = Observers([GenerationObserver(), GenerationObserver()])
    >>> len(observers)
    2
    """

    def __init__(self, observers: Iterable[GenerationObserver] = ()):
        self.observers = [o for o in observers if o is not None]

    def __len__(self) -> int:
        return len(self.observers)

    def on_start(self, t, n, epsilon, restored=()) -> None:
        for observer in self.observers:
            observer.on_start(t, n, epsilon, restored)

    def on_batch(self, batch) -> None:
        for observer in self.observers:
            observer.on_batch(batch)

    def on_sampled(self, sample) -> None:
        for observer in self.observers:
            observer.on_sampled(sample)

    def on_end(self, outcome) -> None:
        for observer in self.observers:
            observer.on_end(outcome)

    def close(self) -> None:
        """Close every observer, also when one of them fails (the first error is raised)."""
        errors = []
        for observer in self.observers:
            try:
                observer.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


@dataclass
class GenerationOutcome:
    """How generation ``t`` ended.

    Attributes
    ----------
    t, epsilon
        The generation and its threshold.
    summary : str or None
        One line for people (None: sampling failed with an exception).
    population : Population or None
        The completed population (None: calibration, stopped early, or failed).
    seconds : float
        Wall time of the generation.
    model_names, parameter_names
        The models' names and each model's parameter names.
    failed_samples : int
        Failed evaluations among those the generation counts (``model_errors="reject"``).

    Examples
    --------
    >>> GenerationOutcome(t=0, epsilon=1.0, summary=None).failed
    True
    """

    t: int
    epsilon: float
    summary: str | None
    population: object | None = None
    seconds: float = 0.0
    model_names: Sequence[str] = ()
    parameter_names: Sequence[Sequence[str]] = field(default_factory=tuple)
    failed_samples: int = 0

    @property
    def failed(self) -> bool:
        return self.summary is None

    def marginals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``"model: parameter"`` -> (values, weights) of the population's living models."""
        population, marginals = self.population, {}
        if population is None:
            return marginals
        for j, (model, names) in enumerate(zip(self.model_names, self.parameter_names)):
            rows = population.model == j
            if rows.any():
                for k, name in enumerate(names):
                    marginals[f"{model}: {name}"] = (population.theta[rows, k],
                                                      population.weight[rows])
        return marginals
