"""Evaluate rounds of index ranges through any ``map``."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..generation import GenerationSpec
from ..reproducibility import pool_threads
from ..sample import SampleCollector
from . import payload
from .base import Sampler, evaluations_still_needed, nr_cores_available


class MappingSampler(Sampler):
    """Evaluate through ``map_(function, tasks)``: the builtin ``map``,
    ``multiprocessing.Pool.map``, a Dask client's ``map`` (its futures are
    gathered), or any map-like callable.

    Each round maps the ranges expected to complete the population, split into
    ``chunks`` tasks; the spec travels as bytes and is unpickled once per
    worker process.

    Parameters
    ----------
    map_ : callable
        The map.
    mapper_pickles : bool
        Accepted for pyABC; the spec is always cloudpickled, so lambdas and
        closures work with maps that use plain pickle.
    chunks : int, optional
        Tasks per round; default the number of CPUs.

    Examples
    --------
    >>> sampler = MappingSampler(map)
    """

    def __init__(self, map_: Callable = map, mapper_pickles: bool = False,
                 chunks: int | None = None):
        super().__init__()
        self.map_ = map_
        self.mapper_pickles = mapper_pickles
        self.chunks = chunks or nr_cores_available()

    def _run(self, spec: GenerationSpec, collector: SampleCollector, acceptance_rate_hint):
        self._warn_if_threads_share_global_state(spec, pool_threads(self.map_),
                                                 "the map's process")
        shipped = payload.SpecPayload(spec)
        start = 0
        while not collector.done:
            total = evaluations_still_needed(collector, acceptance_rate_hint)
            size = math.ceil(total / self.chunks)
            tasks = []
            while total > 0:
                start, count = collector.fit_range(start, min(size, total))
                if not count:
                    break
                tasks.append(shipped.task(start, count))
                start, total = start + count, total - count
            for result in self.map_(payload.evaluate_packed, tasks):
                if hasattr(result, "result"):  # a future, e.g. from a Dask client's map
                    result = result.result()
                collector.add(result)

    def __repr__(self) -> str:
        return f"MappingSampler(map_={getattr(self.map_, '__qualname__', self.map_)!r})"
