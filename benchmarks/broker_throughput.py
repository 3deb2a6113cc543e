"""Coordinator throughput: ranges per second the Actor and Redis backends sustain.

Simulated worker processes deliver a small result and claim the next range, as
fast as they can, against one coordinator while the master drains the results.
Two ways, for each backend:

- *per range*: every thread delivers its own range and claims the next in one
  call (``push_and_claim``), one call per range;
- *batched*: as ``dask-abc-worker --threads`` does, one call per process
  delivers the ranges its threads finished and claims as many
  (``push_many``), here ``--batch`` ranges per call.

What a cluster asks of the coordinator: a worker process makes one standing
heartbeat call per ``h`` seconds whatever its threads, and the master queues
ranges of at least ``slots / abc.broker.max-task-rate`` seconds of work, so in
the bulk of a generation the ranges delivered per second stay at about
``max-task-rate`` (200) on any number of slots, and ``slots / d`` below that
(``d`` the range duration, at least ``target-task-seconds``). The report gives,
per backend, both ways' ranges and calls per second, and the largest number of
worker processes whose heartbeats the rest of its capacity serves.

Usage: ``python benchmarks/broker_throughput.py [--processes 4] [--threads 16]
[--batch 16] [--seconds 10]`` (needs ``redis-server`` on the PATH for Redis).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

RESULT = os.urandom(300)  # about the size of a small range's pickled BatchResult
TOKEN = "bench"


def connect(backend: str, address: str):
    if backend == "redis":
        from dask_abc.broker import RedisBroker

        host, port = address.split(":")
        return RedisBroker(host, int(port), prefix="bench")
    from distributed import Client

    from dask_abc.broker import ActorBroker

    client = Client(address, set_as_default=False, direct_to_workers=True)
    return ActorBroker(client, "bench", wait=30, owns_client=True)


def hammer(backend: str, address: str, threads: int, batch: int, seconds: float, out) -> None:
    """One process: ``threads`` threads cycling ``push_and_claim`` (``batch`` 1), or one
    thread cycling ``push_many`` of ``batch`` ranges; puts (ranges, calls)."""
    broker = connect(backend, address)
    ranges, calls = [0] * threads, [0] * threads
    stop = time.monotonic() + seconds

    def per_range(i: int) -> None:
        name = f"{os.getpid()}-{i}"
        broker.register(name, {})
        claim = broker.claim(name, TOKEN)
        while time.monotonic() < stop and claim is not None:
            claim = broker.push_and_claim(name, TOKEN, claim[0], claim[1], 1, RESULT)
            ranges[i] += 1
            calls[i] += 1

    def batched(i: int) -> None:
        name = f"{os.getpid()}"
        broker.register(name, {"threads": batch})
        held = broker.claim_many(name, TOKEN, batch)
        while time.monotonic() < stop and held:
            results = [(start, count, 1, 0, RESULT) for start, count in held]
            held = broker.push_many(name, TOKEN, results, batch)
            ranges[i] += len(results)
            calls[i] += 1

    pool = [threading.Thread(target=per_range if batch == 1 else batched, args=(i,))
            for i in range(threads if batch == 1 else 1)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    broker.close()
    out.put((sum(ranges), sum(calls)))


def measure(backend: str, address: str, processes: int, threads: int, batch: int,
            seconds: float) -> tuple[float, float]:
    """(ranges/s, calls/s) of ``processes`` load generators."""
    master = connect(backend, address)
    master.acquire("bench-master", ttl=600)
    master.start_generation(TOKEN, 0, 10**9, b"spec")
    master.add_ranges(TOKEN, [(i, 1) for i in range(2_000_000)])
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            master.take_results(TOKEN, 0.05)

    drainer = threading.Thread(target=drain)
    drainer.start()
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=hammer,
                             args=(backend, address, threads, batch, seconds, queue))
             for _ in range(processes)]
    for p in procs:
        p.start()
    counts = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    done.set()
    drainer.join()
    master.release("bench-master")
    master.close()
    # the processes start up (imports, connections) before they run for `seconds`
    return sum(r for r, _ in counts) / seconds, sum(c for _, c in counts) / seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_backend(backend: str, args) -> dict[str, tuple[float, float]]:
    """Both ways on a fresh coordinator of ``backend``."""
    modes = {"per range": 1, f"batched ({args.batch}/call)": args.batch}
    if backend == "redis":
        port = free_port()
        tmp = tempfile.mkdtemp()
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", tmp],
                                  stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            return {mode: measure(backend, f"127.0.0.1:{port}", args.processes, args.threads,
                                  batch, args.seconds) for mode, batch in modes.items()}
        finally:
            server.terminate()
            server.wait()
            shutil.rmtree(tmp, ignore_errors=True)
    from distributed import Client, LocalCluster

    from dask_abc.broker import ActorBroker

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        ActorBroker(client, "bench", create=True)
        return {mode: measure(backend, cluster.scheduler_address, args.processes, args.threads,
                              batch, args.seconds) for mode, batch in modes.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--threads", type=int, default=16,
                   help="per-range load generators per process")
    p.add_argument("--batch", type=int, default=16, help="ranges per push_many call")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--backends", default="actor,redis")
    args = p.parse_args()
    from dask_abc import config

    rate = float(config.get("broker.max-task-rate"))
    h = float(config.get("broker.heartbeat-seconds"))
    results = {}
    for backend in args.backends.split(","):
        if backend == "redis" and shutil.which("redis-server") is None:
            print("redis-server not found: skipping the Redis backend", file=sys.stderr)
            continue
        results[backend] = run_backend(backend, args)
    print(f"{args.processes} load-generating processes, {args.seconds:g} s per way; per range: "
          f"{args.threads} threads each, batched: {args.batch} ranges per call")
    print(f"{'backend':8} {'way':22} {'ranges/s':>9} {'calls/s':>9}")
    for backend, ways in results.items():
        for way, (ranges, calls) in ways.items():
            print(f"{backend:8} {way:22} {ranges:9.0f} {calls:9.0f}")
    print(f"\nThe bulk of a generation on any number of slots: about {rate:g} ranges/s "
          f"(abc.broker.max-task-rate), one heartbeat per worker process every {h:g} s.")
    print("Worker processes whose heartbeats a coordinator serves beside that, counting one "
          "call per range (threads that finish apart; batched calls need fewer):")
    for backend, ways in results.items():
        (_, calls), _ = ways.values()
        print(f"{backend:8} {max(calls - rate, 0) * h:9,.0f}")


if __name__ == "__main__":
    main()
