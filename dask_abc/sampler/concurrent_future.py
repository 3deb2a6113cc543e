"""Evaluate index ranges on any ``concurrent.futures.Executor``."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os

from ..generation import GenerationSpec
from ..reproducibility import pool_threads
from ..sample import SampleCollector
from . import payload
from .base import Sampler, SamplerError, exit_with_master, nr_cores_available
from .policy import RangePolicy, policy_for


class ConcurrentFutureSampler(Sampler):
    """Submit index ranges to an executor, keeping at most ``client_max_jobs`` in
    flight; ranges no longer needed are cancelled.

    Parameters
    ----------
    cfuture_executor : concurrent.futures.Executor, optional
        Any executor (process or thread pool, or a compatible client). If
        None, a process pool with one process per core is started and shut
        down by :meth:`stop`. With threads, models must not use numpy's global
        RNG (it is shared by threads); take an ``rng`` argument instead.
    client_max_jobs : int
        Tasks in flight at most.
    default_pickle : bool
        Accepted for pyABC; the spec is always cloudpickled once per generation.
    batch_size : int, "auto", "static", "dynamic" or RangePolicy
        Indices per task, or a policy that sizes them
        (:func:`~dask_abc.sampler.policy.policy_for`; "auto" with the settings
        ``abc.multicore.*``).

    Examples
    --------
    >>> from concurrent.futures import ProcessPoolExecutor
    >>> sampler = ConcurrentFutureSampler(ProcessPoolExecutor(2), batch_size=10)
    """

    def __init__(self, cfuture_executor: cf.Executor | None = None, client_max_jobs: int = 200,
                 default_pickle: bool = True, batch_size: int | str | RangePolicy = 1):
        super().__init__()
        if client_max_jobs < 1:
            raise ValueError("ConcurrentFutureSampler: client_max_jobs must be >= 1")
        self.policy = policy_for(batch_size, section="multicore")
        self.executor = cfuture_executor
        self._owns_executor = False
        self.client_max_jobs = client_max_jobs
        self.default_pickle = default_pickle
        self.batch_size = batch_size

    def _executor(self) -> cf.Executor:
        if self.executor is None:
            self.executor = cf.ProcessPoolExecutor(
                nr_cores_available(), mp_context=mp.get_context("fork"),
                initializer=exit_with_master, initargs=(os.getpid(),))
            self._owns_executor = True
        return self.executor

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        executor = self._executor()
        self._warn_if_threads_share_global_state(spec, pool_threads(executor),
                                                 "the executor's process")
        shipped = payload.SpecPayload(spec)
        slots = getattr(executor, "_max_workers", 1)
        # The first tasks carry the spec; later ones only its token.
        with_data_left = slots
        pending: dict[cf.Future, tuple[int, int]] = {}

        def submit(start: int, count: int, with_data: bool) -> None:
            future = executor.submit(payload.evaluate, *shipped.task(start, count, with_data))
            pending[future] = (start, count)

        next_start = 0
        try:
            while not collector.done:
                for start, count in self.policy.ranges(collector, next_start, len(pending),
                                                       self.client_max_jobs, slots):
                    submit(start, count, with_data_left > 0)
                    with_data_left -= 1
                    next_start = start + count
                finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    start, count = pending.pop(future)
                    result = future.result()
                    if isinstance(result, payload.Missing):
                        submit(start, count, True)
                    else:
                        collector.add(result)
                        self.policy.observe(result)
        except cf.BrokenExecutor as e:
            raise self._broken(e, executor, collector) from e
        finally:
            for future in pending:
                future.cancel()

    @staticmethod
    def _broken(error: Exception, executor: cf.Executor, collector: SampleCollector):
        processes = getattr(executor, "_processes", None) or {}
        codes = sorted({p.exitcode for p in processes.values() if p.exitcode not in (None, 0)})
        return SamplerError(
            f"ConcurrentFutureSampler: a worker of {type(executor).__name__} died"
            + (f" with exit code {', '.join(map(str, codes))}" if codes else "")
            + f" ({error}); generation incomplete at {collector.n_accepted}/{collector.n} "
            "accepted")

    def stop(self) -> None:
        if self._owns_executor and self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor, self._owns_executor = None, False
