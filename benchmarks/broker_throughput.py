"""Coordinator throughput: range cycles per second the Actor and Redis backends sustain.

Many lightweight simulated workers (threads in a few processes) push a small
result and claim the next range in one call, as fast as they can, against one
coordinator; the master drains the results. One *cycle* is that call, a busy
worker's traffic per range (heartbeats, two per second per worker, come on top). From
the cycles per second follows the largest number of workers a coordinator can
feed: a worker whose range takes ``d`` seconds and who beats every ``h`` seconds
needs ``1/d + 1/h`` calls per second, so ``workers = cycles/s / (1/d + 1/h)``,
with ``d = max(model time, target task time)`` under ``batch_size="auto"`` and
``d = model time`` with batch size 1 (a heartbeat costs no more than a cycle).

Usage: ``python benchmarks/broker_throughput.py [--processes 4] [--threads 16]
[--seconds 10]`` (needs ``redis-server`` on the PATH for the Redis backend).
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


def hammer(backend: str, address: str, threads: int, seconds: float, out) -> None:
    """One process: ``threads`` simulated workers cycling claim + push."""
    broker = connect(backend, address)
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        name = f"{os.getpid()}-{i}"
        broker.register(name, {})
        claim = broker.claim(name, TOKEN)
        while time.monotonic() < stop and claim is not None:
            claim = broker.push_and_claim(name, TOKEN, claim[0], claim[1], 1, RESULT)
            counts[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    broker.close()
    out.put(sum(counts))


def measure(backend: str, address: str, processes: int, threads: int, seconds: float) -> float:
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
    queue = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(
        target=hammer, args=(backend, address, threads, seconds, queue))
        for _ in range(processes)]
    start = time.monotonic()
    for p in procs:
        p.start()
    total = sum(queue.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    done.set()
    drainer.join()
    master.release("bench-master")
    master.close()
    # the processes start up (imports, connections) before they hammer for `seconds`
    return total / seconds, elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--threads", type=int, default=16, help="simulated workers per process")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--backends", default="actor,redis")
    args = p.parse_args()
    from dask_abc import config

    target = float(config.get("broker.target-task-seconds"))
    rates = {}
    for backend in args.backends.split(","):
        if backend == "redis":
            if shutil.which("redis-server") is None:
                print("redis-server not found: skipping the Redis backend", file=sys.stderr)
                continue
            port = free_port()
            tmp = tempfile.mkdtemp()
            server = subprocess.Popen(["redis-server", "--port", str(port), "--bind",
                                       "127.0.0.1", "--save", "", "--dir", tmp],
                                      stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            try:
                rates[backend] = measure(backend, f"127.0.0.1:{port}", args.processes,
                                         args.threads, args.seconds)
            finally:
                server.terminate()
                server.wait()
        else:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
                    Client(cluster, set_as_default=False) as client:
                from dask_abc.broker import ActorBroker

                ActorBroker(client, "bench", create=True)
                rates[backend] = measure(backend, cluster.scheduler_address, args.processes,
                                         args.threads, args.seconds)
    workers = args.processes * args.threads
    print(f"{workers} simulated workers ({args.processes} processes x {args.threads} threads), "
          f"{args.seconds:g} s each")
    print("max workers one coordinator feeds: cycles/s / (1/d + 1/h), d = range duration "
          f"(auto: at least {target:g} s), h = heartbeat interval")
    print(f"{'backend':8} {'cycles/s':>9} {'h':>5}   {'d=10ms':>9} {'d=1s':>9} {'d=60s':>9}   "
          "batch 1: d=10ms")
    for backend, (rate, _) in rates.items():
        for h in (float(config.get("broker.heartbeat-seconds")), 5.0):
            fed = [rate / (1 / max(d, target) + 1 / h) for d in (0.01, 1.0, 60.0)]
            print(f"{backend:8} {rate:9.0f} {h:5.1f}   {fed[0]:9,.0f} {fed[1]:9,.0f} "
                  f"{fed[2]:9,.0f}   {rate / (1 / 0.01 + 1 / h):9,.0f}")

if __name__ == "__main__":
    main()
