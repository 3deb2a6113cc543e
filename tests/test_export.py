"""dask_abc.storage.export: a run's particles to csv/parquet/feather/json/html."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import pytest

import dask_abc as abc
from dask_abc.cli import main
from dask_abc.sampler import SingleCoreSampler
from dask_abc.storage import DatabaseError, History
from dask_abc.storage.export import add_parser, export

OBSERVED = {"y": 1.0, "z": np.array([0.5, -0.5])}


def model_ab(p):
    e = np.random.normal(size=3)
    return {"y": p["a"] * p["b"] + e[0], "z": np.array([p["a"], p["b"]]) + e[1:]}


def model_theta(p):
    e = np.random.normal(size=3)
    return {"y": p["theta"] + e[0], "z": np.array([p["theta"], -p["theta"]]) / 2 + 0.3 * e[1:]}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Run 1: one model, one generation; run 2 (the latest): two models, three generations."""
    url = "sqlite:///" + str(tmp_path_factory.mktemp("export") / "runs.db")
    smc = abc.ABCSMC(model_theta, abc.Distribution(theta=abc.RV("norm", 0, 3)),
                     population_size=50, sampler=SingleCoreSampler(), seed=1)
    smc.new(url, OBSERVED)
    smc.run(max_nr_populations=1).close()
    priors = [abc.Distribution(a=abc.RV("norm", 0, 2), b=abc.RV("uniform", 0.5, 2)),
              abc.Distribution(theta=abc.RV("norm", 0, 3))]
    smc = abc.ABCSMC([model_ab, model_theta], priors, population_size=80,
                     sampler=SingleCoreSampler(), seed=2)
    smc.new(url, OBSERVED)
    smc.run(max_nr_populations=3).close()
    return url


def expected(db, t, m=None, abc_id=None):
    with abc.History(db, abc_id=abc_id) as h:
        df = h.get_population_extended(m=m, t=t).reset_index()
        names = h.model_names
    df.insert(3, "model_name", [names[m] for m in df["m"]])
    return df[["t", "id", *df.columns.drop(["t", "id"])]]


def read(path, fmt):
    reader = {"csv": pd.read_csv, "parquet": pd.read_parquet, "feather": pd.read_feather,
              "json": lambda p: pd.read_json(p, orient="records")}[fmt]
    return reader(path)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "feather", "json"])
def test_round_trip_all_generations(db, tmp_path, fmt):
    out = tmp_path / f"particles.{fmt}"
    df = export(db, out, generation="all")
    back = read(out, fmt)
    assert list(back.columns) == ["t", "id", "m", "model_name", "w", "distance", "par_a",
                                  "par_b", "par_theta", "sumstat_y", "sumstat_z[0]",
                                  "sumstat_z[1]"]
    assert sorted(back["t"].unique()) == [0, 1, 2]
    assert set(back["model_name"]) == {"model_ab", "model_theta"}
    for t in range(3):
        rows = back[back["t"] == t].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected(db, t), check_dtype=False)
        assert rows["w"].sum() == pytest.approx(1.0)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    two = back[back["m"] == 0]  # the model with two parameters has no theta, and vice versa
    assert two["par_theta"].isna().all() and two[["par_a", "par_b"]].notna().all().all()
    assert back.loc[back["m"] == 1, ["par_a", "par_b"]].isna().all().all()


def test_format_from_extension_default_csv_and_html(db, tmp_path):
    export(db, tmp_path / "p.PARQUET")
    assert len(pd.read_parquet(tmp_path / "p.PARQUET")) == 80
    export(db, tmp_path / "p.txt")
    assert len(pd.read_csv(tmp_path / "p.txt")) == 80
    df = export(db, tmp_path / "p.html")
    html = (tmp_path / "p.html").read_text()
    assert html.count("</tr>") == len(df) + 1 and "sumstat_z[1]" in html


def test_generation_filter(db, tmp_path):
    last = export(db, tmp_path / "last.csv")
    assert set(last["t"]) == {2}
    for generation in (1, "1"):
        export(db, tmp_path / "one.csv", generation=generation)
        one = pd.read_csv(tmp_path / "one.csv")
        pd.testing.assert_frame_equal(one, expected(db, 1), check_dtype=False)


