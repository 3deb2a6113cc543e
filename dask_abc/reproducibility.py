"""Threads and numpy's global random state: where the index rule cannot hold, say so.

Every evaluation seeds numpy's global random state from its own key before its
model runs, so a model that draws from ``np.random.*`` is reproducible as long
as one simulation at a time runs in a process. Several threads of one process
(Dask workers with ``nthreads > 1``, ``dask-abc-worker --threads``, a
``ThreadPoolExecutor``) share that one state: their draws interleave by timing
and the results are no longer a function of ``(seed, t, index)``. A model that
takes an ``rng`` argument draws from its own ``numpy.random.Generator`` and is
reproducible everywhere.

:func:`draws_from_global_state` tells, after a model ran once on a freshly
seeded state, whether it drew from it (the pre-flight check of
:meth:`~dask_abc.generation.GenerationSpec.check` records this per model);
:func:`warn_shared_global_state` warns once per model where threads share it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np


class GlobalRandomStateWarning(UserWarning):
    """A model that draws from numpy's global random state runs in several threads of
    one process: its results are not reproducible."""


def draws_from_global_state(seed: int) -> bool:
    """Whether numpy's global random state moved since ``np.random.seed(seed)``.

    Examples
    --------
    >>> np.random.seed(7)
    >>> draws_from_global_state(7)
    False
    >>> _ = np.random.normal()
    >>> draws_from_global_state(7)
    True
    """
    now, fresh = np.random.get_state(), np.random.RandomState(seed).get_state()
    return bool(now[2] != fresh[2] or now[3:] != fresh[3:]
                or not np.array_equal(now[1], fresh[1]))


_WARNED: set[str] = set()  # models warned about in this process


def warn_shared_global_state(models: Iterable[str], threads: int, where: str,
                             warned: set[str] | None = None) -> None:
    """Warn once per model (per ``warned`` set, default per process) that ``models``
    draw from numpy's global random state while ``threads`` threads of ``where`` share
    it.

    Examples
    --------
    >>> warn_shared_global_state(["gauss"], threads=1, where="a worker")  # one thread: fine
    """
    if threads <= 1:
        return
    warned = _WARNED if warned is None else warned
    for name in models:
        if name in warned:
            continue
        warned.add(name)
        warnings.warn(GlobalRandomStateWarning(
            f"model {name!r} draws from numpy's global random state, which the {threads} "
            f"threads of {where} share: simulations running at once interleave their draws, "
            "so its results depend on timing and the run is not reproducible (the index rule "
            f"fails). Give the model an `rng` argument and draw from it instead, e.g. "
            f"`def {name}(parameter, rng): ... rng.normal()`, or use single-threaded worker "
            "processes."), stacklevel=3)


def pool_threads(pool) -> int:
    """How many threads of this process ``pool`` simulates in: the workers of a
    ``concurrent.futures.ThreadPoolExecutor`` or a ``multiprocessing.pool.ThreadPool``
    (or of the pool a bound ``map`` belongs to); 1 for anything else (process pools,
    clusters, the builtin ``map``).

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(4) as pool:
    ...     pool_threads(pool), pool_threads(pool.map), pool_threads(map)
    (4, 4, 1)
    """
    from concurrent.futures import ThreadPoolExecutor
    from multiprocessing.pool import ThreadPool

    pool = getattr(pool, "__self__", pool)  # a bound map: its pool
    if isinstance(pool, ThreadPoolExecutor):
        return pool._max_workers
    if isinstance(pool, ThreadPool):
        return pool._processes
    return 1
