"""A standalone worker process: claims index ranges from a broker and evaluates them.

This is the loop behind ``dask-abc-worker``. A process has one broker
connection and registers once, with its number of *slots* (evaluation
threads); the coordinator, and through it the master, count slots, not
processes. The threads of a process share the connection, and the number of
calls it makes does not grow with its threads:

- the control loop (the thread that calls :meth:`BrokerWorker.run`) keeps one
  standing :meth:`~dask_abc.broker.Broker.watch` call, which is the process's
  heartbeat and returns as soon as a generation starts or ends or a stop is
  requested; it unpickles each generation's spec once for all threads;
- ``threads`` evaluation threads evaluate ranges and hand their results over;
- a pusher delivers all the results handed over since its last call and
  claims ranges for all idle threads, in one
  :meth:`~dask_abc.broker.Broker.push_many` call;
- a claimer, while threads are idle and nothing is to be pushed, waits at the
  coordinator for ranges to be queued (:meth:`~dask_abc.broker.Broker.claim_many`).

A range of a generation that ended stops before its next simulation.

The coordinator may be lost and replaced (its host died, Redis restarted): the
control loop looks it up again for up to ``abc.broker.reconnect-seconds``,
meanwhile the pusher keeps the results it could not deliver and delivers them
to the new coordinator, where the master has planted the same generation again.
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
from collections import deque
from dataclasses import dataclass, field

import cloudpickle

from .. import config
from ..reproducibility import warn_shared_global_state
from .base import Broker
from .errors import BrokerUnreachable, CoordinatorNotFound, SpecLoadError

logger = logging.getLogger("dask_abc.worker")


class Tally:
    """What a worker did in one generation, logged when it moves on."""

    def __init__(self):
        self.t = None
        self.reset()

    def reset(self) -> None:
        self.ranges = self.evaluations = self.accepted = self.failed = 0
        self.started = time.monotonic()

    def add(self, evaluations: int, accepted: int, failed: int) -> None:
        self.ranges += 1
        self.evaluations += evaluations
        self.accepted += accepted
        self.failed += failed

    def log_and_reset(self) -> None:
        if self.ranges:
            logger.info("generation %s: %d ranges, %d evaluations (%d failed), %d accepted in "
                        "%.1f s", self.t, self.ranges, self.evaluations, self.failed,
                        self.accepted, time.monotonic() - self.started)
        self.reset()


@dataclass(eq=False)
class _Generation:
    """A generation as this process works on it."""

    token: str
    t: int | None
    spec: object | None  # the GenerationSpec; None if it could not be loaded here
    failed: bool = False  # an error was reported: no more ranges of it here
    tally: Tally = field(default_factory=Tally)

    @property
    def usable(self) -> bool:
        return self.spec is not None and not self.failed


class BrokerWorker:
    """Evaluate ranges claimed from ``broker`` in ``threads`` threads until the runtime
    ends, a stop, or :meth:`interrupt`.

    Parameters
    ----------
    broker : Broker
        The coordinator handle, shared by the threads (one connection per process).
    runtime : float
        Seconds after which the worker takes no new range; it finishes the ranges it
        evaluates and exits.
    name : str, optional
        Unique worker name; default host, PID and a random suffix.
    threads : int
        Simulations run at once (the process's slots). More than one pays off for
        models that release the GIL (external programs, C extensions, sleeps); a model
        that draws from numpy's global random state is then not reproducible, and the
        worker warns once per such model (give the model an ``rng`` argument).
    catch : bool, optional
        pyABC's ``--catch``: whether failing simulations are caught. The run decides
        (``ABCSMC(model_errors=...)``: ``"reject"`` catches them, ``"raise"`` stops the
        run), so that every worker treats them alike; the worker warns once when this
        disagrees with the run. None: no opinion.

    Examples
    --------
    >>> from dask_abc.broker import LocalBroker
    >>> worker = BrokerWorker(LocalBroker(), runtime=0, threads=4)
    >>> worker.run()  # runtime over at once: nothing evaluated
    0
    """

    def __init__(self, broker: Broker, runtime: float = 7200.0, name: str | None = None,
                 threads: int = 1, catch: bool | None = None):
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads!r}")
        self.broker = broker
        self.runtime = float(runtime)
        self.threads = int(threads)
        self.catch = catch
        self._catch_warned: set[str] = set()  # model_errors settings warned about
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "threads": self.threads}
        self.heartbeat_seconds = float(config.get("broker.heartbeat-seconds"))
        self.exit_grace_seconds = float(config.get("broker.exit-grace-seconds"))
        self.reconnect_seconds = float(config.get("broker.reconnect-seconds"))
        self._current: dict = {"token": None, "t": None, "stop": False, "registered": True}
        self._interrupted = threading.Event()
        # one lock, two conditions: the few coordinating threads wait on _lock, the
        # evaluation threads on _ready, which wakes exactly one per new range (waking
        # hundreds of threads for every change costs more CPU than the simulations)
        self._lock = threading.Condition(threading.RLock())
        self._ready = threading.Condition(self._lock._lock)
        # guarded by _lock:
        self._generation: _Generation | None = None  # what the threads work on
        self._work: deque[tuple[_Generation, int, int]] = deque()  # claimed, not started
        # to push: (generation, start, count, accepted, failed, result)
        self._outbox: list[tuple[_Generation, int, int, int, int, bytes]] = []
        self._idle = 0  # evaluation threads waiting for a range
        self._busy = 0  # evaluation threads with a range in hand
        self._requested = 0  # ranges asked for by calls in flight
        self._pushing = False  # a push_many call is in flight
        self._claiming = True  # False once the runtime is over or on interrupt
        self._closing = False  # the threads exit
        self._error: BaseException | None = None  # a broker error in a thread ends run()
        self._connection = 0  # counts the times the coordinator was found again
        self._global_rng: dict[tuple, tuple[str, ...]] = {}  # (seed, model names) -> names
        self.ranges_evaluated = 0

    def interrupt(self) -> None:
        """Stop now: ranges in hand are abandoned and given back (SIGTERM, Ctrl-C).

        Safe in a signal handler: it only sets a flag, which every thread checks.
        """
        self._interrupted.set()

    # -- the control loop --------------------------------------------------------

    def run(self) -> int:
        """Work until done; the number of ranges evaluated."""
        deadline = time.monotonic() + self.runtime
        logger.info("Start worker. Max run time %.1fs, PID=%d, %d thread%s", self.runtime,
                    os.getpid(), self.threads, "" if self.threads == 1 else "s")
        self.broker.register(self.name, self.info)
        threads = [threading.Thread(target=self._evaluate_ranges, daemon=True,
                                    name=f"dask-abc-evaluate-{i}")
                   for i in range(self.threads)]
        threads.append(threading.Thread(target=self._push_results, daemon=True,
                                        name="dask-abc-push"))
        threads.append(threading.Thread(target=self._claim_ranges, daemon=True,
                                        name="dask-abc-claim"))
        for thread in threads:
            thread.start()
        try:
            self._control(deadline)
        finally:
            self._shut_down(threads)
        logger.info("Worker %s exits after %d ranges", self.name, self.ranges_evaluated)
        return self.ranges_evaluated

    def _control(self, deadline: float) -> None:
        stop_seen_in = "none"  # the generation running when a stop was first seen
        current = self._current
        while not self._interrupted.is_set():
            if self._error is not None:
                raise self._error
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                # the heartbeat, which returns at once when the generation or stop flag
                # changes
                current = self._current = self.broker.watch(
                    self.name, current["token"], current["stop"],
                    min(self.heartbeat_seconds, left))
                if not current.get("registered", True):  # forgotten (reset-workers, a
                    self.broker.register(self.name, self.info)  # long pause, a new one)
            except BrokerUnreachable as error:
                self._reconnect(error)
                continue
            if current["stop"]:
                if stop_seen_in == "none":
                    stop_seen_in = current["token"]
                if current["token"] is None or current["token"] != stop_seen_in:
                    logger.info("stop requested: exiting at the end of the generation")
                    break
            generation = self._generation
            if current["token"] != (generation.token if generation else None):
                self._switch_to(current["token"], current["t"])

    def _reconnect(self, error: BrokerUnreachable) -> None:
        """Look the coordinator up again until it answers, for up to
        ``reconnect_seconds`` (then ``error`` ends the run) or an interrupt."""
        logger.warning("the coordinator is unreachable (%s); looking for it for up to "
                       "%.0f s", error, self.reconnect_seconds)
        until = time.monotonic() + self.reconnect_seconds
        while not self._interrupted.is_set():
            try:
                self.broker.reconnect(wait=min(1.0, self.reconnect_seconds))
                self.broker.register(self.name, self.info)
            except (BrokerUnreachable, CoordinatorNotFound) as later:
                if time.monotonic() > until:
                    raise BrokerUnreachable(f"no coordinator for {self.reconnect_seconds:.0f}"
                                            f" s: {later}") from later
                self._interrupted.wait(0.5)
                continue
            logger.warning("the coordinator answers again")
            with self._lock:
                self._connection += 1
                self._lock.notify_all()
            return

    def _after_unreachable(self, connection: int) -> None:
        """Wait until the control loop has found the coordinator again (or a moment has
        passed: the failed call may have been the only one to fail), or the exit."""
        self._wait(lambda: self._connection != connection or self._closing,
                   until=time.monotonic() + 2 * self.heartbeat_seconds)

    def _switch_to(self, token: str | None, t: int | None) -> None:
        """Leave the current generation; load the spec of ``token`` (once per process)."""
        with self._lock:
            old, self._generation = self._generation, None
            self._work.clear()  # leases of a generation that is over need no giving back
        if old is not None:
            old.tally.log_and_reset()
        if token is None:
            return
        data = self.broker.spec(token)
        if data is None:  # it ended meanwhile: the next watch says so
            return
        generation = _Generation(token, t, None)
        generation.tally.t = t
        try:
            generation.spec = cloudpickle.loads(data)
        except Exception as error:  # e.g. the model's module is not importable here
            self._fail(generation, SpecLoadError(
                f"worker {self.name} cannot load generation {t}: {error!r}; "
                "the model's module must be importable by the worker (PYTHONPATH), "
                "or the model defined in the master's script"))
        if generation.usable:
            self._check_catch(generation.spec.model_errors)
        if generation.usable and self.threads > 1:
            self._warn_global_state(generation)
        with self._lock:
            self._generation = generation
            self._lock.notify_all()

    def _check_catch(self, model_errors: str) -> None:
        """Warn once per setting if ``--catch`` disagrees with the run's ``model_errors``."""
        if self.catch is None or self.catch == (model_errors == "reject") \
                or model_errors in self._catch_warned:
            return
        self._catch_warned.add(model_errors)
        logger.warning("--catch %s, but the run has model_errors=%r, which decides: failing "
                       "simulations %s", self.catch, model_errors,
                       "are rejected" if model_errors == "reject" else "stop the run")

    def _warn_global_state(self, generation: _Generation) -> None:
        """Warn once per model that draws from numpy's global random state, which this
        process's threads share. Models unknown to the master's pre-flight check run
        once here, while no thread simulates (once per run and process)."""
        spec = generation.spec
        key = (spec.seed, tuple(model.name for model in spec.models))
        if key not in self._global_rng:
            if spec.global_rng_models is None:
                # the previous generation's threads stop before their next simulation
                if not self._wait(lambda: self._busy == 0):
                    return
            try:
                self._global_rng[key] = spec.models_drawing_from_global_state()
            except Exception as error:  # the model fails here: the master raises it
                self._fail(generation, error)
                return
        warn_shared_global_state(self._global_rng[key], self.threads,
                                 f"dask-abc-worker process {self.name}")

    def _wait(self, predicate, until: float | None = None) -> bool:
        """Wait for ``predicate`` (under the lock) until ``until`` (monotonic) or an
        interrupt; whether it holds. Polls the interrupt flag, which a signal handler
        sets without taking the lock."""
        with self._lock:
            while not predicate():
                if self._interrupted.is_set():
                    return False
                if until is not None and time.monotonic() >= until:
                    return False
                self._lock.wait(0.05)
            return True

    def _shut_down(self, threads: list[threading.Thread]) -> None:
        """Finish and push the ranges in hand (runtime over, stop) or abandon them
        (interrupt, an error), give back every range still leased, end the threads."""
        with self._lock:
            self._claiming = False
            self._lock.notify_all()
        self._wait(lambda: (self._busy == 0 and not self._outbox and not self._pushing)
                   or self._error is not None)
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            self._ready.notify_all()
        # simulations in progress stop before their next one; results that complete in
        # the grace period are still pushed
        until = time.monotonic() + self.exit_grace_seconds
        with self._lock:
            while (self._busy or self._outbox or self._pushing) and time.monotonic() < until:
                self._lock.wait(0.05)
        *evaluators, pusher, claimer = threads
        claimer.join(self.heartbeat_seconds + self.exit_grace_seconds)
        pusher.join(self.exit_grace_seconds)
        try:
            self.broker.unregister(self.name)  # queues again every range still leased
        except Exception as error:  # the coordinator is gone: the leases expire there
            logger.warning("could not unregister from the coordinator: %r", error)
        for thread in evaluators:
            thread.join(max(until - time.monotonic(), 0.0))
        if self._generation is not None:
            self._generation.tally.log_and_reset()

    # -- talking to the coordinator: pusher and claimer ------------------------------

    def _wanted(self, generation: _Generation | None) -> int:
        """Ranges to ask for now, for threads that have none (under the lock)."""
        if not (self._claiming and not self._closing and generation is not None
                and generation is self._generation and generation.usable):
            return 0
        return max(self._idle - len(self._work) - self._requested, 0)

    def _push_results(self) -> None:
        """Deliver finished ranges and claim for idle threads, many in one call."""
        while True:
            with self._lock:
                while not (self._outbox or self._closing):
                    self._lock.wait()
                if not self._outbox:
                    return
                generation = self._generation
                # results of a generation that is over are dropped by the coordinator;
                # the same generation may have a new _Generation (a coordinator replaced)
                token = generation.token if generation is not None else None
                items = [item for item in self._outbox if item[0].token == token]
                self._outbox.clear()
                if not items:
                    continue
                want = self._wanted(generation)
                self._requested += want
                self._pushing = True
                connection = self._connection
            ranges = []
            try:
                ranges = self.broker.push_many(self.name, token, [i[1:] for i in items], want)
            except BrokerUnreachable as error:
                with self._lock:
                    keep = self._claiming  # else exiting: the leases expire at the master
                    if keep:  # for the coordinator found next
                        self._outbox[:0] = items
                if keep:
                    self._after_unreachable(connection)
                else:
                    logger.warning("%d results not delivered: %s", len(items), error)
            except Exception as error:
                self._record(error)
            finally:
                with self._lock:
                    self._requested -= want
                    self._pushing = False
                    self._lock.notify_all()
            self._hand_out(generation, ranges or [])

    def _claim_ranges(self) -> None:
        """Wait at the coordinator for ranges for idle threads (when there is nothing to
        push, which would claim too)."""
        while True:
            with self._lock:
                while not (self._closing or (self._wanted(self._generation)
                                             and not self._outbox and not self._pushing)):
                    self._lock.wait()  # whatever makes ranges wanted notifies _lock
                if self._closing:
                    return
                generation, want = self._generation, self._wanted(self._generation)
                self._requested += want
                connection = self._connection
            try:
                ranges = self.broker.claim_many(self.name, generation.token, want,
                                                timeout=self.heartbeat_seconds)
            except BrokerUnreachable:
                ranges = False
            except Exception as error:
                self._record(error)
                return
            finally:
                with self._lock:
                    self._requested -= want
                    self._lock.notify_all()
            if ranges is None:  # the generation is over: wait for the control loop to see it
                self._wait(functools.partial(self._moved_on, generation),
                           until=time.monotonic() + self.heartbeat_seconds)
                continue
            if ranges is False:
                self._after_unreachable(connection)
                continue
            self._hand_out(generation, ranges)

    def _moved_on(self, generation: _Generation) -> bool:
        return self._closing or self._generation is not generation

    def _hand_out(self, generation: _Generation, ranges: list[tuple[int, int]]) -> None:
        """Give claimed ranges to the evaluation threads, or back to the coordinator."""
        if not ranges:
            return
        with self._lock:
            current = generation is self._generation
            keep = current and self._claiming and not self._closing and generation.usable
            if keep:
                self._work.extend((generation, start, count) for start, count in ranges)
                self._ready.notify(len(ranges))
        # back, unless the generation is over or an interrupt unregisters (which does)
        if not keep and current and not self._interrupted.is_set():
            try:
                self.broker.give_back_many(self.name, generation.token, ranges)
            except BrokerUnreachable:  # the master plants its ranges on the next one
                pass
            except Exception as error:
                self._record(error)

    # -- the evaluation threads ---------------------------------------------------

    def _evaluate_ranges(self) -> None:
        with self._lock:
            self._idle += 1
            self._lock.notify_all()
        while True:
            with self._lock:
                # after the runtime, ranges claimed but not started are given back at exit
                while not (self._closing or (self._work and self._claiming)):
                    self._ready.wait()
                self._idle -= 1
                if self._closing:
                    return
                generation, start, count = self._work.popleft()
                self._busy += 1
            done = None
            try:
                done = self._evaluate(generation, start, count)
            except Exception as error:  # the coordinator failed us (reporting an error)
                self._record(error)
            finally:
                with self._lock:
                    if done is not None:
                        generation.tally.add(count, *done[:2])
                        self.ranges_evaluated += 1
                        self._outbox.append((generation, start, count, *done))
                    self._busy -= 1
                    self._idle += 1
                    self._lock.notify_all()

    def _evaluate(self, generation: _Generation, start: int,
                  count: int) -> tuple[int, int, bytes] | None:
        """Evaluate a range: its acceptances, failures and pickled result, or None if
        abandoned."""
        stop = functools.partial(self._abandon, generation)
        if stop():  # over, failed here (the master raises), or the exit gives it back
            return None
        try:
            result = generation.spec.evaluate(start, count, stop=stop)
        except Exception as error:  # the model failed: the master raises it
            self._fail(generation, error)
            return None
        if result is None:  # the generation ended, or an interrupt
            return None
        return result.n_accepted, result.n_failed, pickle.dumps(result, protocol=5)

    def _abandon(self, generation: _Generation) -> bool:
        return (self._interrupted.is_set() or generation.failed
                or self._current["token"] != generation.token)

    # -- errors ----------------------------------------------------------------------

    def _fail(self, generation: _Generation, error: Exception) -> None:
        """Report an error of this generation to the master, once per process."""
        with self._lock:
            if generation.failed:
                return
            generation.failed = True
        logger.error("%s", error)
        try:
            self.broker.report_failure(self.name, generation.token,
                                       pickle.dumps(WorkerFailure(self.name, error)))
        except BrokerUnreachable as unreachable:  # its ranges fail again for another
            logger.warning("could not report it: %s", unreachable)

    def _record(self, error: BaseException) -> None:
        """A thread could not reach the coordinator: :meth:`run` raises it."""
        with self._lock:
            if self._error is None and not self._closing:
                self._error = error
            self._lock.notify_all()


class WorkerFailure:
    """An error on a standalone worker, delivered to the master like a result."""

    def __init__(self, worker: str, error: Exception):
        self.worker = worker
        self.error = error
