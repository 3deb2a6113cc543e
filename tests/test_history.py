"""History on SQLite: database URLs, pyABC's read API, several runs, errors."""

from __future__ import annotations

import os
import pickle
import sqlite3

import numpy as np
import pandas as pd
import pytest

import dask_abc as abc
from dask_abc.sampler import SingleCoreSampler

N_POP = 150
OBSERVED = {"y": 1.0, "z": np.array([0.5, -0.5])}


def model_a(p):
    e = np.random.normal(size=3)
    return {"y": p["theta"] + e[0], "z": np.array([p["theta"] / 2, -p["theta"] / 2]) + 0.3 * e[1:]}


def model_b(p):
    e = np.random.normal(size=3)
    return {"y": p["mu"] * p["sigma"] + e[0], "z": np.array([p["mu"], p["sigma"]]) + e[1:]}


def priors():
    return [abc.Distribution(theta=abc.RV("norm", 0, 3)),
            abc.Distribution(sigma=abc.RV("uniform", 0.5, 2), mu=abc.RV("norm", 0, 2))]


def new_smc(seed=5, population_size=N_POP):
    return abc.ABCSMC([model_a, model_b], priors(), population_size=population_size,
                      sampler=SingleCoreSampler(), seed=seed)


def run(db, seed=5, generations=3):
    smc = new_smc(seed)
    smc.new(db, OBSERVED, meta_info={"who": "test"})
    return smc.run(max_nr_populations=generations)


@pytest.fixture(scope="module")
def db_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("history") / "run.db"
    run("sqlite:///" + str(path)).close()
    return path


@pytest.fixture
def history(db_file):
    h = abc.History("sqlite:///" + str(db_file))
    yield h
    h.close()


# -- URLs ------------------------------------------------------------------------------


def _write_small_run(db):
    smc = abc.ABCSMC(model_a, priors()[0], population_size=20, sampler=SingleCoreSampler(),
                     seed=1)
    smc.new(db, OBSERVED)
    h = smc.run(max_nr_populations=1)
    assert h.n_populations == 1
    return h


def test_relative_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_small_run("sqlite:///relative.db").close()
    assert (tmp_path / "relative.db").is_file()
    with abc.History("sqlite:///relative.db") as h:
        assert h.n_populations == 1
    with abc.History(str(tmp_path / "relative.db")) as h:  # the same file by plain path
        assert h.n_populations == 1


def test_absolute_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sub" / "absolute.db"
    path.parent.mkdir()
    url = "sqlite:///" + str(path)
    assert url.startswith("sqlite:////")
    _write_small_run(url).close()
    assert path.is_file()
    assert not (tmp_path / "absolute.db").exists()
    with abc.History(url) as h:
        assert h.n_populations == 1


def test_in_memory_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h = _write_small_run("sqlite://")
    assert h.n_populations == 1 and h.id == 1
    h.close()
    assert os.listdir(tmp_path) == []  # nothing written to disk
    with abc.History("sqlite://") as fresh:  # a new, empty in-memory database
        assert fresh.n_populations == 0
        assert len(fresh.all_runs()) == 0


def test_plain_path(tmp_path):
    path = tmp_path / "plain.db"
    _write_small_run(str(path)).close()
    assert path.is_file()
    with abc.History(path) as h:  # os.PathLike works too
        assert h.n_populations == 1


def test_unsupported_url(tmp_path):
    with pytest.raises(abc.DatabaseError, match="postgresql://"):
        abc.History("postgresql://user@host/db")


# -- pyABC's read API ------------------------------------------------------------------


def test_populations_table(history):
    pops = history.get_all_populations()
    assert list(pops.columns) == ["t", "population_end_time", "samples", "epsilon", "particles",
                                  "failed_samples"]
    assert pops["t"].tolist() == [-1, 0, 1, 2]
    assert pops["failed_samples"].tolist() == [0, 0, 0, 0]  # the model never raises
    assert pops["particles"].tolist() == [0, N_POP, N_POP, N_POP]
    assert np.isinf(pops["epsilon"].iloc[0])
    eps = pops["epsilon"].iloc[1:].to_numpy()
    assert np.all(np.diff(eps) < 0)  # the median threshold shrinks
    assert pops["samples"].iloc[0] == N_POP  # the calibration sample accepts everything
    assert np.all(pops["samples"].iloc[1:] >= N_POP)
    assert pd.api.types.is_datetime64_any_dtype(pops["population_end_time"])
    assert pops["population_end_time"].is_monotonic_increasing
    assert history.total_nr_simulations == int(pops["samples"].sum())
    assert history.total_nr_simulations > 4 * N_POP
    assert history.n_populations == 3
    assert history.max_t == 2
    counts = history.get_nr_particles_per_population()
    assert counts.index.tolist() == [0, 1, 2]
    assert counts.tolist() == [N_POP] * 3


