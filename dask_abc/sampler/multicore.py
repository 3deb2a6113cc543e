"""Forked worker processes that evaluate index ranges handed out by the master."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import traceback

from .. import config
from ..generation import GenerationSpec
from ..sample import SampleCollector
from .base import Sampler, SamplerError, exit_with_master, nr_cores_available
from .policy import RangePolicy, policy_for


def _worker(master, spec, tasks, results):
    """Evaluate ``(start, count)`` ranges from ``tasks`` until a ``None`` arrives."""
    exit_with_master(master)
    try:
        while (task := tasks.get()) is not None:
            results.put(("batch", spec.evaluate(*task)))
    except BaseException as e:  # report everything, also KeyboardInterrupt, to the master
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(traceback.format_exc())
        results.put(("error", e))


class MulticoreSampler(Sampler):
    """Base of the fork-based samplers: a pool per generation, ranges sized by the master.

    The master decides the ranges with the latest results, through its policy
    (:mod:`~dask_abc.sampler.policy`, settings ``abc.multicore.*``), and keeps
    ``1 + pipeline_depth`` ranges out per worker (a policy may queue more);
    subclasses set the default policy and the depth.

    Parameters
    ----------
    n_procs : int, optional
        Worker processes; default :func:`~dask_abc.sampler.base.nr_cores_available`.
    daemon : bool
        Start the workers as daemons (then a model cannot start processes).
    pickle : bool, optional
        Accepted for pyABC; processes are forked, so nothing is pickled.
    check_max_eval : bool
        Accepted for pyABC; ``max_eval`` always holds.
    batch_size : int, "auto", "static", "dynamic" or RangePolicy, optional
        The range sizes (:func:`~dask_abc.sampler.policy.policy_for`); default
        the subclass's.
    """

    #: Ranges queued per worker beyond the one it evaluates.
    pipeline_depth = 1
    #: The policy without a ``batch_size`` argument.
    default_batch_size = "auto"

    def __init__(self, n_procs: int | None = None, daemon: bool = True, pickle=None,
                 check_max_eval: bool = False,
                 batch_size: int | str | RangePolicy | None = None):
        super().__init__(check_max_eval=check_max_eval)
        self.policy = policy_for(self.default_batch_size if batch_size is None else batch_size,
                                 section="multicore")
        self.n_procs = n_procs if n_procs is not None else nr_cores_available()
        if self.n_procs < 1:
            raise ValueError(f"{type(self).__name__}: n_procs must be >= 1, got {n_procs}")
        self.daemon = daemon

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        ctx = mp.get_context("fork")
        tasks, results = ctx.SimpleQueue(), ctx.Queue()
        procs = [
            ctx.Process(target=_worker, daemon=self.daemon, name=f"dask-abc-worker-{k}",
                        args=(os.getpid(), spec, tasks, results))
            for k in range(self.n_procs)
        ]
        for p in procs:
            p.start()
        poll = float(config.get("multicore.poll-interval"))
        handed_out = in_flight = 0
        window = self.n_procs * (1 + self.pipeline_depth)
        polls_since_exit: dict[int, int] = {}

        def hand_out() -> None:
            nonlocal handed_out, in_flight
            for task in self.policy.ranges(collector, handed_out, in_flight, window,
                                           self.n_procs):
                tasks.put(task)
                handed_out, in_flight = sum(task), in_flight + 1

        try:
            hand_out()
            while not collector.done:
                try:
                    kind, payload = results.get(timeout=poll)
                except queue.Empty:
                    self._check_workers(procs, collector, polls_since_exit)
                    continue
                if kind == "error":
                    raise payload
                collector.add(payload)
                self.policy.observe(payload)
                in_flight -= 1
                if not collector.done:
                    hand_out()
        finally:
            for p in procs:
                p.terminate()  # what they still evaluate is excess
            for p in procs:
                p.join()
            results.close()
            results.cancel_join_thread()

    def _check_workers(self, procs, collector, polls_since_exit: dict) -> None:
        """Raise if a worker died; a clean exit is an error only once its report (if any)
        had a poll's time to arrive."""
        for k, p in enumerate(procs):
            if p.exitcode is None:
                continue
            if p.exitcode == 0 and polls_since_exit.setdefault(k, 0) < 1:
                polls_since_exit[k] += 1
                continue
            raise SamplerError(
                f"{type(self).__name__}: worker process {k} (pid {p.pid}) "
                + (f"died with exit code {p.exitcode}" if p.exitcode else "exited unexpectedly")
                + (f" (signal {-p.exitcode})" if p.exitcode < 0 else "")
                + f"; generation incomplete at {collector.n_accepted}/{collector.n} accepted"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_procs={self.n_procs})"


class MulticoreEvalParallelSampler(MulticoreSampler):
    """DYN↔STAT by :class:`~dask_abc.sampler.policy.Auto`: every worker takes the next
    range as it frees up (pyABC's default).

    Slow and fast simulations interleave freely; the index rule makes the
    population identical to :class:`~dask_abc.sampler.SingleCoreSampler`'s,
    without a bias to fast simulations. A range is one index until the time
    per evaluation is known; then ranges grow to about
    ``abc.multicore.target-task-seconds`` of work (so that fast models are
    not dominated by messaging) and shrink towards the population's end, to
    ``abc.multicore.min-task-seconds``, which keeps the excess at the end small.
    ``batch_size="dynamic"`` keeps one index per range.

    Examples
    --------
    >>> sampler = MulticoreEvalParallelSampler(n_procs=2)
    >>> sampler.policy
    Auto('multicore')
    """


class MulticoreParticleParallelSampler(MulticoreSampler):
    """STAT by :class:`~dask_abc.sampler.policy.Static`: every worker takes an even
    share of the evaluations still expected.

    A range is ``unclaimed / workers`` indices, where ``unclaimed`` is the
    number of evaluations expected to complete the population (from the
    acceptance rate) beyond those already handed out.

    Few messages, suited to very fast models; with slow models the last
    ranges may run past the population's end.

    Examples
    --------
    >>> sampler = MulticoreParticleParallelSampler(n_procs=2)
    >>> sampler.policy
    Static()
    """

    pipeline_depth = 0  # a range is sized when its worker asks, never ahead
    default_batch_size = "static"
