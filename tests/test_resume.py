"""Loss-free checkpoints: a master killed with SIGKILL at any instant resumes to the
History of an uninterrupted run, repeating only simulations that were in flight."""

from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import psutil
import pytest
import resume_models
from distributed import Client, LocalCluster
from helpers import assert_histories_equal

import dask_abc as abc
import dask_abc.config
from dask_abc.generation import BatchResult
from dask_abc.inference import SetupChangedError
from dask_abc.sample import SampleCollector
from dask_abc.sampler import SingleCoreSampler
from dask_abc.storage import History, RunLockedError
from dask_abc.sumstat import SumStatLayout

HERE = Path(__file__).parent
KILLS = 20


def run_master(db, simlog, sampler, scheduler=None, kill=None, timeout=180):
    """One attempt of the master (tests/resume_master.py); returns the finished process."""
    cmd = [sys.executable, str(HERE / "resume_master.py"), str(db), str(simlog), sampler]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    if kill:
        cmd += ["--kill", kill[0], f"{kill[1]:.4f}", str(kill[2])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get(
        "PYTHONPATH", "")])}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def run_seconds(proc) -> float:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RUN-SECONDS")][-1]
    return float(line.split()[1])


def no_process_left(db, wait: float = 5.0) -> bool:
    """Whether every process of a killed master (its forked workers too) is gone."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        left = []
        for p in psutil.process_iter(["cmdline"]):
            if str(db) in (p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        if not left:
            return True
        time.sleep(0.1)
    return False


def integrity_check(db) -> str:
    """``sqlite3 DB "PRAGMA integrity_check"`` with the sqlite3 command-line shell."""
    shell = shutil.which("sqlite3")
    assert shell, "the sqlite3 command-line shell is missing (ci/test.sh installs it)"
    return subprocess.run([shell, str(db), "PRAGMA integrity_check"], capture_output=True,
                          text=True, check=True).stdout.strip()


def simulations(simlog) -> collections.Counter:
    with open(simlog) as f:
        return collections.Counter(f.read().splitlines())


def committed_state(db) -> tuple[int, bool, list]:
    """After a kill: the last complete generation, whether calibration is stored, and the
    streamed ranges of the next one. Asserts that no generation is half written."""
    with History(f"sqlite:///{db}", create=False) as h:
        max_t = h.max_t
        for t in range(max_t + 1):
            pop = h.get_population_arrays(t)
            assert len(pop["index"]) == resume_models.POPULATION
            assert len(pop["theta"]) == len(pop["sum_stats"]) == resume_models.POPULATION
            assert abs(pop["weight"].sum() - 1) < 1e-9
        calibrated = h.get_calibration_arrays() is not None
        ranges = h.get_partial_info(max_t + 1 if calibrated else -1)["ranges"]
        for (_, stop), (start, _) in zip(ranges, ranges[1:]):
            assert stop < start  # merged, disjoint, sorted
    return max_t, calibrated, ranges


def in_flight(dump, db) -> tuple[set, int, int]:
    """What the killed master had handed out but not made durable: the simulations'
    keys, the number of ranges, and the number of evaluations."""
    with open(dump) as f:
        record = json.load(f)
    max_t, calibrated, ranges = committed_state(db)
    t = record["t"]
    durable_generation = t is None or 0 <= t <= max_t or (t == -1 and calibrated)
    keys, n_ranges, n_evals, k = set(), 0, 0, 0
    for start, count in record["claimed"]:
        lost = [i for i in range(start, start + count)
                if not durable_generation and not any(a <= i < b for a, b in ranges)]
        keys.update(record["parameters"][k + i - start] for i in lost)
        n_ranges += bool(lost)
        n_evals += len(lost)
        k += count
    return keys, n_ranges, n_evals


class KillPlan:
    """20 kills of one run: the first during calibration, 3 inside a generation's commit,
    4 inside a checkpoint (or other) write, the rest at random instants. Each delay is
    a random share of the time the run still needs, so the kills spread over the whole
    run and the run is not finished before the last."""

    MODES = {2: "commit", 6: "commit", 10: "commit", 4: "write", 8: "write", 12: "write",
             16: "write"}

    def __init__(self, seconds: float, samples_per_generation: float, seed: int):
        self.seconds, self.per_generation = seconds, samples_per_generation
        self.rng = np.random.default_rng(seed)

    def next(self, k: int, db) -> tuple[str, float]:
        if k == 0:
            return "calibration", float(self.rng.uniform(0, 0.1))
        max_t, _, ranges = committed_state(db)
        partial = sum(b - a for a, b in ranges) / self.per_generation
        remaining = max(1 - (max_t + 1 + min(partial, 1)) / resume_models.GENERATIONS, 0.02)
        share = self.seconds * remaining / (KILLS - k + 1)
        return self.MODES.get(k, "time"), float(self.rng.uniform(0.5, 1.5)) * share


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run with the SingleCoreSampler."""
    folder = tmp_path_factory.mktemp("reference")
    proc = run_master(folder / "run.db", folder / "sims.log", "single")
    return folder / "run.db", run_seconds(proc), simulations(folder / "sims.log")


