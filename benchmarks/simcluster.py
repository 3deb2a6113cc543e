"""Simulated big clusters on one machine, for ``scale.py``: processes, models, probes.

A *slot* is one thread that can run one simulation. A simulated cluster is a
few processes with many threads each, all on 127.0.0.1, running a model that
sleeps (sleep releases the GIL), so that only the framework limits throughput.

This module is imported by the benchmark (with either interpreter: dask_abc's
or pyABC's virtualenv), by the Dask scheduler (the task-rate probe) and by every
worker (the model is pickled by reference), so it needs only the standard
library, numpy and, inside functions, distributed.

- :class:`Processes` starts processes, each in a session of its own, and stops
  them and everything they started: SIGTERM, a grace period, SIGKILL, wait.
- :func:`start_dask_cluster`, :func:`start_redis`, :func:`start_abc_workers`.
- :class:`SleepModel`: ``y = theta + N(0, 1)``, then a sleep of fixed or
  log-normal length; logs every simulation's start and end, per process.
- :func:`install_task_probe` / :func:`task_probe_times`: completion times of
  ABC tasks at the scheduler.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

# -- processes -------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: a session of its own (so that its whole process group
    can be stopped, grandchildren included), and SIGKILL when the benchmark dies."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Processes:
    """The processes of one simulated cluster; :meth:`stop` ends all of them.

    Each process runs in a session of its own, so that stopping its process group
    also stops what it started (Dask nannies' workers, ``dask-abc-worker
    --processes``' children). The group ids are appended to ``groups_file``, if
    given, so that whoever started this benchmark can kill what is left if the
    benchmark itself is killed.

    Parameters
    ----------
    logdir : path
        Every process's stdout and stderr go to ``logdir/<name>.log``.
    env : dict
        The processes' environment.
    groups_file : path, optional
    """

    def __init__(self, logdir, env: dict, groups_file=None):
        self.logdir, self.env = Path(logdir), env
        self.groups_file = groups_file
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start ``cmd`` (with ``env`` added to the processes' environment)."""
        log = open(self.logdir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env={**self.env, **(env or {})},
                                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.started.append((name, proc))
        if self.groups_file:
            with open(self.groups_file, "a") as f:
                f.write(f"{proc.pid}\n")
        return proc

    def check_alive(self) -> None:
        """Raise, with the end of its log, if a process has exited."""
        for name, proc in self.started:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n"
                                   + self.log_tail(name))

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds of each live process and its descendants."""
        import psutil

        out = {}
        for name, proc in self.started:
            try:
                p = psutil.Process(proc.pid)
                total = 0.0
                for q in [p, *p.children(recursive=True)]:
                    times = q.cpu_times()
                    total += times.user + times.system
                out[name] = total
            except psutil.Error:
                pass
        return out

    def stop(self, grace: float = 5.0) -> None:
        """Last started first (workers before their scheduler or server): SIGTERM to
        the process group, SIGKILL to the group after ``grace`` seconds or once its
        leader has exited (no-nanny workers may ignore SIGTERM once the scheduler is
        gone), wait; then reap the orphans adopted by :func:`adopt_orphans`."""
        while self.started:
            _, proc = self.started.pop()
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _reap_orphans()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def adopt_orphans() -> None:
    """Make this process the subreaper of its descendants (Linux): a grandchild whose
    parent dies (a ``dask-abc-worker --processes`` child) is reparented here, so that
    :meth:`Processes.stop` can wait for it."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap_orphans(timeout: float = 10.0) -> None:
    """Wait for every remaining child of this process (adopted orphans, all of them in
    groups that have been sent SIGKILL), for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_groups(groups_file) -> list[int]:
    """SIGKILL every process group listed in ``groups_file`` that still exists (what a
    killed benchmark case left behind); the groups killed."""
    killed = []
    path = Path(groups_file)
    if not path.exists():
        return killed
    for line in path.read_text().split():
        pgid = int(line)
        try:
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def _wait_for(check, timeout: float, what: str, procs: Processes | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if procs is not None:
            procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.1)


def start_dask_cluster(procs: Processes, python: str, processes: int, threads: int,
                       nanny: bool = False, timeout: float = 60) -> str:
    """A scheduler in its own process and ``processes`` workers of ``threads`` threads,
    all on 127.0.0.1, started with interpreter ``python``; the scheduler's address once
    it listens (the caller waits for the workers).

    The workers' statistical profiler is off (``DASK_DISTRIBUTED__WORKER__PROFILE__
    ENABLED``), for both libraries alike: it samples every thread of a worker every
    10 ms, which a real worker process with a thread or a few pays little for and a
    simulated one with hundreds of threads pays in full, on the machine's few cores.
    """
    import json

    port = free_port()
    scheduler_file = procs.logdir / "scheduler.json"
    procs.start("scheduler", [python, "-m", "distributed.cli.dask_scheduler",
                              "--host", "127.0.0.1", "--port", str(port),
                              "--dashboard-address", "127.0.0.1:0",
                              "--scheduler-file", str(scheduler_file)])

    def listening() -> str | None:
        try:
            return json.loads(scheduler_file.read_text()).get("address")
        except (OSError, ValueError):  # not written yet, or half written
            return None

    address = _wait_for(listening, timeout, "the Dask scheduler", procs)
    for i in range(processes):
        procs.start(f"worker-{i}", [python, "-m", "distributed.cli.dask_worker", address,
                                    "--nthreads", str(threads), "--host", "127.0.0.1",
                                    "--nanny" if nanny else "--no-nanny",
                                    "--memory-limit", "0", "--name", f"w{i}",
                                    "--dashboard-address", "127.0.0.1:0"],
                    env={"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"})
    return address


def start_redis(procs: Processes, timeout: float = 30) -> tuple[str, int]:
    """A ``redis-server`` without persistence on a free port of 127.0.0.1."""
    port = free_port()
    procs.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(procs.logdir)])

    def pong() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    _wait_for(pong, timeout, "redis-server", procs)
    return "127.0.0.1", port


def start_abc_workers(procs: Processes, python: str, connection: list[str], processes: int,
                      threads: int) -> None:
    """``dask-abc-worker --processes P --threads T`` (``--threads`` only when T > 1) as
    ``python -m dask_abc.broker``, so that the measured working tree runs."""
    cmd = [python, "-m", "dask_abc.broker", *connection, "--processes", str(processes),
           "--runtime", "6h"]
    if threads > 1:
        cmd += ["--threads", str(threads)]
    procs.start("dask-abc-worker", cmd)


# -- the model -------------------------------------------------------------------------

_LOGS: dict[tuple[str, int], object] = {}  # (directory, pid) -> open file
_LOGS_LOCK = threading.Lock()


def _log(directory: str, line: str) -> None:
    key = (directory, os.getpid())  # a forked child opens its own file
    with _LOGS_LOCK:
        f = _LOGS.get(key)
        if f is None:
            f = _LOGS[key] = open(os.path.join(directory, f"{os.getpid()}.log"), "a",
                                  buffering=1)
        f.write(line)


class SleepModel:
    """``y = theta + N(0, 1)``, then a sleep of ``seconds`` (fixed) or, with
    ``lognormal_sigma``, of a log-normal time with mean ``seconds``.

    ``y`` is drawn first, then the time (from the same generator), so the output does
    not depend on the time model. With an ``rng`` (dask_abc) it draws from it; without
    (pyABC) from numpy's global state. Sleeping releases the GIL. ``sleep=False`` draws
    the same numbers and does not sleep (the reference run).

    With a ``log_dir`` every simulation appends ``tag start end`` (``time.time()``) to
    ``log_dir/<pid>.log``, one file per process; ``tag`` is an attribute the benchmark
    sets before each generation is pickled for the workers.
    """

    def __init__(self, seconds: float, lognormal_sigma: float | None = None,
                 log_dir: str | None = None, sleep: bool = True):
        self.seconds, self.lognormal_sigma = float(seconds), lognormal_sigma
        self.log_dir, self.sleep = log_dir, sleep
        self.tag = "check"  # calls before the first generation: the pre-flight check
        self.__name__ = "sleep_model"

    def duration(self, rng) -> float:
        if self.lognormal_sigma is None:
            return self.seconds
        sigma = self.lognormal_sigma
        return float(rng.lognormal(math.log(self.seconds) - sigma**2 / 2, sigma))

    def __call__(self, parameter, rng=None):
        start = time.time()
        draw = np.random if rng is None else rng
        y = parameter["theta"] + draw.normal()
        seconds = self.duration(draw)
        if self.sleep and seconds > 0:
            time.sleep(seconds)
        if self.log_dir is not None:
            _log(self.log_dir, f"{self.tag} {start!r} {time.time()!r}\n")
        return {"y": y}

    def without_sleep(self) -> SleepModel:
        """The same model, same draws, no sleep and no log (the reference)."""
        return SleepModel(self.seconds, self.lognormal_sigma, None, sleep=False)


def read_model_log(log_dir) -> dict[str, np.ndarray]:
    """Every logged simulation: ``{"tag": str array, "start": ..., "end": ...}``."""
    tags, starts, ends = [], [], []
    for path in Path(log_dir).glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:  # a line cut short by a killed process is skipped
                tags.append(parts[0])
                starts.append(float(parts[1]))
                ends.append(float(parts[2]))
    return {"tag": np.array(tags, dtype=str), "start": np.array(starts),
            "end": np.array(ends)}


def peak_concurrency(starts: np.ndarray, ends: np.ndarray) -> int:
    """The most simulations running at the same time."""
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((steps, times))  # an end before a start at the same instant
    return int(np.cumsum(steps[order]).max()) if len(order) else 0


def last_full(starts: np.ndarray, ends: np.ndarray, since: float, until: float,
              level: float) -> float | None:
    """The last instant in ``[since, until]`` at which at least ``level`` simulations
    ran (None if never): after it, the slots run out of work, the generation's tail.

    Examples
    --------
    >>> last_full(np.array([0.0, 0.0, 1.0]), np.array([2.0, 3.0, 4.0]), 0, 5, 2)
    3.0
    """
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((steps, times))
    times, running = times[order], np.cumsum(steps[order])
    # running[k] holds from times[k] to times[k + 1]
    after = np.append(times[1:], np.inf)
    full = (running >= level) & (after > since) & (times < until)
    if not full.any():
        return None
    return float(min(after[full].max(), until))


def busy_seconds(starts: np.ndarray, ends: np.ndarray, since: float, until: float) -> float:
    """Slot-seconds spent in simulations within ``[since, until]``."""
    return float(np.clip(np.minimum(ends, until) - np.maximum(starts, since), 0, None).sum())


# -- the scheduler's task rate -----------------------------------------------------------

#: key prefixes of ABC tasks: dask_abc's ranges and pyABC's jobs
TASK_PREFIXES = ("abc-range-", "_global_full_submit_function")
_PROBE = "abc-scale-task-probe"


def _task_probe_class():
    from distributed.diagnostics.plugin import SchedulerPlugin

    class TaskProbe(SchedulerPlugin):
        """Timestamps (``time.time()``) of ABC tasks that completed (reached memory)."""

        name = _PROBE

        def __init__(self):
            self.times: list[float] = []

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "memory" and str(key).startswith(TASK_PREFIXES):
                self.times.append(time.time())

    return TaskProbe


def install_task_probe(dask_scheduler=None) -> None:
    """Run on the scheduler (``client.run_on_scheduler``): start timestamping."""
    if _PROBE not in dask_scheduler.plugins:
        dask_scheduler.add_plugin(_task_probe_class()())


def task_probe_times(dask_scheduler=None) -> list[float]:
    """Run on the scheduler: the completion times so far."""
    return list(dask_scheduler.plugins[_PROBE].times)


if __name__ == "__main__":  # pragma: no cover - a smoke test of the harness
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, Processes(tmp, dict(os.environ)) as procs:
        print(start_dask_cluster(procs, sys.executable, 2, 4))
