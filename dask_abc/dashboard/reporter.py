"""The master side of the ABC page: progress as Dask events, rate-limited."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np

from .. import config
from ..generation import BatchResult
from ..observers import GenerationObserver, GenerationOutcome
from ..report import BINS
from .plugin import TOPIC, ABCDashboardPlugin

logger = logging.getLogger("dask_abc")


class DashboardReporter(GenerationObserver):
    """Send a run's progress to the ABC page of ``client``'s dashboard (a generation
    observer).

    Events are sent in order from the client's event loop; the master never waits
    for them (``Client.log_event`` waits for the scheduler's answer, which costs
    a loaded master a tenth of a second a call). A status message goes at most every
    ``abc.dashboard.interval`` seconds; :meth:`close` waits briefly for what is
    still on its way.

    Parameters
    ----------
    client : distributed.Client
        Its scheduler gets the :class:`~dask_abc.dashboard.ABCDashboardPlugin`
        (once).
    run : str
        What the page calls the run.
    """

    def __init__(self, client, run: str):
        self.client = client
        self._pending: deque[dict] = deque()
        self._lock = threading.Lock()
        self._sending = False
        self._idle = threading.Event()
        self._idle.set()
        # idempotent: a second run on this scheduler keeps the page's plugin and state
        client.register_plugin(ABCDashboardPlugin(), name=ABCDashboardPlugin.name)
        self.interval = float(config.get("dashboard.interval"))
        self._send({"kind": "start", "run": run})
        self._last = 0.0

    def _send(self, msg: dict) -> None:
        with self._lock:
            self._pending.append(msg)
            if self._sending:
                return
            self._sending = True
            self._idle.clear()
        self.client.loop.add_callback(self._flush)

    async def _flush(self) -> None:
        """Send the pending events one after the other (in order), on the event loop."""
        while True:
            with self._lock:
                if not self._pending:
                    self._sending = False
                    self._idle.set()
                    return
                msg = self._pending.popleft()
            try:
                await self.client.scheduler.log_event(topic=TOPIC, msg=msg)
            except Exception as error:  # the page misses one update; the run goes on
                logger.debug("the ABC page's event %s was not delivered: %r",
                             msg.get("kind"), error)

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for the events still on their way."""
        self._idle.wait(timeout)

    def on_start(self, t: int, n: int, epsilon: float, restored=()) -> None:
        self.t, self.n, self.epsilon = t, n, float(epsilon)
        self.started = time.monotonic()
        self.accepted = sum(b.n_accepted for b in restored)
        self.evaluations = sum(b.n_evaluated for b in restored)
        self.failed = sum(b.n_failed for b in restored)
        self.batch_size = 0
        self._status(force=True)

    def on_batch(self, batch: BatchResult) -> None:
        self.accepted += batch.n_accepted
        self.evaluations += batch.n_evaluated
        self.failed += batch.n_failed
        self.batch_size = batch.n_evaluated
        self._status()

    def _status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.accepted / elapsed
        left = (self.n - min(self.accepted, self.n)) / rate if rate > 0 else None
        self._send({"kind": "status", "generation": self.t,
                    "accepted": min(self.accepted, self.n), "population": self.n,
                    "evaluations": self.evaluations, "failed": self.failed,
                    "acceptance_rate": self.accepted / self.evaluations if self.evaluations
                    else None, "epsilon": _finite(self.epsilon), "batch_size": self.batch_size,
                    "evaluations_per_second": self.evaluations / elapsed,
                    "seconds_left": left})

    def on_end(self, outcome: GenerationOutcome) -> None:
        """A completed generation goes to the page with its posterior marginals."""
        population = outcome.population
        if population is None:
            return
        self.accepted = self.n
        self._status(force=True)
        histograms = []
        for name, (values, weights) in outcome.marginals().items():
            density, edges = np.histogram(values, bins=BINS, weights=weights, density=True)
            model, parameter = _model_and_parameter(name, outcome.model_names)
            histograms.append({"model": model, "parameter": parameter,
                               "edges": edges.tolist(), "density": density.tolist()})
        self._send({"kind": "generation", "t": outcome.t, "epsilon": _finite(outcome.epsilon),
                    "acceptance_rate": population.acceptance_rate, "ess": population.ess,
                    "samples": int(population.samples), "seconds": float(outcome.seconds),
                    "failed_samples": int(outcome.failed_samples),
                    "model_probabilities": {name: float(p) for name, p in zip(
                        outcome.model_names, population.model_probabilities)},
                    "posterior": histograms})


def _model_and_parameter(name: str, model_names) -> tuple[str, str]:
    """Split ``"model: parameter"`` at the model's name (which may hold ": " itself)."""
    for model in sorted(model_names, key=len, reverse=True):
        if name.startswith(f"{model}: "):
            return model, name[len(model) + 2:]
    model, _, parameter = name.partition(": ")
    return model, parameter


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None

