"""Single-run ABC-SMC benchmark worker for a 1-d Gaussian model.

Runs one ABC-SMC inference with either ``dask_abc`` or ``pyabc`` (same
script, same calls) and writes the timings as JSON.

Model: prior ``theta ~ N(0, 3^2)``, data ``y ~ N(theta, 1)``, observed
``y = 1``. The ``micro`` model returns at once; ``busy10ms`` keeps the CPU
busy for 10 ms (a spin loop, not a sleep) before returning.

Only ``abc.run(...)`` is timed, not ``abc.new(...)``.

Examples
--------
>>> # python benchmarks/gaussian.py --library pyabc --sampler single \\
>>> #     --model micro --json-out /tmp/out.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from types import ModuleType
from typing import Any

import numpy as np

MODEL_TIME = {"micro": 0.0, "busy10ms": 0.01}
SAMPLERS = ("single", "multicore_eval", "multicore_particle")
OBSERVED = {"y": 1.0}


def micro_model(parameter: dict[str, float]) -> dict[str, float]:
    """Draw ``y ~ N(theta, 1)`` at once.

    Parameters
    ----------
    parameter : dict
        Must contain ``"theta"``.

    Returns
    -------
    dict
        ``{"y": sample}``.
    """
    return {"y": np.random.normal(parameter["theta"], 1.0)}


def busy_model(parameter: dict[str, float]) -> dict[str, float]:
    """Spin the CPU for 10 ms, then draw ``y ~ N(theta, 1)``.

    Parameters
    ----------
    parameter : dict
        Must contain ``"theta"``.

    Returns
    -------
    dict
        ``{"y": sample}``.
    """
    end = time.perf_counter() + MODEL_TIME["busy10ms"]
    while time.perf_counter() < end:
        pass
    return {"y": np.random.normal(parameter["theta"], 1.0)}


MODELS = {"micro": micro_model, "busy10ms": busy_model}


def make_sampler(lib: ModuleType, sampler: str, n_procs: int) -> Any:
    """Create a sampler of the given kind from ``lib.sampler``.

    Parameters
    ----------
    lib : module
        ``pyabc`` or ``dask_abc``.
    sampler : {"single", "multicore_eval", "multicore_particle"}
        Sampler kind.
    n_procs : int
        Number of worker processes (ignored for ``"single"``).

    Returns
    -------
    object
        The sampler instance.
    """
    if sampler == "single":
        return lib.sampler.SingleCoreSampler()
    if sampler == "multicore_eval":
        return lib.sampler.MulticoreEvalParallelSampler(n_procs=n_procs)
    if sampler == "multicore_particle":
        return lib.sampler.MulticoreParticleParallelSampler(n_procs=n_procs)
    raise ValueError(f"unknown sampler {sampler!r}")


def run_case(
    library: str,
    sampler: str,
    n_procs: int,
    model: str,
    population: int,
    generations: int,
    seed: int,
) -> dict[str, Any]:
    """Run one ABC-SMC inference and measure it.

    Parameters
    ----------
    library : {"dask_abc", "pyabc"}
        Library to import under the name ``pyabc``.
    sampler : {"single", "multicore_eval", "multicore_particle"}
        Sampler kind.
    n_procs : int
        Worker processes for the multicore samplers; forced to 1 for
        ``"single"``.
    model : {"micro", "busy10ms"}
        Model kind.
    population : int
        Population size.
    generations : int
        ``max_nr_populations`` passed to ``abc.run``.
    seed : int
        Seed; passed as ``seed=`` to ``dask_abc.ABCSMC``, used to seed the
        global ``numpy``/``random`` state for ``pyabc``.

    Returns
    -------
    dict
        The measurements (see ``benchmarks/README.md``).
    """
    lib = importlib.import_module(library)
    n_procs = 1 if sampler == "single" else n_procs
    np.random.seed(seed)
    random.seed(seed)

    kwargs: dict[str, Any] = {
        "population_size": population,
        "sampler": make_sampler(lib, sampler, n_procs),
    }
    if library == "dask_abc":
        kwargs["seed"] = seed
    abc = lib.ABCSMC(
        MODELS[model],
        lib.Distribution(theta=lib.RV("norm", 0, 3)),
        lib.PNormDistance(p=2),
        **kwargs,
    )
    with tempfile.TemporaryDirectory() as tmp:
        abc.new("sqlite:///" + os.path.join(tmp, "abc.db"), OBSERVED)
        start = time.perf_counter()
        history = abc.run(max_nr_populations=generations)
        wall = time.perf_counter() - start
        pops = history.get_all_populations()
        total_nr_simulations = int(history.total_nr_simulations)

    samples_all = int(pops["samples"].sum())
    samples_t_ge_0 = int(pops.loc[pops["t"] >= 0, "samples"].sum())
    model_time = MODEL_TIME[model]
    # Every model call made inside run(), including pyABC's t = -1
    # calibration sample, which run() also performs and times.
    evaluations = total_nr_simulations
    ideal = evaluations * model_time / n_procs
    return {
        "library": library,
        "version": getattr(lib, "__version__", "unknown"),
        "sampler": sampler,
        "n_procs": n_procs,
        "model": model,
        "population": population,
        "generations": generations,
        "generations_run": int((pops["t"] >= 0).sum()),
        "seed": seed,
        "wall": wall,
        "evaluations": evaluations,
        "total_nr_simulations": total_nr_simulations,
        "samples_t_ge_0": samples_t_ge_0,
        "samples_all": samples_all,
        "sims_per_s": evaluations / wall,
        "sims_per_s_t_ge_0": samples_t_ge_0 / wall,
        "model_time": model_time,
        "ideal_wall": ideal,
        "efficiency": ideal / wall if model_time > 0 else None,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` if None.

    Returns
    -------
    argparse.Namespace
        Parsed arguments.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", choices=("dask_abc", "pyabc"), required=True)
    p.add_argument("--sampler", choices=SAMPLERS, default="single")
    p.add_argument("--n-procs", type=int, default=2)
    p.add_argument("--model", choices=tuple(MODELS), default="micro")
    p.add_argument("--population", type=int, default=500)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", required=True, help="file to write")
    p.add_argument("--verbose", action="store_true", help="keep ABC logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run one case and write its JSON.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` if None.
    """
    args = parse_args(argv)
    importlib.import_module(args.library)
    if not args.verbose:
        # After the import: pyABC sets its "ABC" logger's level on import.
        logging.getLogger("ABC").setLevel(logging.WARNING)
    result = run_case(
        args.library,
        args.sampler,
        args.n_procs,
        args.model,
        args.population,
        args.generations,
        args.seed,
    )
    with open(args.json_out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
