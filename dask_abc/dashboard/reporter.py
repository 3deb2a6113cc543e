"""The master side of the ABC page: progress as Dask events, rate-limited."""

from __future__ import annotations

import time

import numpy as np

from .. import config
from ..generation import BatchResult
from .plugin import TOPIC, ABCDashboardPlugin


class DashboardReporter:
    """Send a run's progress to the ABC page of ``client``'s dashboard.

    Events go through the client's batched stream to the scheduler (no round
    trip); a status message at most every ``abc.dashboard.interval`` seconds.

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
        if ABCDashboardPlugin.name not in _plugins(client):
            client.register_plugin(ABCDashboardPlugin(), name=ABCDashboardPlugin.name)
        self.interval = float(config.get("dashboard.interval"))
        self._send({"kind": "start", "run": run})
        self._last = 0.0

    def _send(self, msg: dict) -> None:
        self.client.log_event(TOPIC, msg)

    def generation_started(self, t: int, n: int, epsilon: float, restored=()) -> None:
        self.t, self.n, self.epsilon = t, n, float(epsilon)
        self.started = time.monotonic()
        self.accepted = sum(b.n_accepted for b in restored)
        self.evaluations = sum(b.n_evaluated for b in restored)
        self.batch_size = 0
        self._status(force=True)

    def update(self, batch: BatchResult) -> None:
        """Count a returned batch (a collector callback)."""
        self.accepted += batch.n_accepted
        self.evaluations += batch.n_evaluated
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
                    "evaluations": self.evaluations,
                    "acceptance_rate": self.accepted / self.evaluations if self.evaluations
                    else None, "epsilon": _finite(self.epsilon), "batch_size": self.batch_size,
                    "evaluations_per_second": self.evaluations / elapsed,
                    "seconds_left": left})

    def generation_done(self, t: int, epsilon: float, samples: int, ess: float,
                        seconds: float, model_names, model_probabilities, posterior) -> None:
        """A completed generation; ``posterior``: name -> (values, weights)."""
        self.accepted = self.n
        self._status(force=True)
        histograms = {}
        for name, (values, weights) in posterior.items():
            density, edges = np.histogram(values, bins=30, weights=weights, density=True)
            histograms[name] = (edges.tolist(), density.tolist())
        self._send({"kind": "generation", "t": t, "epsilon": _finite(epsilon),
                    "acceptance_rate": self.n / samples, "ess": float(ess),
                    "samples": int(samples), "seconds": float(seconds),
                    "model_probabilities": {name: float(p) for name, p in
                                            zip(model_names, model_probabilities)},
                    "posterior": histograms})


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _plugins(client) -> set[str]:
    def names(dask_scheduler=None):
        return list(dask_scheduler.plugins)

    return set(client.run_on_scheduler(names))
