"""The inference of the kill-and-resume tests: adaptive distance, adaptive epsilon,
calibration, two parameters; the model logs every simulation it runs."""

from __future__ import annotations

import os
import time

import numpy as np

import dask_abc as abc

GENERATIONS = 5
POPULATION = 150
SEED = 11
OBSERVED = {"y1": 0.5, "y2": 1.0}
RUN = {"minimum_epsilon": 0.0, "max_nr_populations": GENERATIONS}  # run()'s arguments


def key(theta) -> str:
    """A simulation's identity in the log: its parameters (unique per index)."""
    return " ".join(repr(float(x)) for x in theta[:2])


def model(p):
    with open(os.environ["RESUME_SIMLOG"], "a") as log:  # one append per simulation
        log.write(key((p["a"], p["b"])) + "\n")
    time.sleep(0.001)
    return {"y1": p["a"] + 0.5 * np.random.normal(),
            "y2": p["a"] + p["b"] + np.random.normal()}


def make_abcsmc(sampler) -> abc.ABCSMC:
    prior = abc.Distribution(a=abc.RV("uniform", -3, 6), b=abc.RV("norm", 0, 2))
    return abc.ABCSMC(model, prior, abc.AdaptivePNormDistance(p=2), population_size=POPULATION,
                      sampler=sampler, seed=SEED)


def log_simulations_to(path: str) -> None:
    """Set the simulation log of this process (run on Dask workers by Client.run)."""
    os.environ["RESUME_SIMLOG"] = path
