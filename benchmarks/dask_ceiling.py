"""The ceiling plain Dask sets on a simulated big cluster: what an oracle scheduler gets.

Each "generation" evaluates exactly ``E`` simulations of ``d`` seconds (a sleep) on
the slots of ``benchmarks/simcluster.py``'s cluster (a scheduler process and worker
processes with many threads), as Dask futures submitted at once and consumed as
they complete, with nothing else running: no ABC, no spec, no estimates. The
oracle knows ``E``, which no sampler does, and splits it either into one range per
slot (equal) or by guided self-scheduling. Efficiency is ``E × d / slots / wall``.
Whatever a Dask-based sampler loses beyond this is its own; what this loses is the
engine's (dispatch, task and result round trips) on this machine.

    python benchmarks/dask_ceiling.py                      # 200 slots x 0.1 s
    python benchmarks/dask_ceiling.py --slots 1000 --seconds 1 --sizes 5000 10000 11500
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simcluster  # noqa: E402

#: Evaluations per generation of the scale benchmark's 200-slot, population-1000 case.
SIZES = (1000, 2000, 2400, 3800, 7300)


def sleep_range(count: int, seconds: float) -> int:
    time.sleep(count * seconds)
    return count


def equal(evaluations: int, slots: int) -> list[int]:
    """One range per slot."""
    size = math.ceil(evaluations / slots)
    return [min(size, evaluations - k) for k in range(0, evaluations, size)]


def guided(evaluations: int, slots: int) -> list[int]:
    """Guided self-scheduling: each range an even share of what is left."""
    sizes, left = [], evaluations
    while left > 0:
        sizes.append(min(max(1, math.ceil(left / slots)), left))
        left -= sizes[-1]
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=200, help="threads in all")
    parser.add_argument("--seconds", type=float, default=0.1, help="per simulation")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES,
                        help="evaluations of each generation")
    args = parser.parse_args(argv)
    from distributed import Client, as_completed

    threads = args.slots // args.processes
    with tempfile.TemporaryDirectory() as tmp, \
            simcluster.Processes(tmp, dict(os.environ)) as procs:
        address = simcluster.start_dask_cluster(procs, sys.executable, args.processes,
                                                threads)
        with Client(address) as client:
            client.wait_for_workers(args.processes)
            client.submit(sleep_range, 0, 0.0).result()  # warm: the function is known
            for name, split in (("equal", equal), ("guided", guided)):
                ideal = wall = 0.0
                for evaluations in args.sizes:
                    sizes = split(evaluations, args.slots)
                    start = time.perf_counter()
                    futures = client.map(sleep_range, sizes, seconds=args.seconds, pure=False)
                    for _ in as_completed(futures, with_results=True).batches():
                        pass
                    took = time.perf_counter() - start
                    need = evaluations * args.seconds / args.slots
                    ideal, wall = ideal + need, wall + took
                    print(f"{name:6} E={evaluations:6}: {len(sizes):5} tasks, wall {took:6.2f} s,"
                          f" ideal {need:6.2f} s, efficiency {need / took:.3f}")
                print(f"{name:6} all generations: efficiency {ideal / wall:.3f}")


if __name__ == "__main__":
    main()