def test_model_filter_keeps_population_weights(db, tmp_path):
    export(db, tmp_path / "m1.parquet", model=1, generation="all")
    df = pd.read_parquet(tmp_path / "m1.parquet")
    assert set(df["m"]) == {1} and set(df["model_name"]) == {"model_theta"}
    for t in range(3):
        rows = df[df["t"] == t].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected(db, t, m=1), check_dtype=False)
    with abc.History(db) as h:
        p1 = h.get_model_probabilities().loc[:, 1].to_numpy()
    assert df.groupby("t")["w"].sum().to_numpy() == pytest.approx(p1)


def test_id_selects_run_and_open_history(db, tmp_path):
    first = export(db, tmp_path / "run1.csv", generation="all", id=1)
    assert set(first["t"]) == {0} and set(first["model_name"]) == {"model_theta"}
    assert "par_a" not in first.columns
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run1.csv"),
                                  expected(db, 0, abc_id=1), check_dtype=False)
    with abc.History(db, abc_id=1) as h:
        df = export(h, tmp_path / "open.csv", id=1)
        assert not h.closed
        pd.testing.assert_frame_equal(df, first)
        with pytest.raises(ValueError, match=r"id=2 differs from the open <History"):
            export(h, tmp_path / "x.csv", id=2)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"out_format": "xlsx"}, ValueError,
     r"unknown out_format 'xlsx'; valid: csv, parquet, feather, json, html"),
    ({"generation": 7}, DatabaseError, r"run 2 of .*runs\.db' has no generation t=7 "
     r"\(generations 0\.\.2\)"),
    ({"generation": -1}, DatabaseError, r"no generation t=-1"),
    ({"generation": "first"}, ValueError, r"generation must be 'last', 'all' or an int, "
     r"got 'first'"),
    ({"model": 2}, ValueError, r"model 2 out of range: run 2 of .* has models 0\.\.1 "
     r"\(model_ab, model_theta\)"),
    ({"model": "best"}, ValueError, r"model must be 'all' or an int, got 'best'"),
    ({"id": 9}, DatabaseError, r"has no run with abc_id=9 \(runs: \[1, 2\]\)"),
    ({"tidy": False}, ValueError, r"tidy=False is not supported: dask-abc's export is always "
     r"tidy"),
])
def test_bad_input_names_the_value(db, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        export(db, tmp_path / "out.csv", **kwargs)
    assert not (tmp_path / "out.csv").exists()


def test_missing_database(tmp_path):
    with pytest.raises(DatabaseError, match=r"database '.*nowhere\.db' does not exist"):
        export(str(tmp_path / "nowhere.db"), tmp_path / "out.csv")
    assert not (tmp_path / "nowhere.db").exists()


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
def test_missing_pyarrow(db, tmp_path, monkeypatch, fmt):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with pytest.raises(ImportError, match=rf"out_format='{fmt}' needs pyarrow: pip install "
                       "pyarrow"):
        export(db, tmp_path / f"out.{fmt}")


def test_command(db, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="dask-abc")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cmd.out"
    args = parser.parse_args(["export", db, str(out), "--format", "parquet", "--generation",
                              "all", "--model", "0", "--abc-id", "2"])
    assert args.func(args) == 0
    df = pd.read_parquet(out)
    assert set(df["m"]) == {0} and sorted(set(df["t"])) == [0, 1, 2]
    assert f"wrote {len(df)} particles to {out}" in capsys.readouterr().out

    args = parser.parse_args(["export", db, str(out), "--model", "5"])
    assert args.func(args) == 1
    assert "dask-abc export: model 5 out of range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["export", db, str(out), "--format", "xlsx"])
    assert "invalid choice: 'xlsx'" in capsys.readouterr().err

    assert main(["export", db.removeprefix("sqlite:///"), str(tmp_path / "main.csv"),
                 "--generation", "0", "--abc-id", "1"]) == 0
    assert len(pd.read_csv(tmp_path / "main.csv")) == 50


def test_history_export_writes_every_generation(db, tmp_path):
    with History(db, create=False) as h:
        df = h.export(tmp_path / "run.parquet")
        assert sorted(set(pd.read_parquet(tmp_path / "run.parquet")["t"])) == \
            list(range(h.n_populations)) == sorted(set(df["t"]))