@pytest.mark.parametrize("sampler", ["single", "multicore", "dask"])
def test_killed_master_resumes_to_the_uninterrupted_history(sampler, reference, cluster,
                                                              tmp_path):
    ref_db, ref_seconds, ref_sims = reference
    scheduler = cluster.scheduler_address if sampler == "dask" else None
    # this sampler's uninterrupted run: its duration and simulation count
    proc = run_master(tmp_path / "plain.db", tmp_path / "plain.log", sampler, scheduler)
    seconds, plain_sims = run_seconds(proc), simulations(tmp_path / "plain.log")

    db, simlog = tmp_path / "run.db", tmp_path / "sims.log"
    lost_keys, lost_ranges, lost_evals = [], 0, 0
    kills = 0
    with History(f"sqlite:///{tmp_path / 'plain.db'}", create=False) as plain:
        per_generation = plain.get_generation_info()["samples"].mean()
    plan = KillPlan(seconds, per_generation, seed=k_seed(sampler))
    for k in range(KILLS):
        mode, delay = plan.next(k, db)
        dump = tmp_path / f"dump{k}.json"
        proc = run_master(db, simlog, sampler, scheduler, kill=(mode, delay, dump))
        if proc.returncode == 0:
            break  # the run finished before this kill
        assert proc.returncode == -9, proc.stdout + proc.stderr
        assert no_process_left(db)
        kills += 1
        assert integrity_check(db) == "ok"
        keys, n_ranges, n_evals = in_flight(dump, db)
        lost_keys.append(keys)
        lost_ranges += n_ranges
        lost_evals += n_evals
    else:
        run_seconds(run_master(db, simlog, sampler, scheduler))
    assert kills == KILLS
    assert integrity_check(db) == "ok"

    with History(f"sqlite:///{db}", create=False) as resumed, \
            History(f"sqlite:///{ref_db}", create=False) as ref, \
            History(f"sqlite:///{tmp_path / 'plain.db'}", create=False) as plain:
        assert resumed.n_populations == resume_models.GENERATIONS
        assert_histories_equal(resumed, ref)
        assert_histories_equal(plain, ref)

    # only simulations in flight at a kill ran more than once, each at most once per kill
    sims = simulations(simlog)
    for key, count in sims.items():
        if count > 1:
            assert count - 1 <= sum(key in keys for keys in lost_keys), key
    repeated = sum(sims.values()) - len(sims)
    assert repeated <= lost_evals
    # every simulation the uninterrupted single-core run needed was run
    assert set(ref_sims) <= set(sims)
    excess = sum(sims.values()) - sum(plain_sims.values())
    print(f"{sampler}: {kills} kills; simulations {sum(sims.values())} interrupted vs "
          f"{sum(plain_sims.values())} uninterrupted (+{excess}); repeated {repeated}; in "
          f"flight at the kills {lost_evals} evaluations in {lost_ranges} ranges")
    if sampler == "single":  # no excess at all: exactly the repeats
        assert sims.keys() == ref_sims.keys()
        assert excess == repeated


