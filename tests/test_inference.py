"""ABC-SMC against analytic answers, and one History for every sampler."""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import multiprocessing as mp
import time

import numpy as np
import pytest
from helpers import assert_histories_equal, gaussian_model, gaussian_prior, weighted_mean_sd

import dask_abc as abc
from dask_abc import demo
from dask_abc.sampler import (
    ConcurrentFutureSampler,
    MappingSampler,
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    SingleCoreSampler,
)

SEED = 3


def run_gaussian(sampler, db, population_size=2000, **run_kwargs):
    smc = abc.ABCSMC(gaussian_model, gaussian_prior(), population_size=population_size,
                     sampler=sampler, seed=SEED)
    smc.new(db, {"y": 1.0})
    run_kwargs.setdefault("minimum_epsilon", 0.05)
    return smc.run(**run_kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    db = "sqlite:///" + str(tmp_path_factory.mktemp("ref") / "ref.db")
    return run_gaussian(SingleCoreSampler(), db)


def _fork_pool_map():
    pool = mp.get_context("fork").Pool(2)
    return pool, pool.map


SAMPLERS = {
    "multicore_eval": lambda: MulticoreEvalParallelSampler(n_procs=2),
    "multicore_particle": lambda: MulticoreParticleParallelSampler(n_procs=2),
    "mapping_builtin": lambda: MappingSampler(map),
    "concurrent_future": lambda: ConcurrentFutureSampler(
        cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")), batch_size=100),
}


def test_gaussian_posterior_single_core(reference):
    """Prior N(0, 3²), y ~ N(theta, 1), y_obs = 1: posterior N(0.9, 0.9)."""
    mean, sd = weighted_mean_sd(reference)
    assert reference.get_all_populations()["epsilon"].iloc[-1] <= 0.05
    assert abs(mean - 0.9) < 0.08
    assert abs(sd / np.sqrt(0.9) - 1) < 0.10


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_gives_the_identical_history(name, reference, tmp_path):
    sampler = SAMPLERS[name]()
    try:
        history = run_gaussian(sampler, f"sqlite:///{tmp_path}/run.db")
    finally:
        executor = getattr(sampler, "executor", None)
        if executor is not None:
            executor.shutdown()
    mean, sd = weighted_mean_sd(history)
    assert abs(mean - 0.9) < 0.08
    assert abs(sd / np.sqrt(0.9) - 1) < 0.10
    assert_histories_equal(history, reference)


def test_multiprocessing_pool_map(reference, tmp_path):
    pool, map_ = _fork_pool_map()
    with pool:
        history = run_gaussian(MappingSampler(map_), f"sqlite:///{tmp_path}/run.db")
    assert_histories_equal(history, reference)


def small_reference(tmp_path, sampler, model=gaussian_model):
    smc = abc.ABCSMC(model, gaussian_prior(), population_size=200, sampler=sampler, seed=11)
    smc.new(f"sqlite:///{tmp_path}/{id(sampler)}.db", {"y": 1.0})
    return smc.run(max_nr_populations=4)


@pytest.mark.parametrize("sampler", [
    MulticoreEvalParallelSampler(n_procs=1),
    MulticoreEvalParallelSampler(n_procs=3),
    MulticoreParticleParallelSampler(n_procs=1),
    MulticoreParticleParallelSampler(n_procs=3),
    MappingSampler(map, chunks=7),
], ids=repr)
def test_identical_for_any_number_of_processes(sampler, tmp_path):
    assert_histories_equal(small_reference(tmp_path, sampler),
                           small_reference(tmp_path, SingleCoreSampler()))


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_identical_for_any_batch_size(batch_size, tmp_path):
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as executor:
        history = small_reference(tmp_path, ConcurrentFutureSampler(executor,
                                                                    batch_size=batch_size))
    assert_histories_equal(history, small_reference(tmp_path, SingleCoreSampler()))


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_single_core_chunk_does_not_matter(chunk, tmp_path):
    import dask

    with dask.config.set({"abc.single-core.chunk": chunk}):
        history = small_reference(tmp_path, SingleCoreSampler())
    with dask.config.set({"abc.single-core.chunk": 256}):
        assert_histories_equal(history, small_reference(tmp_path, SingleCoreSampler()))


def rng_model(parameter, rng):
    """Uses the Generator it is given, not numpy's global state (safe in threads)."""
    return {"y": parameter["theta"] + rng.normal()}


def test_threads_with_rng_models(tmp_path):
    with cf.ThreadPoolExecutor(4) as executor:
        history = small_reference(tmp_path, ConcurrentFutureSampler(executor, batch_size=3),
                                  model=rng_model)
    assert_histories_equal(history, small_reference(tmp_path, SingleCoreSampler(),
                                                    model=rng_model))


@pytest.mark.parametrize("pool", ["executor", "map"])
def test_threads_with_a_global_rng_model_warn_once(pool, tmp_path):
    """numpy's global random state is shared by the threads of a pool: a model that draws
    from it gets a warning naming it, once per sampler, not silence."""
    from multiprocessing.pool import ThreadPool

    from dask_abc.reproducibility import GlobalRandomStateWarning

    if pool == "executor":
        threads = cf.ThreadPoolExecutor(4)
        sampler = ConcurrentFutureSampler(threads, batch_size=3)
    else:
        threads = ThreadPool(4)
        sampler = MappingSampler(threads.map, chunks=8)
    try:
        with pytest.warns(GlobalRandomStateWarning) as warned:
            small_reference(tmp_path, sampler)
    finally:
        threads.shutdown() if pool == "executor" else threads.terminate()
    assert len(warned) == 1  # four generations and the calibration: one warning
    message = str(warned[0].message)
    assert "model 'gaussian_model' draws from numpy's global random state" in message
    assert "4 threads" in message and "rng" in message


def slow_when_positive(parameter):
    """Takes 2 ms for theta > 0 and no time otherwise."""
    if parameter["theta"] > 0:
        time.sleep(0.002)
    return {"y": parameter["theta"] + np.random.normal()}


@pytest.mark.parametrize("sampler", [MulticoreEvalParallelSampler(n_procs=2),
                                     MulticoreParticleParallelSampler(n_procs=2)], ids=repr)
def test_no_bias_to_fast_simulations(sampler, tmp_path):
    """Parallel samplers keep the population of the smallest indices, not the fastest."""
    history = small_reference(tmp_path, sampler, model=slow_when_positive)
    reference = small_reference(tmp_path, SingleCoreSampler(), model=slow_when_positive)
    assert_histories_equal(history, reference)
    # the model's speed really differs across the population
    df, _ = history.get_distribution(0)
    assert (df["theta"] > 0).mean() > 0.3


def test_model_selection_against_the_evidence(tmp_path):
    """Two Gaussian models; evidence N(1; mu_m, sqrt(0.5² + 0.5²))."""
    models, priors = demo.models_and_priors()
    smc = abc.ABCSMC(models, priors, population_size=1000, seed=5, sampler=SingleCoreSampler())
    smc.new(f"sqlite:///{tmp_path}/ms.db", demo.OBSERVED)
    history = smc.run(minimum_epsilon=0.05)
    probs = history.get_model_probabilities(history.max_t).iloc[0].to_numpy()
    exact = demo.exact_model_probabilities()
    assert exact[1] == pytest.approx(1 / (1 + np.exp(-1)))
    assert np.abs(probs - exact).max() < 0.05
    assert probs.sum() == pytest.approx(1)


def test_model_selection_identical_in_parallel(tmp_path):
    models, priors = demo.models_and_priors()

    def run(sampler):
        smc = abc.ABCSMC(models, priors, population_size=300, seed=2, sampler=sampler)
        smc.new(f"sqlite:///{tmp_path}/{id(sampler)}.db", demo.OBSERVED)
        return smc.run(max_nr_populations=4)

    assert_histories_equal(run(MulticoreEvalParallelSampler(n_procs=2)),
                           run(SingleCoreSampler()))


# -- stopping rules ---------------------------------------------------------------

def quick_run(tmp_path, models=gaussian_model, priors=None, eps=None, **run_kwargs):
    smc = abc.ABCSMC(models, priors or gaussian_prior(), population_size=100, seed=4,
                     sampler=SingleCoreSampler(), eps=eps)
    smc.new(f"sqlite:///{tmp_path}/stop.db", {"y": 1.0})
    return smc.run(**run_kwargs)


def test_stop_max_nr_populations(tmp_path, caplog):
    with caplog.at_level("INFO", logger="dask_abc"):
        history = quick_run(tmp_path, max_nr_populations=3)
    assert history.n_populations == 3
    assert history.stop_reason.startswith("maximum number of generations")
    assert "stopped: maximum number of generations" in caplog.text


def test_stop_minimum_epsilon(tmp_path):
    history = quick_run(tmp_path, minimum_epsilon=0.5)
    eps = history.get_all_populations().set_index("t")["epsilon"]
    assert eps[history.max_t] <= 0.5 < eps[history.max_t - 1]
    assert history.stop_reason.startswith("epsilon")


def test_stop_min_eps_diff(tmp_path):
    history = quick_run(tmp_path, eps=abc.ListEpsilon([3, 2, 1.9, 1.8]), min_eps_diff=0.5)
    assert history.n_populations == 3
    assert "min_eps_diff" in history.stop_reason


def test_list_epsilon_ends_the_run(tmp_path):
    history = quick_run(tmp_path, eps=abc.ListEpsilon([3, 2]))
    assert history.n_populations == 2
    assert history.stop_reason == "all 2 epsilon values of ListEpsilon used"
    populations = history.get_all_populations()
    assert populations["t"].tolist() == [0, 1]  # no calibration sample needed
    assert populations["epsilon"].tolist() == [3, 2]


def far_model(parameter):
    return {"y": 100.0 + parameter["theta"]}


def test_stop_single_model_alive(tmp_path):
    smc = abc.ABCSMC([far_model, gaussian_model], [gaussian_prior(), gaussian_prior()],
                     population_size=100, seed=4, sampler=SingleCoreSampler(),
                     stop_if_only_single_model_alive=True)
    smc.new(f"sqlite:///{tmp_path}/single.db", {"y": 1.0})
    history = smc.run(max_nr_populations=5)
    assert history.stop_reason == "only a single model alive"
    assert history.alive_models() == [1]
    # it stops at the first generation with one model left
    assert len(history.alive_models(history.max_t - 1)) == 2


def test_stop_min_acceptance_rate_ends_a_generation_early(tmp_path):
    history = quick_run(tmp_path, eps=abc.ListEpsilon([5, 0.001]), min_acceptance_rate=0.2)
    assert history.n_populations == 1  # generation 1 needed more than 100 / 0.2 evaluations
    assert history.stop_reason.startswith("acceptance rate below 0.2")
    assert "500 evaluations" in history.stop_reason


def test_stop_max_total_nr_simulations(tmp_path):
    history = quick_run(tmp_path, max_total_nr_simulations=600)
    assert history.total_nr_simulations >= 600
    populations = history.get_all_populations()
    assert populations["samples"].iloc[:-1].sum() < 600
    assert "max_total_nr_simulations" in history.stop_reason


def test_stop_max_walltime(tmp_path):
    history = quick_run(tmp_path, max_walltime=datetime.timedelta(0))
    assert history.n_populations == 1
    assert "max_walltime" in history.stop_reason


# -- load and continue ----------------------------------------------------------------

def adaptive_setup(sampler=None):
    def model(p):
        return {"a": p["theta"] + np.random.normal(), "b": 10 * p["theta"] + np.random.normal()}

    return abc.ABCSMC(model, gaussian_prior(), abc.AdaptivePNormDistance(p=2),
                      population_size=150, sampler=sampler or SingleCoreSampler(), seed=8)


def test_load_continues_identically(tmp_path):
    straight = adaptive_setup()
    straight.new(f"sqlite:///{tmp_path}/straight.db", {"a": 1.0, "b": 10.0})
    reference = straight.run(max_nr_populations=4)

    db = f"sqlite:///{tmp_path}/split.db"
    first = adaptive_setup()
    first.new(db, {"a": 1.0, "b": 10.0})
    first.run(max_nr_populations=2)
    first.history.close()

    second = adaptive_setup()
    second.seed = None  # the stored seed is used
    history = second.load(db, 1)
    assert history.max_t == 1
    # epsilon is not lost on load: the stored ones, and the next one as the straight run's
    info = reference.get_all_populations().set_index("t")["epsilon"]
    assert [second.eps(t) for t in range(3)] == [info[t] for t in range(3)]
    history = second.run(max_nr_populations=2)  # counted from the resume point
    assert history.n_populations == 4
    assert_histories_equal(history, reference)


def test_load_with_another_seed_is_refused(tmp_path):
    db = f"sqlite:///{tmp_path}/seed.db"
    smc = adaptive_setup()
    smc.new(db, {"a": 1.0, "b": 10.0})
    smc.run(max_nr_populations=1)
    other = adaptive_setup()
    other.seed = 9
    with pytest.raises(ValueError, match="seed 8"):
        other.load(db, 1)


def test_run_with_progress_shows_a_bar_per_generation(tmp_path, capsys):
    smc = adaptive_setup()
    smc.new(f"sqlite:///{tmp_path}/p.db", {"a": 1.0, "b": 10.0})
    history = smc.run(max_nr_populations=3, progress=True)
    err = capsys.readouterr().err
    bars = [line for line in err.replace("\r", "\n").splitlines() if "150/150" in line]
    for t, eps in enumerate(history.get_generation_info()["epsilon"]):
        assert any(line.startswith(f"t={t}") and f"eps={eps:.4g}" in line for line in bars), t
    assert any(line.startswith("calibration") for line in bars)
    history.close()


class Recorder(abc.GenerationObserver):
    """Writes down every hook call of a run."""

    def __init__(self):
        self.calls = []
        self.evaluations = {}

    def on_start(self, t, n, epsilon, restored=()):
        self.calls.append(("start", t))
        self.evaluations[t] = sum(b.n_evaluated for b in restored)

    def on_batch(self, batch):
        self.evaluations[self.calls[-1][1]] += batch.n_evaluated

    def on_sampled(self, sample):
        self.calls.append(("sampled", self.calls[-1][1]))

    def on_end(self, outcome):
        self.calls.append(("end", outcome.t, outcome.failed, outcome.population is not None))
        self.outcome = outcome

    def close(self):
        self.calls.append(("close",))


def test_a_users_observers_hear_every_generation_in_order(tmp_path):
    smc = abc.ABCSMC(gaussian_model, gaussian_prior(), population_size=200,
                     sampler=MulticoreEvalParallelSampler(n_procs=2), seed=SEED)
    recorder = Recorder()
    smc.observers.append(recorder)
    history = smc.new("sqlite:///" + str(tmp_path / "o.db"), {"y": 1.0})
    smc.run(max_nr_populations=2)
    assert recorder.calls == [
        ("start", -1), ("sampled", -1), ("end", -1, False, False),
        ("start", 0), ("sampled", 0), ("end", 0, False, True),
        ("start", 1), ("sampled", 1), ("end", 1, False, True), ("close",)]
    populations = history.get_all_populations().set_index("t")
    assert recorder.evaluations[1] >= populations.loc[1, "samples"]
    outcome = recorder.outcome
    assert outcome.epsilon == populations.loc[1, "epsilon"]
    values, weights = outcome.marginals()["gaussian_model: theta"]
    df, _ = history.get_distribution(0, 1)
    assert np.array_equal(np.sort(values), np.sort(df.iloc[:, 0].to_numpy()))
    assert np.isclose(weights.sum(), 1.0)


def test_observers_hear_a_failed_generation_and_are_closed(tmp_path):
    def failing(p):
        if failing.calls > 300:
            raise RuntimeError("the simulator broke")
        failing.calls += 1
        return gaussian_model(p)

    failing.calls = 0
    smc = abc.ABCSMC(failing, gaussian_prior(), population_size=100,
                     sampler=SingleCoreSampler(), seed=SEED)
    recorder = Recorder()
    smc.observers.append(recorder)
    smc.new("sqlite:///" + str(tmp_path / "f.db"), {"y": 1.0})
    with pytest.raises(Exception, match="the simulator broke"):
        smc.run(max_nr_populations=3)
    assert recorder.calls[-2][2] is True  # the last generation's outcome: failed
    assert recorder.calls[-1] == ("close",)
