"""Wall time of runs with and without streaming checkpoints (issue 5's benchmark).

The same inference, into a database file, with ``abc.storage.stream-checkpoints``
on and off, alternating, several repeats; the median of each is compared.

- 10 ms model: the DaskDistributedSampler (batch "auto") on a 2-worker LocalCluster.
- microsecond model: the SingleCoreSampler (the journal's writer thread competes
  with the simulations for the GIL: the worst case) and the Dask sampler.

Usage: python benchmarks/checkpoint_overhead.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import dask

sys.path.insert(0, str(Path(__file__).parent))
import suite_models  # noqa: E402

import dask_abc as abc  # noqa: E402

cloudpickle.register_pickle_by_value(suite_models)  # Dask workers need not import it


def one_run(model_seconds: float, sampler, population: int, generations: int,
            checkpoints: bool, folder: str) -> float:
    """Wall seconds of ``new`` + ``run``."""
    db = os.path.join(folder, f"run-{time.monotonic_ns()}.db")
    prior = abc.Distribution(theta=abc.RV("norm", 0, 3))
    smc = abc.ABCSMC(suite_models.GaussianModel(model_seconds), prior,
                     population_size=population, sampler=sampler, seed=1)
    with dask.config.set({"abc.storage.stream-checkpoints": checkpoints}):
        started = time.perf_counter()
        smc.new(f"sqlite:///{db}", {"y": 1.0})
        history = smc.run(max_nr_populations=generations)
        seconds = time.perf_counter() - started
    history.close()
    return seconds


def compare(name: str, model_seconds: float, sampler, population: int, generations: int,
            repeats: int, folder: str) -> dict:
    one_run(model_seconds, sampler, population, 1, True, folder)  # warm up
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for checkpoints in (False, True):
            times[checkpoints].append(one_run(model_seconds, sampler, population, generations,
                                              checkpoints, folder))
    on, off = statistics.median(times[True]), statistics.median(times[False])
    result = {"case": name, "population": population, "generations": generations,
              "repeats": repeats, "seconds_with": on, "seconds_without": off,
              "overhead": on / off - 1, "all_with": times[True], "all_without": times[False]}
    print(f"{name:32s} without {off:7.3f} s   with {on:7.3f} s   overhead "
          f"{100 * result['overhead']:+5.1f} %", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small populations, 2 repeats")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    repeats = 2 if args.quick else 5
    results = []
    with tempfile.TemporaryDirectory() as folder:
        micro_population = 200 if args.quick else 1000
        results.append(compare("micro, SingleCore", 0.0, abc.sampler.SingleCoreSampler(),
                               micro_population, 6, repeats, folder))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            sampler = abc.sampler.DaskDistributedSampler(client)
            results.append(compare("micro, Dask auto, 2 workers", 0.0, sampler,
                                   micro_population, 6, repeats, folder))
            results.append(compare("10 ms, Dask auto, 2 workers", 0.01, sampler,
                                   100 if args.quick else 300, 4, repeats, folder))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
