"""Failing simulations as a policy: ``ABCSMC(model_errors="raise" | "reject")``."""

from __future__ import annotations

import concurrent.futures as cf
import io
import logging
import pickle
import re
import sqlite3
import subprocess

import numpy as np
import pytest
import test_broker
from distributed import Client, LocalCluster
from helpers import assert_histories_equal

import dask_abc as abc
from dask_abc.broker import BrokerState
from dask_abc.generation import BatchResult
from dask_abc.inference import SetupChangedError
from dask_abc.progress import GenerationProgress
from dask_abc.sample import SampleCollector
from dask_abc.sampler import (
    ConcurrentFutureSampler,
    DaskDistributedSampler,
    MappingSampler,
    MulticoreEvalParallelSampler,
    MulticoreParticleParallelSampler,
    SingleCoreSampler,
)
from dask_abc.storage import journal

# the real backends and dask-abc-worker processes of test_broker
redis_server = test_broker.redis_server
dask_backend = test_broker.dask_backend
backend = test_broker.backend

N = 100
GENERATIONS = 4
OBSERVED = {"y": -3.0}


def diverges_below_minus_4(parameter, rng):
    """y ~ N(theta, 1); the "solver" diverges for theta < -4 (about 9 % of the prior, and
    the posterior sits at the edge, so every generation has failures)."""
    if parameter["theta"] < -4:
        raise FloatingPointError(f"solver diverged at theta={parameter['theta']:.3f}")
    return {"y": parameter["theta"] + rng.normal()}


@abc.vectorized
def diverges_below_minus_4_batch(parameters, rng):
    theta = parameters["theta"]
    if np.any(theta < -4):
        raise FloatingPointError(f"solver diverged at theta={theta[theta < -4][0]:.3f}")
    return {"y": theta + rng.normal()}


def always_fails(parameter):
    raise RuntimeError("this simulator is broken")


def smc_for(sampler, tmp_path, model=diverges_below_minus_4, name="run", **kwargs):
    smc = abc.ABCSMC(model, abc.Distribution(theta=abc.RV("norm", 0, 3)),
                     abc.AdaptivePNormDistance(p=2), population_size=N, sampler=sampler,
                     seed=11, **kwargs)
    smc.new(f"sqlite:///{tmp_path / name}.db", OBSERVED)
    return smc


