"""The vectorised model protocol: one call per batch, the index rule kept."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp

import numpy as np
import pytest
from helpers import assert_histories_equal, gaussian_model, gaussian_prior, weighted_mean_sd

import dask_abc as abc
from dask_abc.rng import IndexStreams
from dask_abc.sampler import (
    ConcurrentFutureSampler,
    MappingSampler,
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    SingleCoreSampler,
)


@abc.vectorized
def gaussian_batch(parameter, rng):
    """y ~ N(theta, 1) for a whole batch."""
    return {"y": parameter["theta"] + rng.normal()}


@abc.vectorized(name="two_stats")
def two_stats(parameter, rng):
    noise = rng.normal(size=2)
    return {"a": parameter["theta"] + noise[:, 0],
            "b": np.stack([parameter["theta"], noise[:, 1]], axis=1)}


def test_batch_random_rows_do_not_depend_on_the_batch():
    streams = IndexStreams(3, 2)
    whole = abc.BatchRandom(streams, np.arange(100))
    a, b = whole.normal(size=3), whole.uniform(2, 5)
    part = abc.BatchRandom(streams, np.arange(40, 47))
    assert np.array_equal(part.normal(size=3), a[40:47])
    assert np.array_equal(part.uniform(2, 5), b[40:47])
    assert a.shape == (100, 3) and b.shape == (100,)
    assert not np.array_equal(whole.normal(), a[:, 0])  # every call draws anew
    assert np.all((b > 2) & (b < 5))


def test_single_evaluation_call_shape():
    out = two_stats.sample(abc.Parameter(theta=1.5), np.random.default_rng(0))
    assert out["a"].shape == () and out["b"].shape == (2,)
    assert out["b"][0] == 1.5


def run(model, sampler, tmp_path, n=300, generations=4, **kwargs):
    smc = abc.ABCSMC(model, gaussian_prior(), population_size=n, sampler=sampler, seed=21,
                     **kwargs)
    smc.new(f"sqlite:///{tmp_path}/{id(sampler)}.db", {"y": 1.0})
    return smc.run(max_nr_populations=generations)


@pytest.mark.parametrize("make", [
    lambda: MulticoreEvalParallelSampler(n_procs=2),
    lambda: MulticoreParticleParallelSampler(n_procs=2),
    lambda: MappingSampler(map, chunks=5),
    lambda: ConcurrentFutureSampler(
        cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")), batch_size=37),
])
def test_identical_history_for_every_sampler(make, tmp_path):
    sampler = make()
    try:
        history = run(gaussian_batch, sampler, tmp_path)
    finally:
        sampler.stop()
        if getattr(sampler, "executor", None) is not None:
            sampler.executor.shutdown()
    assert_histories_equal(history, run(gaussian_batch, SingleCoreSampler(), tmp_path))


def test_posterior_of_the_vectorised_gaussian(tmp_path):
    smc = abc.ABCSMC(gaussian_batch, gaussian_prior(), population_size=2000, seed=3,
                     sampler=SingleCoreSampler())
    smc.new(f"sqlite:///{tmp_path}/g.db", {"y": 1.0})
    history = smc.run(minimum_epsilon=0.05)
    mean, sd = weighted_mean_sd(history)
    assert abs(mean - 0.9) < 0.08
    assert abs(sd / np.sqrt(0.9) - 1) < 0.10


def test_mixed_vectorised_and_plain_models(tmp_path):
    def selection(sampler):
        smc = abc.ABCSMC([gaussian_batch, gaussian_model], [gaussian_prior(), gaussian_prior()],
                         population_size=200, sampler=sampler, seed=5)
        smc.new(f"sqlite:///{tmp_path}/{id(sampler)}.db", {"y": 1.0})
        return smc.run(max_nr_populations=3)

    history = selection(MulticoreEvalParallelSampler(n_procs=2))
    assert_histories_equal(history, selection(SingleCoreSampler()))
    assert history.get_model_probabilities().shape == (3, 2)


def test_wrong_batch_shape_is_named_before_sampling(tmp_path):
    @abc.vectorized
    def scalar_out(parameter, rng):
        return {"y": 1.0}

    smc = abc.ABCSMC(scalar_out, gaussian_prior(), population_size=10, seed=1)
    with pytest.raises(abc.SumStatError, match=r"model 'scalar_out'.*'y'.*batch of 1"):
        smc.new(f"sqlite:///{tmp_path}/bad.db", {"y": 1.0})


def test_failing_vectorised_model_reports_the_batch(tmp_path):
    @abc.vectorized
    def fails(parameter, rng):
        if len(parameter["theta"]) > 1:
            raise FloatingPointError("overflow")
        return {"y": parameter["theta"]}

    smc = abc.ABCSMC(fails, gaussian_prior(), population_size=50, seed=1,
                     sampler=SingleCoreSampler())
    smc.new(f"sqlite:///{tmp_path}/fail.db", {"y": 1.0})
    with pytest.raises(abc.ModelError, match="a batch of .* evaluations") as info:
        smc.run(max_nr_populations=1)
    assert "theta" in info.value.parameter and "FloatingPointError" in str(info.value)
