"""A standalone worker: claims index ranges from a broker and evaluates them.

This is the loop behind ``dask-abc-worker``. It fetches each generation's
spec once, claims ranges until the generation is over, and pushes columnar
results. A heartbeat thread renews its leases and learns when a generation
ends, so a range of a finished generation stops before its next simulation.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import socket
import threading
import time
import uuid

import cloudpickle

from .. import config
from .base import Broker

logger = logging.getLogger("dask_abc.worker")


class BrokerWorker:
    """Evaluate ranges claimed from ``broker`` until the runtime ends, a stop, or
    :meth:`interrupt`.

    Parameters
    ----------
    broker : Broker
        The coordinator handle.
    runtime : float
        Seconds after which the worker takes no new range; it finishes the one
        it holds and exits.
    name : str, optional
        Unique worker name; default host, PID and a random suffix.

    Examples
    --------
    >>> from dask_abc.broker import LocalBroker
    >>> worker = BrokerWorker(LocalBroker(), runtime=0)
    >>> worker.run()  # runtime over at once: nothing evaluated
    0
    """

    def __init__(self, broker: Broker, runtime: float = 7200.0, name: str | None = None):
        self.broker = broker
        self.runtime = float(runtime)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.heartbeat_seconds = float(config.get("broker.heartbeat-seconds"))
        self.poll_seconds = float(config.get("broker.poll-seconds"))
        self._current: dict = {"token": None, "t": None, "stop": False}
        self._interrupted = threading.Event()
        self._stopped = threading.Event()
        self.ranges_evaluated = 0

    def interrupt(self) -> None:
        """Stop now: the range in hand is abandoned and given back (Ctrl-C)."""
        self._interrupted.set()

    def _beat(self) -> None:
        while not self._stopped.wait(self.heartbeat_seconds):
            try:
                self._current = self.broker.heartbeat(self.name)
            except Exception as error:  # the coordinator may be restarting: keep trying
                logger.warning("heartbeat failed: %r", error)

    def run(self) -> int:
        """Work until done; the number of ranges evaluated."""
        deadline = time.monotonic() + self.runtime
        logger.info("Start worker. Max run time %.1fs, PID=%d", self.runtime, os.getpid())
        self.broker.register(self.name, {"host": socket.gethostname(), "pid": os.getpid()})
        beat = threading.Thread(target=self._beat, name="dask-abc-heartbeat", daemon=True)
        beat.start()
        try:
            self._work(deadline)
        finally:
            self._stopped.set()
            beat.join()
            self.broker.unregister(self.name)
        logger.info("Worker %s exits after %d ranges", self.name, self.ranges_evaluated)
        return self.ranges_evaluated

    def _work(self, deadline: float) -> None:
        token = spec = None
        stop_seen_in = "none"  # the generation running when a stop was first seen
        tally = Tally()
        idle = self.poll_seconds  # grows while there is nothing to do
        while not self._interrupted.is_set() and time.monotonic() < deadline:
            current = self._current = self.broker.heartbeat(self.name)
            if current["stop"]:
                if stop_seen_in == "none":
                    stop_seen_in = current["token"]
                if current["token"] is None or current["token"] != stop_seen_in:
                    logger.info("stop requested: exiting at the end of the generation")
                    break
            if current["token"] is None:
                tally.log_and_reset()
                idle = self._idle(idle)
                continue
            if current["token"] != token:
                data = self.broker.spec(current["token"])
                if data is None:  # the generation ended meanwhile
                    continue
                tally.log_and_reset()
                token, tally.t = current["token"], current["t"]
                try:
                    spec = cloudpickle.loads(data)
                except Exception as error:  # e.g. the model's module is not importable here
                    spec = None
                    self._fail(token, SpecLoadError(
                        f"worker {self.name} cannot load generation {tally.t}: {error!r}; "
                        "the model's module must be importable by the worker (PYTHONPATH), "
                        "or the model defined in the master's script"))
            if spec is None:  # this generation failed here: wait for the next one
                idle = self._idle(idle)
                continue
            claim = self.broker.claim(self.name, token)
            while claim is not None:
                idle = self.poll_seconds
                start, count = claim
                try:
                    result = spec.evaluate(start, count,
                                           stop=functools.partial(self._abandon, token))
                except Exception as error:  # the model failed: the master raises it
                    self._fail(token, error)
                    spec = None
                    break
                if result is None:  # the generation ended, or Ctrl-C
                    if self._interrupted.is_set():
                        self.broker.give_back(self.name, token, start, count)
                    break
                data = pickle.dumps(result, protocol=5)
                tally.add(count, result.n_accepted)
                self.ranges_evaluated += 1
                if self._interrupted.is_set() or time.monotonic() >= deadline:
                    self.broker.push(self.name, token, start, count, result.n_accepted, data)
                    break
                claim = self.broker.push_and_claim(self.name, token, start, count,
                                                   result.n_accepted, data)
            idle = self._idle(idle)
        tally.log_and_reset()

    def _idle(self, seconds: float) -> float:
        """Wait (interruptibly), and return the next, longer, wait."""
        self._interrupted.wait(seconds)
        return min(2 * seconds, float(config.get("broker.max-poll-seconds")))

    def _fail(self, token: str, error: Exception) -> None:
        logger.error("%s", error)
        self.broker.report_failure(self.name, token, pickle.dumps(WorkerFailure(self.name, error)))

    def _abandon(self, token: str) -> bool:
        return self._interrupted.is_set() or self._current["token"] != token


class SpecLoadError(RuntimeError):
    """A worker could not unpickle a generation's spec."""


class WorkerFailure:
    """An error on a standalone worker, delivered to the master like a result."""

    def __init__(self, worker: str, error: Exception):
        self.worker = worker
        self.error = error


class Tally:
    """What a worker did in one generation, logged when it moves on."""

    def __init__(self):
        self.t = None
        self.reset()

    def reset(self) -> None:
        self.ranges = self.evaluations = self.accepted = 0
        self.started = time.monotonic()

    def add(self, evaluations: int, accepted: int) -> None:
        self.ranges += 1
        self.evaluations += evaluations
        self.accepted += accepted

    def log_and_reset(self) -> None:
        if self.ranges:
            logger.info("generation %s: %d ranges, %d evaluations, %d accepted in %.1f s",
                        self.t, self.ranges, self.evaluations, self.accepted,
                        time.monotonic() - self.started)
        self.reset()