def rejecting_run(sampler, tmp_path, model=diverges_below_minus_4, name="run"):
    return smc_for(sampler, tmp_path, model, name, model_errors="reject").run(
        max_nr_populations=GENERATIONS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return rejecting_run(SingleCoreSampler(), tmp_path_factory.mktemp("reference"))


def test_failures_are_counted_per_generation(reference):
    failed = reference.get_all_populations().set_index("t")["failed_samples"]
    assert failed.index.tolist() == [-1, 0, 1, 2, 3]
    assert (failed > 0).all(), failed  # the calibration and every generation
    # failures are among the evaluations a generation counts, so fewer than them
    samples = reference.get_all_populations().set_index("t")["samples"]
    assert (failed < samples).all()
    df, w = reference.get_distribution(0, reference.max_t)
    assert (df["theta"] >= -4).all()  # no failed parameter was accepted


@pytest.mark.parametrize("make_sampler", [
    lambda: MulticoreEvalParallelSampler(n_procs=2),
    lambda: MulticoreParticleParallelSampler(n_procs=2),
    lambda: MappingSampler(map),
], ids=["multicore-eval", "multicore-particle", "mapping"])
def test_local_samplers_reject_the_same_evaluations(make_sampler, reference, tmp_path):
    assert_histories_equal(rejecting_run(make_sampler(), tmp_path), reference)


def test_concurrent_future_sampler_rejects_the_same_evaluations(reference, tmp_path):
    with cf.ThreadPoolExecutor(2) as executor:
        history = rejecting_run(ConcurrentFutureSampler(executor, batch_size=7), tmp_path)
    assert_histories_equal(history, reference)


@pytest.mark.parametrize("batch_size", ["auto", 3])
def test_dask_rejects_the_same_evaluations(batch_size, reference, tmp_path):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        history = rejecting_run(DaskDistributedSampler(client, batch_size=batch_size),
                                tmp_path)
    assert_histories_equal(history, reference)


def test_standalone_workers_reject_the_same_evaluations(backend, reference, tmp_path):
    """Actor and Redis coordinators with two ``dask-abc-worker`` processes: one with
    pyABC's ``--catch`` (agrees with the run), one with ``--catch false`` (warns)."""
    workers = test_broker.Workers(backend["connection"], tmp_path)
    agrees = workers.start("--runtime", "10m", "--catch")
    disagrees = workers.start("--runtime", "10m", "--catch", "false")
    try:
        history = rejecting_run(backend["sampler"](), tmp_path)
    finally:
        codes = workers.stop_all()
    assert_histories_equal(history, reference)
    assert codes == [0, 0]
    assert "--catch" not in workers.log(agrees)
    log = workers.log(disagrees)
    assert log.count("--catch False, but the run has model_errors='reject', which decides: "
                     "failing simulations are rejected") == 1, log
    assert "failed)" in workers.log(agrees) + log  # the per-generation tally


def test_the_coordinator_counts_failures_for_manager_info():
    state = BrokerState()
    state.acquire("m", 10)
    state.start_generation("g", 0, 10, b"spec")
    state.add_ranges("g", [(0, 5), (5, 5)])
    state.register("w", {})
    ranges = state.claim_many("w", "g", 2)
    state.push_many("w", "g", [(s, c, 1, 2, b"r") for s, c in ranges])
    assert state.status()["failures"] == 4
    assert "4 failed)" in test_broker._info_line(state.status()).splitlines()[0]


def test_a_vectorised_model_rejects_the_rows_that_fail_alone(tmp_path):
    """A batch call that raises is repeated row by row: the rows rejected, and so the
    History, do not depend on the batches."""
    histories = [rejecting_run(SingleCoreSampler(), tmp_path, diverges_below_minus_4_batch,
                               "single")]
    with cf.ThreadPoolExecutor(2) as executor:
        for batch_size in (1, 5, 64):
            histories.append(rejecting_run(ConcurrentFutureSampler(executor,
                                                                   batch_size=batch_size),
                                           tmp_path, diverges_below_minus_4_batch,
                                           f"batch-{batch_size}"))
    for history in histories[1:]:
        assert_histories_equal(history, histories[0])
    assert (histories[0].get_all_populations()["failed_samples"] > 0).all()


def test_failed_counts_do_not_depend_on_the_ranges(tmp_path):
    """The collector's failed_samples, from one range or from pieces in any order (as
    from a checkpoint), are the failures among the generation's first n_evaluations."""
    smc = smc_for(SingleCoreSampler(), tmp_path, model_errors="reject")
    spec = smc._spec(-1, np.inf, None, True)
    whole = spec.evaluate(0, 400)
    pieces = [spec.evaluate(s, c) for s, c in [(150, 250), (0, 37), (37, 113)]]
    one, several = SampleCollector(N), SampleCollector(N, restored=pieces[:1])
    one.add(whole)
    for piece in pieces[1:]:
        several.add(piece)
    a, b = one.result(), several.result()
    assert a.failed_samples == b.failed_samples == np.count_nonzero(
        whole.failed < a.n_evaluations) > 0
    assert [e.index for e in a.first_failures] == [e.index for e in b.first_failures] \
        == whole.failed[:3].tolist()
    # statistics recorded for adaptive distances: those of the evaluations that succeeded
    assert np.array_equal(a.all_sum_stats, b.all_sum_stats)
    assert len(a.all_sum_stats) == a.n_evaluations - a.failed_samples
    assert not np.isnan(a.all_sum_stats).any() and np.isnan(whole.all_sum_stats).any()


def test_the_default_raises_naming_the_model_and_parameter(tmp_path):
    smc = smc_for(SingleCoreSampler(), tmp_path)  # model_errors="raise"
    with pytest.raises(abc.ModelError, match=r"model 'diverges_below_minus_4' failed .* "
                                             r"parameter \{'theta': -[\d.]+\}") as info:
        smc.run(max_nr_populations=2)
    assert info.value.parameter["theta"] < -4
    assert "solver diverged" in str(info.value)


def test_an_unknown_setting_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"model_errors must be one of 'raise', 'reject', "
                                         r"got 'ignore'"):
        abc.ABCSMC(diverges_below_minus_4, abc.Distribution(theta=abc.RV("norm", 0, 1)),
                   model_errors="ignore")


def test_a_model_that_always_fails_stops_with_all_evaluations_failed(tmp_path):
    smc = smc_for(SingleCoreSampler(), tmp_path, always_fails, model_errors="reject")
    with pytest.raises(abc.AllEvaluationsFailed,
                       match=r"all of the first 100 evaluations of the calibration sample "
                             r"failed: model 'always_fails' raises for every parameter tried, "
                             r"e.g. at evaluation 0 with parameter \{'theta': .*\}:\n"
                             r"RuntimeError: this simulator is broken\nCheck the model"):
        smc.run(max_nr_populations=2)
    assert issubclass(abc.AllEvaluationsFailed, abc.ModelError)


BROKEN = {"from": None}  # the generation from which breaks_later fails


def breaks_later(parameter):
    if BROKEN["from"] is not None:
        raise RuntimeError("the simulator's licence expired")
    return {"y": parameter["theta"] + np.random.normal()}


class BreakAfter(abc.GenerationObserver):
    def on_end(self, outcome):
        if outcome.t == 0:
            BROKEN["from"] = 1


