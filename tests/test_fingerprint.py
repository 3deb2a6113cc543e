"""Structural descriptions of a setup (dask_abc.fingerprint): equal setups give equal
fingerprints, in any process; changed ones are reported by path and value."""

from __future__ import annotations

import itertools
import json
import linecache
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.stats as st

import dask_abc as abc
from dask_abc.fingerprint import describe, differences, fingerprint

ROOT = Path(__file__).resolve().parents[1]
_files = itertools.count()


def make_module(source: str, monkeypatch=None, name: str = "fp_models") -> dict:
    """Run ``source`` as a module called ``name``; with ``monkeypatch`` its source is
    registered with linecache (as for a file), else inspect cannot find it."""
    filename = f"<fingerprint-test-{next(_files)}>"
    if monkeypatch is not None:
        monkeypatch.setitem(linecache.cache, filename,
                            (len(source), None, source.splitlines(True), filename))
    namespace = {"__name__": name}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def gaussian(p):
    return {"y": p["theta"] + np.random.normal()}


def make_setup(distance=None, eps=None, model=gaussian) -> dict:
    """A setup described as ABCSMC stores it: component name -> description."""
    return {key: describe(value) for key, value in dict(
        models=[abc.FunctionModel(model)],
        parameter_priors=[abc.Distribution(theta=abc.RV("norm", 0, 3),
                                           sigma=abc.BoundedRV(abc.RV("norm", 0, 1), lower=0))],
        distance_function=distance or abc.PNormDistance(p=2),
        eps=eps or abc.MedianEpsilon(),
        transitions=[abc.MultivariateNormalTransition(), abc.LocalTransition(k=5)],
        model_perturbation_kernel=abc.ModelPerturbationKernel(1),
        acceptor=abc.UniformAcceptor(),
        max_nr_recorded_particles=np.inf,
        seed=11,
    ).items()}


def test_identical_setups_have_equal_fingerprints():
    first, second = make_setup(), make_setup()
    assert fingerprint(first) == fingerprint(second)
    assert differences(first, second) == []
    adaptive = make_setup(abc.AdaptivePNormDistance(p=2), abc.QuantileEpsilon(alpha=0.3))
    assert fingerprint(adaptive) == fingerprint(
        make_setup(abc.AdaptivePNormDistance(p=2), abc.QuantileEpsilon(alpha=0.3)))
    assert fingerprint(adaptive) != fingerprint(first)


def test_description_survives_json():
    """The stored description is read back from JSON: it must compare equal."""
    setup = make_setup()
    setup["extra"] = describe({"arrays": (np.arange(3.0), np.zeros((5, 5))), "nan": np.nan,
                               "scalars": [np.float32(0.5), np.int64(3), np.bool_(True)],
                               "tags": {"b", "a"}})
    loaded = json.loads(json.dumps(setup))
    assert loaded == setup
    assert fingerprint(loaded) == fingerprint(setup)
    assert differences(loaded, setup) == []
    assert setup["extra"]["items"]["nan"] == {"float": "nan"}
    assert setup["extra"]["items"]["scalars"] == [0.5, 3, True]
    assert setup["extra"]["items"]["tags"] == ["a", "b"]


def test_random_state_is_not_described():
    prior = abc.Distribution(theta=abc.RV("norm", 0, 3))
    frozen = st.norm(0, 3)
    before_prior, before_frozen = describe(prior), describe(frozen)
    assert before_frozen == {"scipy": "norm", "args": [0, 3],
                             "kwds": {"type": "builtins.dict", "items": {}}}
    np.random.normal(size=10)
    frozen.rvs(size=3)
    prior["theta"].distribution.rvs(size=3)
    prior.rvs()
    assert describe(prior) == before_prior
    assert describe(frozen) == before_frozen
    rngs = [np.random.default_rng(1), np.random.default_rng(2), np.random.RandomState(3),
            np.random.SeedSequence(4), np.random.PCG64(5)]
    assert {describe(r) for r in rngs} == {"<random state>"}


def test_floats_are_exact_and_shown_readably():
    assert describe(3.0) != describe(3.0000000001)
    assert fingerprint(describe(3.0)) != fingerprint(describe(3))
    assert differences({"eps": describe(abc.ConstantEpsilon(3))},
                       {"eps": describe(abc.ConstantEpsilon(3.0000000001))}) == [
        "eps.constant_epsilon_value: stored 3.0, now 3.0000000001"]
    assert differences({"x": describe(np.inf)}, {"x": describe(1.5)}) == [
        "x: stored inf, now 1.5"]