def k_seed(sampler: str) -> int:
    return {"single": 1, "multicore": 2, "dask": 3}[sampler]


@pytest.mark.parametrize("sampler", ["multicore", "concurrent"])
def test_worker_processes_end_with_a_killed_master(sampler, reference, tmp_path):
    db, simlog = tmp_path / "run.db", tmp_path / "sims.log"
    proc = run_master(db, simlog, sampler, kill=("time", 1.0, tmp_path / "dump.json"))
    assert proc.returncode == -9
    assert no_process_left(db)
    proc = run_master(db, simlog, sampler)  # and the run resumes
    run_seconds(proc)
    with History(f"sqlite:///{db}", create=False) as resumed, \
            History(f"sqlite:///{reference[0]}", create=False) as ref:
        assert_histories_equal(resumed, ref)


def test_dask_abc_resume_finishes_a_killed_run(reference, cluster, tmp_path):
    ref_db = reference[0]
    db, simlog = tmp_path / "run.db", tmp_path / "sims.log"
    proc = run_master(db, simlog, "single", kill=("time", 0.8, tmp_path / "dump.json"))
    assert proc.returncode == -9
    with History(f"sqlite:///{db}", create=False) as h:
        assert h.n_populations < resume_models.GENERATIONS
    env = {**os.environ, "RESUME_SIMLOG": str(simlog)}  # for the model; nothing imports it
    with Client(cluster.scheduler_address) as client:
        client.run(resume_models.log_simulations_to, str(simlog))
    proc = subprocess.run(
        ["dask-abc", "resume", str(db), "--abc-id", "1", "--scheduler",
         cluster.scheduler_address], capture_output=True, text=True, timeout=180, env=env,
        cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming run 1" in proc.stdout
    with History(f"sqlite:///{db}", create=False) as resumed, \
            History(f"sqlite:///{ref_db}", create=False) as ref:
        assert_histories_equal(resumed, ref)
        assert resumed.run_call is None
    # a finished run has nothing to resume
    proc = subprocess.run(["dask-abc", "resume", str(db)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "is finished" in proc.stderr


def test_a_second_master_is_refused_with_the_owner_named(tmp_path, monkeypatch):
    db, simlog = tmp_path / "run.db", tmp_path / "sims.log"
    monkeypatch.setenv("RESUME_SIMLOG", str(simlog))
    cmd = [sys.executable, str(HERE / "resume_master.py"), str(db), str(simlog), "single"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get(
        "PYTHONPATH", "")])}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the first master holds the run
            assert time.monotonic() < deadline and first.poll() is None
            if db.exists():
                with sqlite3.connect(db) as conn:
                    try:
                        if conn.execute("SELECT COUNT(*) FROM run_locks").fetchone()[0]:
                            break
                    except sqlite3.OperationalError:  # tables not created yet
                        pass
                conn.close()
            time.sleep(0.05)
        smc = resume_models.make_abcsmc(SingleCoreSampler())
        history = smc.load(f"sqlite:///{db}", 1)
        with pytest.raises(RunLockedError, match=rf"host {socket.gethostname()}, PID "
                                                 rf"{first.pid}, since"):
            smc.run(**resume_models.RUN)
        assert history.n_populations < resume_models.GENERATIONS  # nothing was done
        history.close()
    finally:
        first.kill()
        first.communicate()
    # the dead master's lock is stale: the run is taken over and finished
    smc = resume_models.make_abcsmc(SingleCoreSampler())
    smc.load(f"sqlite:///{db}", 1)
    history = smc.run(**resume_models.RUN)
    assert history.n_populations == resume_models.GENERATIONS
    history.close()


def test_lock_of_a_master_on_another_host(tmp_path, monkeypatch):
    """Another host's master counts as alive while its heartbeat is younger than
    abc.storage.lock-timeout."""
    monkeypatch.setenv("RESUME_SIMLOG", str(tmp_path / "sims.log"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    smc = resume_models.make_abcsmc(SingleCoreSampler())
    history = smc.new(db, resume_models.OBSERVED)
    for age, locked in [(10.0, True), (400.0, False)]:
        history.conn.execute("INSERT OR REPLACE INTO run_locks VALUES (1, 'elsewhere', 4242, "
                             "1.0, 'earlier', ?)", (time.time() - age,))
        if locked:
            with pytest.raises(RunLockedError, match="host elsewhere, PID 4242"):
                smc.run(max_nr_populations=1)
            assert history.lock_owner()["host"] == "elsewhere"
        else:
            assert history.lock_owner() is None
            smc.run(max_nr_populations=1)
    assert history.n_populations == 1 and history.lock_owner() is None
    history.close()


# -- the pieces ------------------------------------------------------------------------


def batch(start, n, accepted=()):
    idx = np.asarray(accepted, dtype=np.int64)
    k = len(idx)
    return BatchResult(start=start, n_evaluated=n, index=idx, model=np.zeros(k, int),
                       theta=np.ones((k, 1)), distance=np.zeros(k), weight=np.ones(k),
                       sum_stats=np.ones((k, 2)))


def test_collector_skips_restored_ranges():
    restored = [batch(0, 10, [3]), batch(20, 5, [21]), batch(25, 5), batch(40, 10, [45])]
    c = SampleCollector(n=4, max_eval=60, restored=restored)
    assert (c.prefix, c.n_accepted, c.n_restored) == (10, 1, 30)
    assert c.fit_range(0, 100) == (10, 10)  # up to the restored [20, 30)
    assert c.fit_range(20, 7) == (30, 7)  # moved past [20, 30)
    assert c.fit_range(37, 100) == (37, 3)
    assert c.fit_range(41, 5) == (50, 5)
    assert c.fit_range(58, 5) == (58, 2)  # max_eval
    assert c.fit_range(60, 5)[1] == 0
    recorded = []
    c.on_batch = recorded.append
    c.add(batch(10, 10, [12, 15]))
    c.add(batch(20, 5, [21]))  # a duplicate of a restored range: not recorded again
    assert [b.start for b in recorded] == [10]
    assert (c.prefix, c.n_accepted) == (25, 4)  # done at the 4th acceptance
    assert c.done and c.result().index.tolist() == [3, 12, 15, 21]


def test_journal_streams_merges_and_restores(tmp_path):
    path = str(tmp_path / "j.db")
    with History(path) as h:
        h.create_run(seed=1, model_names=["m"], parameter_names=[["a"]],
                     layout=SumStatLayout.from_observed({"y": 1.0, "z": 2.0}),
                     observed={"y": 1.0, "z": 2.0}, observed_flat=np.array([1.0, 2.0]))
        journal = h.journal()
        assert journal.begin(0, epsilon=0.5) == []
        for b in [batch(0, 5, [1]), batch(5, 5, [7]), batch(20, 5, [22])]:
            journal.record(b)
        journal.end()
        info = h.get_partial_info(0)
        assert info["ranges"] == [(0, 10), (20, 25)]
        assert (info["evaluations"], info["accepted"], info["prefix"]) == (15, 3, 10)
        assert h.get_partial_population(0).index.tolist() == [1, 7, 22]
        assert [(b.start, b.stop) for b in journal.begin(0, epsilon=0.5)] == [(0, 10), (20, 25)]
        journal.record(batch(10, 10))
        journal.end()  # what is queued is written
        assert h.get_partial_info(0)["ranges"] == [(0, 25)]
        assert journal.begin(0, epsilon=0.25) == []  # evaluated with another epsilon
        journal.close()
        assert h.journal() is not None
    with History("sqlite://") as memory:
        assert memory.journal() is None


def test_a_version_1_database_is_migrated(tmp_path, monkeypatch):
    db = tmp_path / "v1.db"
    smc = resume_models.make_abcsmc(SingleCoreSampler())
    monkeypatch.setenv("RESUME_SIMLOG", str(tmp_path / "sims.log"))
    smc.new(f"sqlite:///{db}", resume_models.OBSERVED)
    smc.run(max_nr_populations=1).close()
    conn = sqlite3.connect(db)
    conn.executescript("DROP TABLE partial_batches; DROP TABLE run_locks; "
                       "UPDATE dask_abc_meta SET value='1' WHERE key='schema_version';")
    for column in ("setup", "setup_description", "setup_hash", "run_call"):
        conn.execute(f"ALTER TABLE abc_runs DROP COLUMN {column}")
    conn.execute("ALTER TABLE populations DROP COLUMN failed_samples")  # added in version 3
    conn.close()
    smc = resume_models.make_abcsmc(SingleCoreSampler())
    smc.load(f"sqlite:///{db}", 1)  # no stored setup: not checked
    history = smc.run(max_nr_populations=1)
    assert history.n_populations == 2 and history.setup_description is None
    history.close()


def other_model(p):
    return {"y1": p["a"], "y2": p["a"] + 2 * p["b"]}


def test_a_changed_setup_is_refused_with_the_difference_named(tmp_path, monkeypatch):
    monkeypatch.setenv("RESUME_SIMLOG", str(tmp_path / "sims.log"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    smc = resume_models.make_abcsmc(SingleCoreSampler())
    smc.new(db, resume_models.OBSERVED)
    smc.run(max_nr_populations=1).close()

    changed_prior = resume_models.make_abcsmc(SingleCoreSampler())
    changed_prior.parameter_priors[0]["b"] = abc.RV("norm", 0, 3)
    with pytest.raises(SetupChangedError, match=r"parameter_priors\[0\]\['b'\]\.args\[1\]: "
                                                r"stored 2, now 3"):
        changed_prior.load(db, 1)

    # the model function edited in place: same module and name, another body
    edited = types.FunctionType(other_model.__code__, vars(resume_models), "model")
    edited.__module__, edited.__qualname__ = "resume_models", "model"
    changed_model = resume_models.make_abcsmc(SingleCoreSampler())
    changed_model.models[0].sample_function = edited
    with pytest.raises(SetupChangedError) as error:
        changed_model.load(db, 1)
    message = str(error.value)
    assert "models[0].sample_function (function resume_models.model): code changed" in message
    assert '+    return {"y1": p["a"], "y2": p["a"] + 2 * p["b"]}' in message  # the diff
    assert "ignore_setup_changes=True" in message
    assert "population_size" not in message  # only what differs
    renamed = abc.ABCSMC(other_model, resume_models.make_abcsmc(None).parameter_priors,
                         abc.AdaptivePNormDistance(p=2), population_size=150)
    with pytest.raises(SetupChangedError, match="function resume_models.model stored, "
                                                "function test_resume.other_model now"):
        renamed.load(db, 1)

    smaller = resume_models.make_abcsmc(SingleCoreSampler())
    smaller.population_size = 100
    with pytest.raises(SetupChangedError, match="population_size: stored 150, now 100"):
        smaller.load(db, 1)

    # asked to, the run continues with the new setup, which is stored from then on
    history = changed_model.load(db, 1, ignore_setup_changes=True)
    assert changed_model.run(max_nr_populations=1).n_populations == 2
    history.close()
    with pytest.raises(SetupChangedError, match="code changed"):
        resume_models.make_abcsmc(SingleCoreSampler()).load(db, 1)


class FlakyModel:
    """The model of resume_models that raises at its ``fail_at``-th call."""

    def __init__(self, fail_at: int):
        self._calls, self._fail_at = 0, fail_at

    def __call__(self, p):
        self._calls += 1
        if self._calls == self._fail_at:
            raise KeyboardInterrupt
        return resume_models.model(p)


def flaky_abcsmc(fail_at: int) -> abc.ABCSMC:
    smc = resume_models.make_abcsmc(SingleCoreSampler())
    smc.models[0].sample_function = FlakyModel(fail_at)
    return smc


def test_an_interrupted_run_keeps_what_it_computed(reference, tmp_path, monkeypatch, caplog):
    """Ctrl-C (or a model error) mid-generation: the returned ranges are flushed to the
    database, shown by the partial reads, and not evaluated again by the resume."""
    monkeypatch.setenv("RESUME_SIMLOG", str(tmp_path / "sims.log"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    ref_db, _, ref_sims = reference
    fail_at = sum(ref_sims.values()) // 2
    smc = flaky_abcsmc(fail_at)
    history = smc.new(db, resume_models.OBSERVED)
    with pytest.raises(KeyboardInterrupt):
        smc.run(**resume_models.RUN)
    assert history.stop_reason.startswith("failed: KeyboardInterrupt")
    info = history.get_partial_info()
    assert info["t"] == history.max_t + 1 and info["evaluations"] > 0
    partial = history.get_partial_population()
    assert len(partial) == info["accepted"] and set(partial.columns) >= {"m", "w", "par_a"}
    history.close()

    smc = flaky_abcsmc(0)
    with caplog.at_level("INFO", logger="dask_abc"):
        smc.load(db, 1)
        history = smc.run(**resume_models.RUN)
    assert f"resuming with {info['evaluations']} evaluations" in caplog.text
    assert "continuing the interrupted run() call" in caplog.text
    with History(f"sqlite:///{ref_db}", create=False) as ref:
        assert_histories_equal(history, ref)
    sims = simulations(tmp_path / "sims.log")
    assert sims.keys() == ref_sims.keys()
    repeated = sum(sims.values()) - len(sims)  # the chunk interrupted mid-way
    assert 0 < repeated <= int(dask_abc.config.get("single-core.chunk"))
    assert history.get_partial_info()["evaluations"] == 0  # committed: nothing partial
    history.close()


def test_from_history_rebuilds_the_run_from_its_stored_setup(reference, tmp_path, monkeypatch):
    """ABCSMC.from_history (what `dask-abc resume` does): the setup stored with an
    interrupted run, alone, finishes it to the uninterrupted History."""
    monkeypatch.setenv("RESUME_SIMLOG", str(tmp_path / "sims.log"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    ref_db, _, ref_sims = reference
    smc = flaky_abcsmc(sum(ref_sims.values()) // 2)
    smc.new(db, resume_models.OBSERVED)
    with pytest.raises(KeyboardInterrupt):
        smc.run(**resume_models.RUN)
    smc.history.close()

    sampler = SingleCoreSampler()
    smc = abc.ABCSMC.from_history(db, 1, sampler=sampler)
    assert smc.sampler is sampler and smc.seed == resume_models.SEED
    # as stored, not the flaky one; by name: resume_master pickles the module by value
    stored = smc.models[0].sample_function
    assert not isinstance(stored, FlakyModel)
    assert (stored.__module__, stored.__qualname__) == ("resume_models", "model")
    assert smc.history.max_t < resume_models.GENERATIONS - 1
    history = smc.run(**resume_models.RUN)
    with History(f"sqlite:///{ref_db}", create=False) as ref:
        assert_histories_equal(history, ref)
    history.close()
    with pytest.raises(abc.DatabaseError, match=r"no run with abc_id=2"):
        abc.ABCSMC.from_history(db, 2)