def test_completed_generations_stay_when_a_later_one_all_fails(tmp_path):
    smc = smc_for(SingleCoreSampler(), tmp_path, breaks_later, model_errors="reject")
    smc.observers.append(BreakAfter())
    try:
        with pytest.raises(abc.AllEvaluationsFailed, match="of generation 1 failed"):
            smc.run(max_nr_populations=3)
    finally:
        BROKEN["from"] = None
    with abc.History(f"sqlite:///{tmp_path}/run.db", create=False) as history:
        assert history.n_populations == 1
        assert history.stop_reason.startswith("failed: AllEvaluationsFailed")


def test_the_first_failures_are_logged_per_generation(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dask_abc"):
        history = rejecting_run(SingleCoreSampler(), tmp_path)
    failed = history.get_all_populations().set_index("t")["failed_samples"]
    samples = history.get_all_populations().set_index("t")["samples"]
    messages = [r.getMessage() for r in caplog.records if "failed and were rejected" in r.message]
    assert len(messages) == len(failed)  # one per generation, the calibration's too
    assert messages[1].startswith(f"t=0: {failed[0]} of {samples[0]} evaluations failed")
    for message, count in zip(messages, failed):
        lines = message.splitlines()[1:]
        assert len(lines) == min(count, 3)  # the first three, not all
        for line in lines:
            assert re.fullmatch(r"  evaluation \d+: model 'diverges_below_minus_4' with "
                                r"parameter \{'theta': -[\d.]+\}: FloatingPointError: "
                                r"solver diverged at theta=-[\d.]+", line), line


def test_the_progress_bar_shows_failures():
    out = io.StringIO()
    bars = GenerationProgress(file=out)
    bars.on_start(0, 10, epsilon=1.0)
    z = np.zeros(0)
    bars.on_batch(BatchResult(start=0, n_evaluated=8, index=z.astype(int), model=z.astype(int),
                              theta=z.reshape(0, 1), distance=z, weight=z,
                              sum_stats=z.reshape(0, 1), failed=np.array([2, 5])))
    bars.close()
    assert "8 evaluations, 2 failed" in out.getvalue()


def test_checkpoints_written_before_failures_were_recorded_still_load():
    z = np.zeros(0)
    old = BatchResult(start=0, n_evaluated=5, index=z.astype(int), model=z.astype(int),
                      theta=z.reshape(0, 1), distance=z, weight=z, sum_stats=z.reshape(0, 1))
    del old.__dict__["failed"], old.__dict__["first_failures"]  # as pickled back then
    restored = journal.decode(pickle.dumps(old))
    assert restored.n_failed == 0 and restored.first_failures == ()
    assert BatchResult.concat([restored, restored]).n_failed == 0


def test_a_version_2_database_is_migrated(tmp_path):
    smc = smc_for(SingleCoreSampler(), tmp_path, model_errors="reject")
    smc.run(max_nr_populations=1).close()
    conn = sqlite3.connect(tmp_path / "run.db")
    conn.executescript("ALTER TABLE populations DROP COLUMN failed_samples; "
                       "UPDATE dask_abc_meta SET value='2' WHERE key='schema_version';")
    conn.close()
    with abc.History(f"sqlite:///{tmp_path}/run.db", create=False) as history:
        # before version 3 a failure stopped the run: none in a stored generation
        assert history.get_all_populations()["failed_samples"].tolist() == [0, 0]
        version = history.conn.execute("SELECT value FROM dask_abc_meta").fetchone()[0]
        assert version == "3"


def test_a_resumed_rejecting_run_is_the_uninterrupted_one(reference, tmp_path):
    smc = smc_for(SingleCoreSampler(), tmp_path, model_errors="reject")
    smc.run(max_nr_populations=1).close()
    again = abc.ABCSMC.from_history(f"sqlite:///{tmp_path}/run.db", sampler=SingleCoreSampler())
    assert again.model_errors == "reject"
    assert_histories_equal(again.run(max_nr_populations=GENERATIONS - 1), reference)


def test_the_worker_cli_accepts_catch():
    out = subprocess.run(["dask-abc-worker", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert "--catch [BOOL]" in out.stdout and "model_errors" in out.stdout
    bad = subprocess.run(["dask-abc-worker", "--catch", "maybe"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "not true or false: 'maybe'" in bad.stderr


def test_loading_a_rejecting_run_with_another_setting_is_a_setup_change(tmp_path):
    smc_for(SingleCoreSampler(), tmp_path, model_errors="reject").run(
        max_nr_populations=1).close()
    raising = abc.ABCSMC(diverges_below_minus_4, abc.Distribution(theta=abc.RV("norm", 0, 3)),
                         abc.AdaptivePNormDistance(p=2), population_size=N,
                         sampler=SingleCoreSampler())
    with pytest.raises(SetupChangedError, match="model_errors"):
        raising.load(f"sqlite:///{tmp_path}/run.db", 1)
