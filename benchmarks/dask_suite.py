"""Dask samplers of dask_abc and pyABC on a 2-worker LocalCluster, in one run.

Matrix (population 1000, 6 generations by default): the Gaussian model as a
microsecond model, CPU-busy 1 ms and CPU-busy 10 ms;
dask_abc's DaskDistributedSampler(batch_size="auto"), SingleCoreSampler and a
vectorised model on one core; pyABC 0.13's DaskDistributedSampler with batch
size 1 and 20 and its MulticoreEvalParallelSampler. Every case runs in its own
subprocess (pyABC with its virtualenv's interpreter). Prints a table and the
targets, writes ``benchmarks/dask_results.json`` and a PNG of parallel
efficiency against model duration.

Usage: ``python benchmarks/dask_suite.py [--quick] [--population N]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import suite_models

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYABC_PYTHON = "/work/pyabc-venv/bin/python"
MODEL_TIME = {"micro": 0.0, "busy1ms": 0.001, "busy10ms": 0.01}
OBSERVED = {"y": 1.0}

# (library, sampler, model)
MATRIX = [
    ("dask_abc", "single", "micro"),
    ("dask_abc", "vectorized", "micro"),
    *[("dask_abc", "dask_auto", m) for m in MODEL_TIME],
    *[("pyabc", s, m) for s in ("dask_1", "dask_20", "multicore_eval") for m in MODEL_TIME],
]


def make_model(lib, name: str, vectorized: bool = False):
    if vectorized:
        @lib.vectorized
        def batch_model(parameter, rng):
            return {"y": parameter["theta"] + rng.normal()}

        return batch_model
    return suite_models.GaussianModel(MODEL_TIME[name])


def run_case(library: str, sampler: str, model: str, population: int, generations: int,
             workers: int, seed: int) -> dict:
    """One inference, measured (runs in the case's own process)."""
    import importlib

    lib = importlib.import_module(library)
    np.random.seed(seed)
    cluster = client = None
    if sampler.startswith("dask"):
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0")
        client = Client(cluster)
        # warm workers: the library is imported before timing, for both libraries alike
        for module in (library, "suite_models"):
            client.run(importlib.import_module, module)
        batch = sampler.split("_")[1]
        make = lib.sampler.DaskDistributedSampler
        abc_sampler = make(client, batch_size="auto" if batch == "auto" else int(batch))
    elif sampler == "multicore_eval":
        abc_sampler = lib.sampler.MulticoreEvalParallelSampler(n_procs=workers)
    else:
        abc_sampler = lib.sampler.SingleCoreSampler()
    n_workers = workers if sampler.startswith(("dask", "multicore")) else 1
    kwargs = {"seed": seed} if library == "dask_abc" else {}
    abc = lib.ABCSMC(make_model(lib, model, sampler == "vectorized"),
                     lib.Distribution(theta=lib.RV("norm", 0, 3)), lib.PNormDistance(p=2),
                     population_size=population, sampler=abc_sampler, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        abc.new("sqlite:///" + os.path.join(tmp, "abc.db"), OBSERVED)
        if client is not None:
            client.run(suite_models.reset)
        start = time.perf_counter()
        history = abc.run(max_nr_populations=generations)
        wall = time.perf_counter() - start
        evaluations = int(history.total_nr_simulations)
        # every simulation that ran on a worker, excess and abandoned ones included
        ran = sum(client.run(suite_models.calls).values()) if client is not None else None
        excess = None
        if library == "dask_abc":
            info = history.get_generation_info()
            excess = float(((info.evaluations_performed - info.samples) / info.samples).max())
    if client is not None:
        client.close()
        cluster.close()
    ideal = evaluations * MODEL_TIME[model] / n_workers
    return {"library": library, "sampler": sampler, "model": model, "workers": n_workers,
            "population": population, "evaluations": evaluations, "wall": wall,
            "sims_per_s": evaluations / wall,
            "efficiency": ideal / wall if MODEL_TIME[model] else None,
            "max_excess_fraction": excess,
            "simulations_run": ran,
            "excess_run_fraction": (ran - evaluations) / evaluations if ran else None}


def run_subprocess(case, args) -> dict | None:
    library = case[0]
    python = args.pyabc_python if library == "pyabc" else sys.executable
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [python, str(Path(__file__).resolve()), "--case", *case, "--out", out.name,
               "--population", str(args.population), "--generations", str(args.generations),
               "--workers", str(args.workers), "--seed", str(args.seed)]
        path = os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        if done.returncode:
            print(f"  failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        return json.loads(Path(out.name).read_text())


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (library, sampler), style in {("dask_abc", "dask_auto"): "o-",
                                      ("pyabc", "dask_1"): "s--", ("pyabc", "dask_20"): "^--",
                                      ("pyabc", "multicore_eval"): "v:"}.items():
        points = sorted((MODEL_TIME[r["model"]] * 1e3, r["efficiency"]) for r in results
                        if r["library"] == library and r["sampler"] == sampler
                        and r["efficiency"] is not None)
        if points:
            ax.plot(*zip(*points), style, label=f"{library} {sampler}")
    ax.set_xscale("log")
    ax.set_xlabel("model time per simulation [ms]")
    ax.set_ylabel("parallel efficiency")
    ax.set_ylim(0, 1.05)
    ax.axhline(1, color="grey", lw=0.5)
    ax.legend()
    workers = max(r["workers"] for r in results)
    ax.set_title(f"{workers} workers, population {results[0]['population']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(results: list[dict]) -> None:
    print(f"{'library':9} {'sampler':15} {'model':9} {'evals':>7} {'wall s':>8} {'sims/s':>10} "
          f"{'eff':>6} {'excess':>7} {'ran-exc':>7}")
    for r in results:
        eff = f"{r['efficiency']:.3f}" if r["efficiency"] is not None else "-"
        exc = f"{r['max_excess_fraction']:.3f}" if r["max_excess_fraction"] is not None else "-"
        ran = r.get("excess_run_fraction")
        ran = f"{ran:.3f}" if ran is not None else "-"
        print(f"{r['library']:9} {r['sampler']:15} {r['model']:9} {r['evaluations']:7d} "
              f"{r['wall']:8.2f} {r['sims_per_s']:10.1f} {eff:>6} {exc:>7} {ran:>7}")

    def get(library, sampler, model):
        return next((r for r in results if (r["library"], r["sampler"], r["model"])
                     == (library, sampler, model)), None)

    print("\ntargets:")
    checks = []
    for model, target in (("busy10ms", 0.95), ("busy1ms", 0.85)):
        r = get("dask_abc", "dask_auto", model)
        if r:
            checks.append((f"auto efficiency at {model} >= {target}", r["efficiency"], target))
    auto, single = get("dask_abc", "dask_auto", "micro"), get("dask_abc", "single", "micro")
    if auto and single:
        checks.append(("micro: auto / own SingleCore >= 1.5",
                       auto["sims_per_s"] / single["sims_per_s"], 1.5))
    best = max((r["sims_per_s"] for r in results if r["library"] == "pyabc"
                and r["sampler"].startswith("dask") and r["model"] == "micro"), default=None)
    if auto and best:
        checks.append(("micro: auto / best pyABC Dask >= 20", auto["sims_per_s"] / best, 20))
    r = get("dask_abc", "dask_auto", "busy10ms")
    if r:
        checks.append(("excess at 10 ms, max over generations of returned ranges, <= 0.05",
                       -r["max_excess_fraction"], -0.05))
        checks.append(("excess at 10 ms, every simulation run on the workers, <= 0.05",
                       -r["excess_run_fraction"], -0.05))
    r = get("dask_abc", "vectorized", "micro")
    if r:
        checks.append(("vectorised model sims/s on one core >= 200000", r["sims_per_s"], 2e5))
    for name, value, target in checks:  # negated values: upper bounds
        print(f"  {'PASS' if value >= target else 'FAIL'}  {name}: {abs(value):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", nargs=3, metavar=("LIBRARY", "SAMPLER", "MODEL"))
    p.add_argument("--out")
    p.add_argument("--quick", action="store_true", help="population 200, 3 generations")
    p.add_argument("--population", type=int, default=1000)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--pyabc-python", default=PYABC_PYTHON)
    p.add_argument("--only-library", choices=("dask_abc", "pyabc"))
    p.add_argument("--results", default=str(HERE / "dask_results.json"))
    p.add_argument("--replot", action="store_true",
                   help="report and plot the results file again, without running")
    args = p.parse_args()
    if args.quick:
        args.population, args.generations = 200, 3
    if args.case:
        result = run_case(*args.case, args.population, args.generations, args.workers, args.seed)
        Path(args.out).write_text(json.dumps(result))
        return
    if args.replot:
        results = json.loads(Path(args.results).read_text())
        report(results)
        plot(results, Path(args.results).with_suffix(".png"))
        return
    results = []
    for case in MATRIX:
        if args.only_library and case[0] != args.only_library:
            continue
        print("run", *case, "...", flush=True)
        result = run_subprocess(case, args)
        if result:
            results.append(result)
            print(f"  {result['sims_per_s']:.1f} sims/s, {result['wall']:.1f} s", flush=True)
    Path(args.results).write_text(json.dumps(results, indent=2))
    report(results)
    if not results:
        sys.exit("no case ran")
    plot(results, Path(args.results).with_suffix(".png"))
    print(f"\nwrote {args.results} and {Path(args.results).with_suffix('.png')}")


if __name__ == "__main__":
    main()