def test_changed_prior_argument():
    stored = {"parameter_priors": [describe(abc.Distribution(theta=abc.RV("norm", 0, 3)))]}
    current = {"parameter_priors": [describe(abc.Distribution(theta=abc.RV("norm", 0, 5)))]}
    assert fingerprint(stored) != fingerprint(current)
    assert differences(stored, current) == [
        "parameter_priors[0]['theta'].args[1]: stored 3, now 5"]
    frozen = differences({"rv": describe(st.norm(0, 3))}, {"rv": describe(st.norm(0, scale=3))})
    assert frozen == ["rv.args: stored [0, 3], now [0]",
                      "rv.kwds['scale']: not stored, now 3"]


def test_changed_model_body(monkeypatch):
    old = make_module("import numpy as np\n\ndef model(p):\n"
                      "    return {'y': p['theta'] + np.random.normal()}\n", monkeypatch)
    new = make_module("import numpy as np\n\ndef model(p):\n"
                      "    return {'y': p['theta'] + 2 * np.random.normal()}\n", monkeypatch)
    stored, current = make_setup(model=old["model"]), make_setup(model=new["model"])
    assert fingerprint(stored) != fingerprint(current)
    [line] = differences(stored, current)
    assert line.startswith("models[0].sample_function (function fp_models.model): code changed")
    assert "\n    -    return {'y': p['theta'] + np.random.normal()}" in line
    assert "\n    +    return {'y': p['theta'] + 2 * np.random.normal()}" in line
    again = make_module("import numpy as np\n\ndef model(p):\n"
                        "    return {'y': p['theta'] + np.random.normal()}\n", monkeypatch)
    assert make_setup(model=again["model"]) == stored


def test_changed_body_without_source():
    """Functions whose source inspect cannot find are compared by their code."""
    old = make_module("def model(p):\n    return {'y': p['theta']}\n")["model"]
    new = make_module("def model(p):\n    return {'y': -p['theta']}\n")["model"]
    same = make_module("def model(p):\n    return {'y': p['theta']}\n")["model"]
    assert "source" not in describe(old) and "code" in describe(old)
    assert describe(old) == describe(same)
    assert differences({"models": [describe(old)]}, {"models": [describe(new)]}) == [
        "models[0] (function fp_models.model): code changed"]


def test_lambdas_are_described_by_their_own_source():
    first = describe(lambda p: {"y": p["theta"]})
    again = describe(lambda p: {"y": p["theta"]})
    changed = describe(lambda p: {"y": 2 * p["theta"]})
    assert first == again and first["source"] == 'lambda p: {"y": p["theta"]}'
    [line] = differences({"models": [first]}, {"models": [changed]})
    assert line.startswith(f"models[0] (function {__name__}.test_lambdas_are_described_by_"
                           "their_own_source.<locals>.<lambda>): code changed")
    assert '+lambda p: {"y": 2 * p["theta"]}' in line
    two = describe([lambda p: 1, lambda p: 2])  # one statement, two lambdas
    assert [f["source"] for f in two] == ["lambda p: 1", "lambda p: 2"]


def test_changed_module_constant(monkeypatch):
    module = make_module("SCALE = 2.0\nOFFSETS = (1, 2)\nNAME = 'unused'\n\n"
                         "def model(p):\n    return {'y': p['theta'] * SCALE + OFFSETS[0]}\n",
                         monkeypatch)
    stored = {"models": [describe(module["model"])]}
    assert stored["models"][0]["globals"] == {"OFFSETS": [1, 2], "SCALE": 2.0}
    module["SCALE"] = 3.0
    current = {"models": [describe(module["model"])]}
    assert differences(stored, current) == [
        "models[0] (function fp_models.model): global SCALE: stored 2.0, now 3.0"]


def _with_default(scale):
    def model(p, scale=scale):
        return {"y": p["theta"] * scale}
    return model


def _with_closure(scale):
    def model(p):
        return {"y": p["theta"] * scale}
    return model


def test_changed_default_argument():
    stored = {"models": [describe(abc.FunctionModel(_with_default(1.0)))]}
    current = {"models": [describe(abc.FunctionModel(_with_default(2.0)))]}
    name = f"{__name__}._with_default.<locals>.model"
    assert differences(stored, current) == [
        f"models[0].sample_function (function {name}): default of argument scale: "
        "stored 1.0, now 2.0"]


