"""Forked worker processes that claim index ranges from a shared counter."""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle
import queue
import traceback

from .. import config
from ..generation import GenerationSpec
from ..sample import SampleCollector
from .base import Sampler, SamplerError, evaluations_still_needed, nr_cores_available


def _worker(spec, counter, claim, stop, results, max_eval):
    """Claim ranges of ``claim.value`` indices until told to stop."""
    try:
        while not stop.is_set():
            with counter.get_lock():
                start = counter.value
                count = int(min(claim.value, max_eval - start))
                if count <= 0:
                    break
                counter.value = start + count
            results.put(("batch", spec.evaluate(start, count)))
    except BaseException as e:  # report everything, also KeyboardInterrupt, to the master
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(traceback.format_exc())
        results.put(("error", e))


class MulticoreSampler(Sampler):
    """Base of the fork-based samplers: a pool per generation, a shared index counter.

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
    """

    def __init__(self, n_procs: int | None = None, daemon: bool = True, pickle=None,
                 check_max_eval: bool = False):
        super().__init__(check_max_eval=check_max_eval)
        self._seconds, self._evaluated = 0.0, 0
        self.n_procs = n_procs if n_procs is not None else nr_cores_available()
        if self.n_procs < 1:
            raise ValueError(f"{type(self).__name__}: n_procs must be >= 1, got {n_procs}")
        self.daemon = daemon

    def _claim_size(self, collector: SampleCollector, acceptance_rate_hint) -> int:
        raise NotImplementedError

    @property
    def seconds_per_evaluation(self) -> float | None:
        """Mean wall time of one evaluation in the current generation so far."""
        return self._seconds / self._evaluated if self._evaluated else None

    def _run(self, spec: GenerationSpec, collector: SampleCollector, acceptance_rate_hint):
        self._seconds, self._evaluated = 0.0, 0
        ctx = mp.get_context("fork")
        counter = ctx.Value("q", 0)
        claim = ctx.Value("q", self._claim_size(collector, acceptance_rate_hint), lock=False)
        stop = ctx.Event()
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_worker, daemon=self.daemon, name=f"dask-abc-worker-{k}",
                        args=(spec, counter, claim, stop, results, collector.max_eval))
            for k in range(self.n_procs)
        ]
        for p in procs:
            p.start()
        poll = float(config.get("multicore.poll-interval"))
        try:
            while not collector.done:
                try:
                    kind, payload = results.get(timeout=poll)
                except queue.Empty:
                    self._check_workers(procs, results, collector)
                    continue
                if kind == "error":
                    raise payload
                collector.add(payload)
                self._seconds += payload.seconds
                self._evaluated += payload.n_evaluated
                claim.value = self._claim_size(collector, acceptance_rate_hint)
        finally:
            stop.set()
            for p in procs:
                p.join(timeout=0.05)
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()
            results.close()
            results.cancel_join_thread()

    def _check_workers(self, procs, results, collector) -> None:
        for k, p in enumerate(procs):
            if p.exitcode not in (None, 0):
                raise SamplerError(
                    f"{type(self).__name__}: worker process {k} (pid {p.pid}) died with "
                    f"exit code {p.exitcode}"
                    + (f" (signal {-p.exitcode})" if p.exitcode < 0 else "")
                    + f"; generation incomplete at {collector.n_accepted}/{collector.n} accepted"
                )
        if all(p.exitcode == 0 for p in procs) and results.empty() and not collector.done:
            raise SamplerError(
                f"{type(self).__name__}: all worker processes exited before the "
                f"population was complete ({collector.n_accepted}/{collector.n} accepted)"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_procs={self.n_procs})"


class MulticoreEvalParallelSampler(MulticoreSampler):
    """DYN: every worker takes the next index as it frees up (pyABC's default).

    Slow and fast simulations interleave freely; the index rule makes the
    population identical to :class:`~dask_abc.sampler.SingleCoreSampler`'s,
    without a bias to fast simulations. A claim is one index until the time
    per evaluation is known; then claims grow to about
    ``abc.multicore.target-claim-seconds`` of work (so that fast models are
    not dominated by messaging) but never beyond an even share of the
    evaluations still expected, which keeps the excess at the end small.

    Examples
    --------
    >>> sampler = MulticoreEvalParallelSampler(n_procs=2)
    """

    def _claim_size(self, collector, acceptance_rate_hint) -> int:
        per_eval = self.seconds_per_evaluation
        if per_eval is None:
            return 1
        size = int(float(config.get("multicore.target-claim-seconds")) / max(per_eval, 1e-9))
        share = math.ceil(evaluations_still_needed(collector, acceptance_rate_hint) / self.n_procs)
        return max(1, min(size, share))


class MulticoreParticleParallelSampler(MulticoreSampler):
    """STAT: every worker takes about ``remaining / (workers * acceptance rate)`` indices.

    Few messages, suited to very fast models; with slow models the last
    ranges may run past the population's end.

    Examples
    --------
    >>> sampler = MulticoreParticleParallelSampler(n_procs=2)
    """

    def _claim_size(self, collector, acceptance_rate_hint) -> int:
        return math.ceil(evaluations_still_needed(collector, acceptance_rate_hint) / self.n_procs)
