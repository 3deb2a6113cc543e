"""DaskDistributedSampler on the live single-node SLURM cluster of ``ci/slurm_up.sh``.

Two cases, each on a fresh ``SLURMCluster`` (one core and one single-threaded
worker per job, everything on 127.0.0.1), with the CPU-busy 10 ms Gaussian
model of ``suite_models``:

- ``adapt``: ``cluster.adapt(minimum=0, maximum=WORKERS)`` on an idle cluster,
  then ``run()``: the time from ``adapt()`` to the end of the first generation
  (job submission, worker start-up and the generation itself), and the
  run's parallel efficiency measured from ``adapt()`` and from the first task.
- ``scale``: ``cluster.scale(WORKERS)`` and waiting for the workers first: the
  steady-state efficiency without start-up.

Efficiency = evaluations x 10 ms / (wall time x workers). The master and the
scheduler share the machine's 2 cores with the workers, as in
``dask_suite.py``.

Usage (as root; starts SLURM if needed): ``python benchmarks/slurm_adapt.py
[--population N] [--generations G] [--repeats R]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import suite_models
from dask.distributed import Client
from dask_jobqueue import SLURMCluster

import dask_abc as dabc

HERE = Path(__file__).resolve().parent
MODEL_SECONDS = 0.01
WORKERS = 2


def cluster_on_loopback(directory: str) -> SLURMCluster:
    return SLURMCluster(queue="debug", cores=1, processes=1, memory="1GB", walltime="00:30:00",
                        interface="lo", log_directory=directory, job_name="abc-bench",
                        scheduler_options={"dashboard_address": "127.0.0.1:0"},
                        worker_extra_args=["--dashboard-address", "127.0.0.1:0"])


def run_case(case: str, population: int, generations: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, cluster_on_loopback(tmp) as cluster, \
            Client(cluster) as client:
        smc = dabc.ABCSMC(suite_models.GaussianModel(MODEL_SECONDS),
                          dabc.Distribution(theta=dabc.RV("norm", 0, 3)),
                          dabc.PNormDistance(p=2), population_size=population, seed=1,
                          sampler=dabc.sampler.DaskDistributedSampler(client))
        smc.new(f"sqlite:///{tmp}/bench.db", {"y": 1.0})
        if case == "scale":
            cluster.scale(WORKERS)
            client.wait_for_workers(WORKERS, timeout=120)
        started_at = datetime.datetime.now()
        start = time.perf_counter()
        if case == "adapt":
            cluster.adapt(minimum=0, maximum=WORKERS)
        history = smc.run(max_nr_populations=generations)
        wall = time.perf_counter() - start
        populations = history.get_all_populations().set_index("t")
        first = (populations.loc[0, "population_end_time"] - started_at).total_seconds()
        evaluations = int(history.total_nr_simulations)
        history.close()
    ideal = evaluations * MODEL_SECONDS / WORKERS
    return {"case": case, "population": population, "generations": generations,
            "evaluations": evaluations, "wall": wall, "first_generation_s": first,
            "efficiency": ideal / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["bash", str(HERE.parent / "ci" / "slurm_up.sh")], check=True)
    results = []
    for _ in range(args.repeats):
        for case in ("adapt", "scale"):
            result = run_case(case, args.population, args.generations)
            print(f"{case:6s} wall {result['wall']:6.2f} s, first generation after "
                  f"{result['first_generation_s']:5.2f} s, efficiency {result['efficiency']:.3f}",
                  flush=True)
            results.append(result)
    summary = {}
    for case in ("adapt", "scale"):
        rows = [r for r in results if r["case"] == case]
        summary[case] = {key: statistics.median(r[key] for r in rows)
                         for key in ("wall", "first_generation_s", "efficiency")}
        print(f"median {case}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[case].items()))
    out = HERE / "reference" / "slurm_results.json"
    out.write_text(json.dumps({"results": results, "median": summary}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