def test_changed_closure_variable():
    stored = {"models": [describe(_with_closure([1, 2, 3]))]}
    current = {"models": [describe(_with_closure([1, 2, 4]))]}
    name = f"{__name__}._with_closure.<locals>.model"
    assert differences(stored, current) == [
        f"models[0] (function {name}): captured variable scale[2]: stored 3, now 4"]


def test_changed_distance_type_and_epsilon():
    stored = make_setup()
    current = make_setup(abc.AdaptivePNormDistance(p=2), abc.MedianEpsilon(median_multiplier=0.8))
    assert differences(stored, current) == [
        "distance_function: type dask_abc.distance.PNormDistance stored, "
        "dask_abc.distance.AdaptivePNormDistance now",
        "eps.quantile_multiplier: stored 1, now 0.8",
    ]
    longer = dict(stored, models=stored["models"] * 2)
    assert differences(longer, stored, labels={"models": "model list"}) == [
        "model list: 2 entries stored, 1 now"]


def test_run_time_state_is_not_described():
    """Fitted weights, thresholds and kernels change during a run, not the setup."""
    distance, eps = abc.AdaptivePNormDistance(p=2), abc.MedianEpsilon()
    transition = abc.MultivariateNormalTransition()
    fresh = [describe(distance), describe(eps), describe(transition)]
    distance.configure(abc.sumstat.SumStatLayout.from_observed({"y": 0.0, "z": 1.0}))
    distance.initialize(0, np.random.default_rng(0).normal(size=(20, 2)), np.zeros(2))
    eps.initialize(0, np.arange(5.0), np.ones(5) / 5)
    transition.fit(np.arange(6.0).reshape(3, 2) ** 2, np.ones(3))
    assert [describe(distance), describe(eps), describe(transition)] == fresh


def test_key_only_on_one_side_and_limit():
    stored = {"eps": describe({"a": 1, "b": 2}), "seed": 1}
    current = {"eps": describe({"a": 1, "c": 3}), "transitions": []}
    assert differences(stored, current) == [
        "eps['b']: stored 2, not present now",
        "eps['c']: not stored, now 3",
        "seed: stored 1, not present now",
        "transitions: not stored, now []",
    ]
    many = differences({"x": list(range(30))}, {"x": list(range(1, 31))}, limit=3)
    assert many == ["x[0]: stored 0, now 1", "x[1]: stored 1, now 2", "x[2]: stored 2, now 3",
                    "... and more differences"]


def test_cycles_depth_and_other_objects():
    class Node:
        def __init__(self):
            self.child = self
            self._cache = object()

    node = describe(Node())
    assert node["attributes"] == {"child": "<cycle>"}
    deep: list = []
    for _ in range(30):
        deep = [deep]
    assert "<deep>" in json.dumps(describe(deep))
    assert describe(np.sqrt) == "numpy.sqrt" and describe(len) == "builtins.len"
    assert describe(np) == "numpy" and describe(abc.RV) == "dask_abc.random_variables.RV"
    assert describe(np.random.normal) == "numpy.random.RandomState.normal"
    assert describe(object()) == "builtins.object"
    big = describe(np.arange(100.0))
    assert set(big) == {"array", "dtype", "sha256"}
    assert differences({"a": big}, {"a": describe(np.arange(100.0) + 1)}) == [
        "a: the values of an array of shape (100,) (float64) changed"]


SETUP = """
import dask_abc as abc
from dask_abc.fingerprint import describe, fingerprint
setup = {
    "options": {"alpha": 0.5, "names": ("a", "b"), "n": 3},
    "tags": {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"},
    "prior": abc.Distribution(theta=abc.RV("norm", 0, 3), sigma=abc.RV("uniform", 0, 1)),
    "eps": abc.MedianEpsilon(),
}
digest = fingerprint({key: describe(value) for key, value in setup.items()})
"""


def test_fingerprint_is_stable_across_processes():
    namespace: dict = {}
    exec(SETUP, namespace)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    children = [subprocess.Popen([sys.executable, "-c", SETUP + "print(digest)"], cwd=ROOT,
                                 env=dict(env, PYTHONHASHSEED=seed), stdout=subprocess.PIPE,
                                 text=True) for seed in ("0", "123")]
    digests = [child.communicate(timeout=60)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert digests == [namespace["digest"]] * 2
