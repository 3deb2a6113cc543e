"""Sampler mechanics: failures, payloads, maps from other libraries."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing as mp
import os
import pickletools
import signal
import threading
import time
import uuid

import cloudpickle
import numpy as np
import pytest
from helpers import assert_histories_equal, gaussian_model, gaussian_prior

import dask_abc as abc
from dask_abc.sample import SampleCollector
from dask_abc.sampler import (
    ConcurrentFutureSampler,
    MappingSampler,
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    SamplerError,
    SingleCoreSampler,
    payload,
)

MASTER = os.getpid()


def killed_in_workers(parameter):
    """Dies by SIGKILL in a worker process (the master's pre-flight call survives)."""
    if os.getpid() != MASTER:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"y": parameter["theta"]}


def raises_in_workers(parameter):
    if os.getpid() != MASTER and parameter["theta"] > 1:
        raise ArithmeticError("theta too large for this simulator")
    return {"y": parameter["theta"] + np.random.normal()}


def smc_for(model, sampler, tmp_path, n=100):
    smc = abc.ABCSMC(model, gaussian_prior(), population_size=n, sampler=sampler, seed=1)
    smc.new(f"sqlite:///{tmp_path}/run.db", {"y": 1.0})
    return smc


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", [MulticoreEvalParallelSampler, MulticoreParticleParallelSampler])
def test_dead_worker_raises_naming_sampler_and_exit_code(cls, tmp_path):
    smc = smc_for(killed_in_workers, cls(n_procs=2), tmp_path)
    with pytest.raises(SamplerError, match=rf"{cls.__name__}: worker process \d .* exit code -9"):
        smc.run(max_nr_populations=2)
    assert mp.active_children() == []


@pytest.mark.timeout(60)
def test_dead_worker_in_a_process_pool(tmp_path):
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as executor:
        smc = smc_for(killed_in_workers, ConcurrentFutureSampler(executor, batch_size=5),
                      tmp_path)
        with pytest.raises(SamplerError, match="ConcurrentFutureSampler: a worker .* died"):
            smc.run(max_nr_populations=2)


@pytest.mark.timeout(60)
def test_model_error_in_a_worker_names_the_parameter(tmp_path):
    smc = smc_for(raises_in_workers, MulticoreEvalParallelSampler(n_procs=2), tmp_path)
    with pytest.raises(abc.ModelError) as info:
        smc.run(max_nr_populations=3)
    error = info.value
    assert error.model == "raises_in_workers"
    assert error.parameter["theta"] > 1
    assert "theta too large" in str(error) and "ArithmeticError" in str(error)
    assert mp.active_children() == []
    assert smc.history.stop_reason.startswith("failed: ModelError")


def test_sampler_restores_numpys_global_random_state(tmp_path):
    np.random.seed(123)
    expected = np.random.uniform(size=3)
    np.random.seed(123)
    smc_for(gaussian_model, SingleCoreSampler(), tmp_path).run(max_nr_populations=2)
    assert np.array_equal(np.random.uniform(size=3), expected)


def _globals_in_pickle(data: bytes) -> set[str]:
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
    return names


def test_payload_holds_neither_abcsmc_nor_history(tmp_path):
    """What a worker receives: the generation spec only, small and free of the database."""
    smc = smc_for(gaussian_model, SingleCoreSampler(), tmp_path, n=2000)
    smc.run(max_nr_populations=2)
    spec = smc._spec(2, smc.eps(2), smc._population, False)
    data = cloudpickle.dumps(spec)
    names = _globals_in_pickle(data)
    assert any("GenerationSpec" in n for n in names)
    forbidden = [n for n in names if any(k in n for k in ("ABCSMC", "History", "sqlite3"))]
    assert forbidden == []
    # the previous population (2000 particles, 1 parameter) as arrays, not objects
    assert len(data) < 200_000
    with pytest.raises(TypeError, match="not sent to workers"):
        cloudpickle.dumps(smc.history)


def slow_gaussian_model(parameter):
    time.sleep(0.002)
    return gaussian_model(parameter)


@pytest.fixture
def shipped(tmp_path):
    """A generation spec as a worker receives it: a fresh token and its bytes."""
    smc = smc_for(slow_gaussian_model, SingleCoreSampler(), tmp_path)
    smc.run(max_nr_populations=1)
    spec = smc._spec(1, smc.eps(1), smc._population, False)
    return spec, uuid.uuid4().hex, cloudpickle.dumps(spec)


def test_a_range_waits_for_its_spec_to_be_installed(shipped):
    spec, token, data = shipped
    installer = threading.Timer(0.1, lambda: asyncio.run(payload.install(token, data)))
    installer.start()
    result = payload.evaluate(token, None, 0, 20, wait=10)
    installer.join()
    expected = spec.evaluate(0, 20)
    assert result.n_evaluated == 20
    np.testing.assert_array_equal(result.index, expected.index)
    np.testing.assert_array_equal(result.theta, expected.theta)


def test_a_worker_without_the_spec_says_so(shipped):
    _, token, data = shipped
    assert isinstance(payload.evaluate(token, None, 0, 5, wait=0.01), payload.Missing)
    assert payload.evaluate(token, data, 0, 5).n_evaluated == 5  # the spec sent along


def test_finishing_a_generation_stops_its_running_ranges(shipped):
    _, token, data = shipped
    asyncio.run(payload.install(token, data))
    threading.Timer(0.1, lambda: asyncio.run(payload.finish(token))).start()
    start = time.perf_counter()
    assert payload.evaluate(token, None, 0, 5000) is None  # 10 s of simulations
    assert time.perf_counter() - start < 2
    assert payload.evaluate(token, None, 0, 5, wait=10) is None  # finished: not Missing


def test_a_dask_clients_map(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        (tmp_path / "dask").mkdir()
        smc = smc_for(gaussian_model, MappingSampler(client.map), tmp_path / "dask")
        history = smc.run(max_nr_populations=3)
    reference = smc_for(gaussian_model, SingleCoreSampler(), tmp_path).run(max_nr_populations=3)
    assert_histories_equal(history, reference)


def test_pyabcs_sample_until_n_accepted_is_sample_into_a_new_collector(tmp_path):
    """pyABC's call shape stays: the same population as ``sample(spec, collector)``."""
    smc = smc_for(gaussian_model, SingleCoreSampler(), tmp_path, n=300)
    smc.run(max_nr_populations=1)
    spec = smc._spec(1, smc.eps(1), smc._population, False)
    seen = []
    a = MulticoreEvalParallelSampler(n_procs=2).sample_until_n_accepted(
        300, spec, acceptance_rate_hint=0.5, on_batch=seen.append)
    b = SingleCoreSampler().sample(spec, SampleCollector(300))
    assert a.complete and b.complete and a.n_evaluations == b.n_evaluations
    assert np.array_equal(a.index, b.index) and np.array_equal(a.theta, b.theta)
    assert sum(batch.n_evaluated for batch in seen) >= a.n_evaluations
