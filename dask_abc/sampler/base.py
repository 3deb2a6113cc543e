"""The sampler interface: where and when index ranges of a generation are evaluated."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from .. import config
from ..generation import BatchResult, GenerationSpec
from ..observers import GenerationObserver
from ..reproducibility import warn_shared_global_state
from ..sample import Sample, SampleCollector

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def nr_cores_available() -> int:
    """Processes to use: ``abc.multicore.n-procs``, ``$PYABC_NUM_PROCS``, else the CPU count."""
    configured = config.get("multicore.n-procs")
    if configured:
        return int(configured)
    if os.environ.get("PYABC_NUM_PROCS"):
        return int(os.environ["PYABC_NUM_PROCS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def exit_with_master(master: int) -> None:
    """End this worker process when the master (PID ``master``) dies, even by SIGKILL,
    which leaves the master no chance to stop its workers: by the kernel on Linux,
    else by a watchdog thread."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        def watch():
            while os.getppid() == master:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != master:  # it died before the kernel was told
        os._exit(1)


class Sampler:
    """Base class of samplers.

    A sampler only decides where and when index ranges of a
    :class:`~dask_abc.generation.GenerationSpec` are evaluated; the spec does all
    the statistics, so every sampler returns the same population.

    :meth:`sample` is the primitive: a spec and a collector in, the population out.
    Subclasses implement :meth:`_run`, which feeds batch results into the
    collector until ``collector.done``; those that hand out ranges of more than
    one index size them through ``self.policy``
    (:mod:`~dask_abc.sampler.policy`).
    """

    def __init__(self, check_max_eval: bool = False):
        self.check_max_eval = check_max_eval  # accepted for pyABC; max_eval always holds
        self.nr_evaluations_ = 0
        self._warned: set[str] = set()  # models warned about (numpy's global random state)

    def sample(self, spec: GenerationSpec, collector: SampleCollector) -> Sample:
        """Evaluate ranges of ``spec`` into ``collector`` until the population is
        determined; numpy's global random state is left as it was.

        Examples
        --------
        What :class:`~dask_abc.ABCSMC` does every generation::

            collector = SampleCollector(n, max_eval, restored, on_batch=observers.on_batch)
            sample = sampler.sample(spec, collector)
        """
        state = np.random.get_state()  # simulations reseed it when they run in this process
        try:
            self._run(spec, collector)
        finally:
            np.random.set_state(state)
        sample = collector.result()
        self.nr_evaluations_ = sample.evaluations_performed
        return sample

    def sample_until_n_accepted(
        self,
        n: int,
        spec: GenerationSpec,
        max_eval: float = np.inf,
        acceptance_rate_hint: float | None = None,
        *,
        restored: Sequence[BatchResult] = (),
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> Sample:
        """pyABC's call: :meth:`sample` into a new
        :class:`~dask_abc.sample.SampleCollector` of these arguments.

        Ranges ``restored`` (from a checkpoint) are not evaluated again;
        ``on_batch`` is called with every new result as it returns (checkpoints,
        progress).
        """
        return self.sample(spec, SampleCollector(n, max_eval, restored, on_batch=on_batch,
                                                 acceptance_rate_hint=acceptance_rate_hint))

    def _run(self, spec: GenerationSpec, collector: SampleCollector) -> None:
        """Feed batch results of ``spec`` into ``collector`` until ``collector.done``."""
        raise NotImplementedError

    def _warn_if_threads_share_global_state(self, spec: GenerationSpec, threads: int,
                                            where: str) -> None:
        """Warn once per model that draws from numpy's global random state when
        ``threads`` threads of one process simulate (:mod:`dask_abc.reproducibility`)."""
        if threads > 1:
            warn_shared_global_state(spec.models_drawing_from_global_state(), threads, where,
                                     self._warned)

    def stop(self) -> None:
        """Release what the sampler started (processes, executors); it can start again."""

    def observers(self, run: str) -> list[GenerationObserver]:
        """The generation observers of the sampler's side, for the run called ``run``:
        the ABC page of the Dask dashboard of :meth:`dashboard_client`, if any and
        ``abc.dashboard.enabled``."""
        if not config.get("dashboard.enabled"):
            return []
        client = self.dashboard_client()
        if client is None:
            return []
        from ..dashboard import DashboardReporter

        return [DashboardReporter(client, run)]

    def dashboard_client(self):
        """The Dask client whose dashboard shows the run: the current client, if any
        (Dask-based samplers return their own)."""
        if "distributed" not in sys.modules:
            return None  # no Dask client can exist without distributed imported
        from distributed import Client

        try:
            return Client.current()
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SamplerError(RuntimeError):
    """A sampler's worker died or the sampler could not proceed."""
