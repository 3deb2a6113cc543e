"""Evaluate rounds of index ranges through any ``map``."""

from __future__ import annotations

from collections.abc import Callable

from ..generation import GenerationSpec
from ..reproducibility import pool_threads
from ..sample import SampleCollector
from . import payload
from .base import Sampler, nr_cores_available
from .policy import RangePolicy, Static, policy_for


class MappingSampler(Sampler):
    """Evaluate through ``map_(function, tasks)``: the builtin ``map``,
    ``multiprocessing.Pool.map``, a Dask client's ``map`` (its futures are
    gathered), or any map-like callable.

    Each round maps up to ``chunks`` ranges sized by the policy: by default
    (:class:`~dask_abc.sampler.policy.Static` ``(guided=False)``) the evaluations
    expected to complete the population, split evenly into ``chunks`` tasks. The spec travels
    as bytes and is unpickled once per worker process.

    Parameters
    ----------
    map_ : callable
        The map.
    mapper_pickles : bool
        Accepted for pyABC; the spec is always cloudpickled, so lambdas and
        closures work with maps that use plain pickle.
    chunks : int, optional
        Tasks per round; default the number of CPUs.
    batch_size : int, "auto", "static", "dynamic" or RangePolicy, optional
        The range sizes (:func:`~dask_abc.sampler.policy.policy_for`; "auto" with the
        settings ``abc.multicore.*``); default ``Static(guided=False)``.

    Examples
    --------
    >>> sampler = MappingSampler(map)
    """

    def __init__(self, map_: Callable = map, mapper_pickles: bool = False,
                 chunks: int | None = None, batch_size: int | str | RangePolicy | None = None):
        super().__init__()
        self.map_ = map_
        self.mapper_pickles = mapper_pickles
        self.chunks = chunks or nr_cores_available()
        self.policy = (Static(guided=False) if batch_size is None
                       else policy_for(batch_size, section="multicore"))

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        self._warn_if_threads_share_global_state(spec, pool_threads(self.map_),
                                                 "the map's process")
        shipped = payload.SpecPayload(spec)
        start = 0
        while not collector.done:
            ranges = self.policy.ranges(collector, start, 0, self.chunks, self.chunks)
            start = sum(ranges[-1])
            tasks = [shipped.task(first, count) for first, count in ranges]
            for result in self.map_(payload.evaluate_packed, tasks):
                if hasattr(result, "result"):  # a future, e.g. from a Dask client's map
                    result = result.result()
                collector.add(result)
                self.policy.observe(result)

    def __repr__(self) -> str:
        return f"MappingSampler(map_={getattr(self.map_, '__qualname__', self.map_)!r})"
