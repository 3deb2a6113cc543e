"""``dask-abc-worker`` and ``dask-abc-manager``: standalone workers and their control.

Both reach the coordinator either through a Dask scheduler (``--scheduler``
or ``--scheduler-file``; the coordinator is an actor on that cluster) or a
Redis server (``--redis-host``, ``--redis-port``, ``--redis-password``;
pyABC's ``--host``, ``--port`` and ``--password`` work too).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading

from dask.utils import parse_timedelta

from .base import Broker
from .errors import BrokerError, BrokerUnreachable, CoordinatorNotFound

logger = logging.getLogger("dask_abc.worker")


def _connection_options(parser: argparse.ArgumentParser) -> None:
    dask = parser.add_argument_group("Dask Actor backend")
    dask.add_argument("--scheduler", metavar="ADDRESS", help="the Dask scheduler's address")
    dask.add_argument("--scheduler-file", metavar="FILE", help="a Dask scheduler file")
    dask.add_argument("--tls-ca-file", help="TLS: the CA certificate")
    dask.add_argument("--tls-cert", help="TLS: this client's certificate")
    dask.add_argument("--tls-key", help="TLS: this client's private key")
    redis = parser.add_argument_group("Redis backend")
    redis.add_argument("--redis-host", "--host", dest="redis_host", help="the Redis server")
    redis.add_argument("--redis-port", "--port", dest="redis_port", type=int, default=6379)
    redis.add_argument("--redis-password", "--password", dest="redis_password", default=None)
    parser.add_argument("--name", default=None,
                        help="the coordinator's name (default: abc.broker.name)")


def connect(options: argparse.Namespace, wait: float = 0.0) -> Broker:
    """The broker the options name (waiting up to ``wait`` s for an Actor coordinator)."""
    if options.redis_host:
        from .redis_backend import RedisBroker

        return RedisBroker(options.redis_host, options.redis_port, options.redis_password,
                           prefix=options.name)
    if not (options.scheduler or options.scheduler_file):
        raise BrokerError("give --scheduler ADDRESS or --scheduler-file FILE (Dask Actor "
                          "coordinator), or --redis-host HOST (Redis)")
    from distributed import Client

    security = None
    if options.tls_ca_file or options.tls_cert:
        from distributed.security import Security

        security = Security(tls_ca_file=options.tls_ca_file, tls_client_cert=options.tls_cert,
                            tls_client_key=options.tls_key, require_encryption=True)
    try:
        client = Client(options.scheduler, scheduler_file=options.scheduler_file,
                        security=security, set_as_default=False,
                        direct_to_workers=True)  # actor calls straight to its worker
    except OSError as error:
        where = options.scheduler or options.scheduler_file
        raise BrokerUnreachable(f"cannot reach the Dask scheduler {where}: {error}") from error
    from .actor import ActorBroker

    try:
        return ActorBroker(client, options.name, create=False, wait=wait, owns_client=True)
    except BaseException:
        client.close()
        raise


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name in ("dask_abc.worker",):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.INFO)


#: seconds beyond the exit grace that a worker waits for its goodbye to the coordinator
_EXIT_MARGIN_SECONDS = 4.0


def _serve(options: argparse.Namespace) -> int:
    """One worker process: connect, work until the runtime ends or a signal, exit.

    The worker runs in a thread so that SIGTERM and Ctrl-C end the process within
    a few seconds whatever the coordinator does (gone, restarting, a call that
    hangs): the ranges in hand go back where it answers, else their leases expire.
    """
    from .worker import BrokerWorker

    _setup_logging()
    runtime = parse_timedelta(options.runtime, default="s")
    try:
        broker = connect(options, wait=runtime)
    except BrokerError as error:
        logger.error("%s", error)
        return 1
    worker = BrokerWorker(broker, runtime=runtime, threads=options.threads,
                          catch=options.catch)
    exit_code = [1]  # unless run() returns

    def work() -> None:
        try:
            worker.run()
            exit_code[0] = 0
        except BrokerError as error:
            logger.error("%s", error)
        except Exception:
            logger.exception("the worker failed")
        finally:
            broker.close()

    signalled = threading.Event()

    def on_signal(*_) -> None:
        worker.interrupt()
        signalled.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    thread = threading.Thread(target=work, name="dask-abc-worker", daemon=True)
    thread.start()
    while thread.is_alive() and not signalled.is_set():
        thread.join(0.2)  # the main thread runs the signal handlers between joins
    thread.join(worker.exit_grace_seconds + _EXIT_MARGIN_SECONDS)
    if thread.is_alive():
        logger.warning("exiting without a goodbye: the coordinator does not answer; the "
                       "ranges in hand go to others when their leases expire")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # threads blocked in calls to the coordinator cannot be joined
    return exit_code[0]


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the option)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return value


def _boolean(text: str) -> bool:
    """An argparse type: true/false, yes/no, 1/0 (pyABC's ``--catch False``)."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False,
             "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"not true or false: {text!r}")
    return value


def worker_main(argv: list[str] | None = None) -> int:
    """``dask-abc-worker``: evaluate ranges for whichever master runs, for ``--runtime``."""
    parser = argparse.ArgumentParser(
        prog="dask-abc-worker", description="A standalone dask-abc worker: claims index "
        "ranges of the running ABC-SMC generation and evaluates them.")
    _connection_options(parser)
    parser.add_argument("--runtime", default="2h",
                        help="stop taking ranges after this long, e.g. 2h, 3600s, 2d, 30m "
                        "(default 2h)")
    parser.add_argument("--processes", type=_positive, default=1,
                        help="worker processes, each with its own connection (default 1)")
    parser.add_argument(
        "--threads", type=_positive, default=1,
        help="simulations run at once in each process (default 1), for models that "
        "release the GIL (external programs, C extensions); P processes x N threads "
        "give P*N slots. Models must then draw from their `rng` argument: numpy's "
        "global random state (np.random.*) is shared by the threads, so such a model "
        "is not reproducible (the worker warns, naming it)")
    parser.add_argument(
        "--catch", type=_boolean, nargs="?", const=True, default=None, metavar="BOOL",
        help="pyABC's flag (whether failing simulations are caught), accepted for "
        "compatibility: here the run decides, by ABCSMC(model_errors=...): 'reject' "
        "rejects failing simulations (like --catch true), 'raise' stops the run with the "
        "error (like --catch false), so that every worker treats them alike; the worker "
        "warns when the flag disagrees with the run")
    options = parser.parse_args(argv)
    if options.processes <= 1:
        return _serve(options)
    context = mp.get_context("spawn")
    children = [context.Process(target=_serve, args=(options,), name=f"dask-abc-worker-{i}")
                for i in range(options.processes)]
    for child in children:
        child.start()

    def forward(*_):
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each gives its range back and exits

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the children get Ctrl-C themselves
    for child in children:
        child.join()
    return max(abs(child.exitcode or 0) for child in children)


def _info_line(status: dict | None) -> str:
    """pyABC's counter line, then a summary of the workers (:mod:`.info`)."""
    from .info import info_text

    return info_text(status)


def manager_main(argv: list[str] | None = None) -> int:
    """``dask-abc-manager info|stop|reset-workers``."""
    parser = argparse.ArgumentParser(
        prog="dask-abc-manager", description="Monitor and control standalone dask-abc workers.")
    parser.add_argument("command", choices=("info", "stop", "reset-workers"))
    _connection_options(parser)
    options = parser.parse_args(argv)
    try:
        broker = connect(options)
    except BrokerError as error:
        if options.command == "info" and isinstance(error, CoordinatorNotFound):
            print(_info_line(None))  # no master has run on this cluster yet
            return 0
        print(f"dask-abc-manager: {error}", file=sys.stderr)
        return 1
    try:
        if options.command == "info":
            print(_info_line(broker.status()))
        elif options.command == "stop":
            broker.request_stop()
            print("Workers will stop at the end of the current generation")
        else:
            print(f"Reset {broker.reset_workers()} workers")
    except BrokerError as error:
        print(f"dask-abc-manager: {error}", file=sys.stderr)
        return 1
    finally:
        broker.close()
    return 0