@pytest.mark.parametrize("t", [0, 1, 2, None])
def test_get_distribution(history, t):
    ext = history.get_population_extended(t="last" if t is None else t)
    for m, names in enumerate([["theta"], ["mu", "sigma"]]):
        df, w = history.get_distribution(m, t)
        assert list(df.columns) == names
        assert len(df) == len(w) == int((ext["m"] == m).sum())
        assert len(df) > 0
        assert w.sum() == pytest.approx(1.0)
        assert np.all(w > 0)
        if m == 1:
            assert df["sigma"].between(0.5, 2.5).all()
        # The same particles as the extended table, weights renormalised in the model.
        sub = ext[ext["m"] == m]
        assert np.array_equal(df.index.to_numpy(), sub.index.to_numpy())
        for name in names:
            assert np.array_equal(df[name].to_numpy(), sub[f"par_{name}"].to_numpy())
        assert np.allclose(w, sub["w"] / sub["w"].sum())


def test_get_distribution_default_is_last_generation(history):
    df_last, w_last = history.get_distribution(0)
    df2, w2 = history.get_distribution(0, 2)
    assert df_last.equals(df2) and np.array_equal(w_last, w2)
    df0, _ = history.get_distribution(0, 0)
    assert not df0.equals(df2)
    with pytest.raises(abc.DatabaseError, match="t=7"):
        history.get_distribution(0, 7)


def test_model_probabilities(history):
    probs = history.get_model_probabilities()
    assert probs.index.tolist() == [0, 1, 2]
    assert probs.columns.tolist() == [0, 1]
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.to_numpy() >= 0).all()
    # Each generation's probabilities are the weight mass of its particles per model.
    for t in range(3):
        ext = history.get_population_extended(t=t)
        mass = ext.groupby("m")["w"].sum().reindex([0, 1], fill_value=0.0)
        assert np.allclose(probs.loc[t].to_numpy(), mass.to_numpy())
    one = history.get_model_probabilities(1)
    assert one.index.tolist() == [1]
    assert np.array_equal(one.to_numpy(), probs.loc[[1]].to_numpy())
    assert history.alive_models() == [m for m in (0, 1) if probs.loc[2, m] > 0]
    assert history.alive_models(0) == [0, 1]


def test_weighted_distances(history):
    eps = history.get_all_populations().set_index("t")["epsilon"]
    for t in (0, 1, 2):
        wd = history.get_weighted_distances(t)
        assert list(wd.columns) == ["distance", "w"]
        assert len(wd) == N_POP
        assert wd["w"].sum() == pytest.approx(1.0)
        assert (wd["distance"] <= eps[t]).all()  # only accepted particles
        assert (wd["distance"] >= 0).all()
    assert history.get_weighted_distances().equals(history.get_weighted_distances(2))


def test_population_extended(history):
    ext = history.get_population_extended()
    assert {"t", "m", "w", "distance", "par_theta", "par_mu", "par_sigma", "sumstat_y",
            "sumstat_z[0]", "sumstat_z[1]"} <= set(ext.columns)
    assert len(ext) == N_POP
    assert (ext["t"] == 2).all()
    assert ext["w"].sum() == pytest.approx(1.0)
    # A model's rows hold its own parameters, NaN for the others'.
    assert ext.loc[ext["m"] == 0, "par_theta"].notna().all()
    assert ext.loc[ext["m"] == 0, "par_mu"].isna().all()
    assert ext.loc[ext["m"] == 1, "par_theta"].isna().all()
    only_b = history.get_population_extended(m=1, t=1)
    assert (only_b["m"] == 1).all() and (only_b["t"] == 1).all()
    assert len(only_b) == int((history.get_population_extended(t=1)["m"] == 1).sum())


def test_weighted_sum_stats(history):
    w, stats = history.get_weighted_sum_stats(1)
    assert len(w) == len(stats) == N_POP
    assert sum(w) == pytest.approx(1.0)
    assert all(set(s) == {"y", "z"} for s in stats)
    assert all(isinstance(s["y"], float) and s["z"].shape == (2,) for s in stats)
    ext = history.get_population_extended(t=1)
    assert np.array_equal([s["y"] for s in stats], ext["sumstat_y"].to_numpy())
    assert np.array_equal([s["z"][1] for s in stats], ext["sumstat_z[1]"].to_numpy())
    # Statistics of accepted particles reproduce their distances (PNormDistance, p=2).
    flat = np.array([[s["y"], *s["z"]] for s in stats])
    x0 = np.array([1.0, 0.5, -0.5])
    assert np.allclose(np.sqrt(((flat - x0) ** 2).sum(axis=1)), ext["distance"].to_numpy())


def test_observed_and_runs(history):
    obs = history.observed_sum_stat()
    assert set(obs) == {"y", "z"}
    assert obs["y"] == 1.0 and np.array_equal(obs["z"], [0.5, -0.5])
    runs = history.all_runs()
    assert len(runs) == 1
    assert runs["id"].tolist() == [1]
    assert runs["seed"].astype(int).tolist() == [5]
    assert "maximum number of generations" in runs["stop_reason"].iloc[0]
    assert runs["end_time"].notna().all()
    assert history.id == 1
    assert history.seed == 5
    assert history.model_names == ["model_a", "model_b"]
    assert history.parameter_names == [["theta"], ["mu", "sigma"]]
    assert history.meta_info == {"who": "test"}


def test_several_runs_in_one_file(tmp_path):
    db = "sqlite:///" + str(tmp_path / "two.db")
    first = run(db, seed=1, generations=2)
    first_pops = first.get_all_populations()
    first_dist = first.get_distribution(0, 1)
    first.close()
    second = run(db, seed=2, generations=1)
    assert second.id == 2
    second.close()
    with abc.History(db) as latest:
        assert latest.id == 2
        assert latest.n_populations == 1
        assert latest.all_runs()["id"].tolist() == [1, 2]
        assert latest.all_runs()["seed"].astype(int).tolist() == [1, 2]
    with abc.History(db, abc_id=1) as h1:
        assert h1.id == 1
        assert h1.n_populations == 2
        pops = h1.get_all_populations()
        assert pops.drop(columns="population_end_time").equals(
            first_pops.drop(columns="population_end_time"))
        df, w = h1.get_distribution(0, 1)
        assert df.equals(first_dist[0]) and np.array_equal(w, first_dist[1])
        total1 = h1.total_nr_simulations
    with abc.History(db, abc_id=2) as h2:
        assert h2.total_nr_simulations != total1
        assert h2.total_nr_simulations == int(h2.get_all_populations()["samples"].sum())


# -- errors ----------------------------------------------------------------------------


def test_closed_history_raises(db_file):
    h = abc.History("sqlite:///" + str(db_file))
    h.close()
    assert h.closed
    for read in (lambda: h.n_populations, lambda: h.get_distribution(0), h.all_runs,
                 lambda: h.total_nr_simulations, h.get_model_probabilities):
        with pytest.raises(abc.DatabaseError, match="closed"):
            read()
    smc = new_smc()
    with pytest.raises(abc.DatabaseError, match="closed"):
        smc.new(h, OBSERVED)


def test_run_on_a_closed_history_raises_before_sampling(tmp_path):
    smc = new_smc()
    h = smc.new("sqlite:///" + str(tmp_path / "c.db"), OBSERVED)
    h.close()
    with pytest.raises(abc.DatabaseError, match="closed"):
        smc.run(max_nr_populations=1)


@pytest.fixture
def foreign_db(tmp_path):
    path = tmp_path / "foreign.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE measurements (x REAL)")
    conn.execute("INSERT INTO measurements VALUES (1.5)")
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def not_sqlite(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my lab notes, not a database\n" * 50)
    return path


def test_foreign_sqlite_file(foreign_db):
    url = "sqlite:///" + str(foreign_db)
    with pytest.raises(abc.DatabaseError, match=r"not a dask-abc database.*measurements"):
        abc.History(url)
    with pytest.raises(abc.DatabaseError, match="not a dask-abc database"):
        new_smc().new(url, OBSERVED)
    # The file is left as it was.
    conn = sqlite3.connect(foreign_db)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["measurements"]


def test_non_sqlite_file(not_sqlite):
    content = not_sqlite.read_bytes()
    with pytest.raises(abc.DatabaseError, match="not a SQLite database"):
        abc.History(str(not_sqlite))
    with pytest.raises(abc.DatabaseError, match="notes.db.*not a SQLite database"):
        new_smc().new("sqlite:///" + str(not_sqlite), OBSERVED)
    assert not_sqlite.read_bytes() == content


def test_pyabc_database_is_recognised(tmp_path):
    path = tmp_path / "pyabc.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE abc_smc (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(abc.DatabaseError, match="pyABC database"):
        abc.History(str(path))


def test_load_missing_abc_id_names_the_runs(tmp_path):
    db = "sqlite:///" + str(tmp_path / "ids.db")
    for seed in (1, 2):
        smc = new_smc(seed)
        smc.new(db, OBSERVED).close()
    with pytest.raises(abc.DatabaseError, match=r"abc_id=7.*\[1, 2\]"):
        new_smc().load(db, abc_id=7)
    with pytest.raises(abc.DatabaseError, match=r"abc_id=3.*\[1, 2\]"):
        abc.History(db, abc_id=3)
    with pytest.raises(abc.DatabaseError, match="does not exist"):
        new_smc().load("sqlite:///" + str(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()


def test_empty_database_has_no_run(tmp_path):
    with abc.History(str(tmp_path / "empty.db")) as h:
        assert h.n_populations == 0
        assert h.max_t == -1
        with pytest.raises(abc.DatabaseError, match="no run"):
            h.id  # noqa: B018


def test_history_cannot_be_pickled(history):
    with pytest.raises(TypeError, match="not sent to workers"):
        pickle.dumps(history)
