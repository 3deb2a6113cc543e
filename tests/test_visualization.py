"""pyABC's plots: every function renders real runs, with the expected lines and bars."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from scipy.integrate import trapezoid

import dask_abc as abc
from dask_abc import visualization as viz

matplotlib.use("Agg")

N_POP = 100


def model_ab(p):
    return {"y": p["a"] + p["b"] + 0.5 * np.random.normal()}


def model_theta(p):
    return {"y": p["theta"] + np.random.normal()}


def prior_ab():
    return abc.Distribution(a=abc.RV("norm", 0, 1), b=abc.RV("uniform", 0, 2))


def run(path, models, priors, seed):
    smc = abc.ABCSMC(models, priors, population_size=N_POP,
                     sampler=abc.sampler.SingleCoreSampler(), seed=seed)
    smc.new(f"sqlite:///{path}", {"y": 1.0})
    return smc.run(max_nr_populations=3)


@pytest.fixture(scope="module")
def histories(tmp_path_factory):
    """A run of one model with parameters a, b; a model selection run (a, b | theta)."""
    folder = tmp_path_factory.mktemp("viz")
    one = run(folder / "one.db", model_ab, prior_ab(), seed=3)
    two = run(folder / "two.db", [model_ab, model_theta],
              [prior_ab(), abc.Distribution(theta=abc.RV("norm", 0, 3))], seed=4)
    yield one, two
    one.close()
    two.close()


@pytest.fixture
def one(histories):
    return histories[0]


@pytest.fixture
def two(histories):
    return histories[1]


@pytest.fixture(autouse=True)
def no_figure_left_open():
    yield
    leaked = plt.get_fignums()
    plt.close("all")
    assert leaked == [], "a test (or a plot that raised) left figures open"


def save(ax, tmp_path, name="plot"):
    """Render the figure of ``ax`` to a PNG, check the file, close the figure."""
    fig = ax.get_figure()
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    assert path.stat().st_size > 0


def assert_drawn(ax):
    assert ax.has_data()
    assert ax.get_title() or ax.get_xlabel()


# -- matplotlib is optional --------------------------------------------------------------

def test_importing_does_not_import_matplotlib():
    code = ("import sys, dask_abc, dask_abc.visualization; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plotting_without_matplotlib_says_how_to_install_it(one, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install dask-abc\[plot\]"):
        viz.plot_epsilons(one)


# -- densities -------------------------------------------------------------------------

def test_kde_1d_is_a_weighted_density():
    df = pd.DataFrame({"a": [0.0, 0.1, -0.1, 5.0, 5.1, 4.9]})
    w = np.array([1, 1, 1, 0, 0, 0], dtype=float)  # all weight on the cluster at 0
    grid, pdf = viz.kde_1d(df, w, "a", -10, 15, numx=2001)
    assert trapezoid(pdf, grid) == pytest.approx(1, abs=1e-3)
    assert pdf[np.argmin(abs(grid))] > 1 and pdf[np.argmin(abs(grid - 5))] == 0


def test_plot_kde_1d(one, tmp_path):
    df, w = one.get_distribution(0, 1)
    ax = viz.plot_kde_1d(df, w, "a", numx=40, title="a", refval={"a": 0.3})
    assert_drawn(ax)
    curve, ref = ax.lines
    assert len(curve.get_xdata()) == 40 and np.all(curve.get_ydata() >= 0)
    assert list(ref.get_xdata()) == [0.3, 0.3]
    assert ax.get_xlabel() == "a" and ax.get_title() == "a"
    save(ax, tmp_path)


def test_plot_kde_1d_of_a_history_is_that_of_its_population(one, tmp_path):
    df, w = one.get_distribution(0, 1)
    expected = viz.plot_kde_1d(df, w, "b")
    for ax in (viz.plot_kde_1d(one, "b", t=1), viz.plot_kde_1d(one, x="b", m=0, t=1),
               viz.plot_kde_1d_highlevel(one, "b", t=1)):
        assert np.array_equal(ax.lines[0].get_ydata(), expected.lines[0].get_ydata())
        save(ax, tmp_path)
    save(expected, tmp_path)
    # default: the last generation
    last = viz.plot_kde_1d(one, "b", numx=10)
    assert np.allclose(last.lines[0].get_ydata(),
                       viz.kde_1d(*one.get_distribution(0, one.max_t), "b", numx=10)[1])
    save(last, tmp_path)


def test_plot_kde_2d(one, tmp_path):
    df, w = one.get_distribution(0)
    ax = viz.plot_kde_2d(df, w, "a", "b", numx=30, numy=20, refval={"a": 0.0, "b": 1.0})
    assert_drawn(ax)
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1 and meshes[0].get_array().shape == (20, 30)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert points[0].get_offsets().tolist() == [[0.0, 1.0]]
    assert len(ax.get_figure().axes) == 2  # the plot and its colour bar
    save(ax, tmp_path)


def test_plot_kde_2d_of_a_history(one, tmp_path):
    for ax in (viz.plot_kde_2d(one, "a", "b", t=0, colorbar=False, numx=10, numy=10),
               viz.plot_kde_2d_highlevel(one, "a", "b", t=0, colorbar=False, numx=10, numy=10)):
        assert len(ax.get_figure().axes) == 1
        assert ax.collections[0].get_array().shape == (10, 10)
        save(ax, tmp_path)


def test_plot_kde_matrix(one, tmp_path):
    df, w = one.get_distribution(0)
    arr_ax = viz.plot_kde_matrix(df, w, numx=25, numy=15, refval={"a": 0.0, "b": 1.0},
                                 limits={"b": (0, 2)})
    assert arr_ax.shape == (2, 2)
    for ax in arr_ax.ravel():
        assert ax.has_data()
    assert len(arr_ax[0, 0].lines[0].get_xdata()) == 25  # diagonal: densities
    assert arr_ax[1, 1].get_xlim() == (0, 2)
    assert isinstance(arr_ax[1, 0].collections[0], QuadMesh)  # lower: 2d densities
    assert len(arr_ax[0, 1].collections[0].get_offsets()) == N_POP  # upper: the particles
    assert [ax.get_xlabel() for ax in arr_ax[-1]] == ["a", "b"]
    assert [ax.get_ylabel() for ax in arr_ax[:, 0]] == ["a", "b"]
    save(arr_ax[0, 0], tmp_path)


def test_plot_kde_matrix_of_a_history(two, tmp_path):
    arr_ax = viz.plot_kde_matrix(two, m=1, numx=10)
    assert arr_ax.shape == (1, 1) and arr_ax[0, 0].get_xlabel() == "theta"
    save(arr_ax[0, 0], tmp_path)
    arr_ax = viz.plot_kde_matrix_highlevel(two, m=0, t=0, numx=10, numy=10, colorbar=False,
                                           names={"a": "alpha"})
    assert arr_ax.shape == (2, 2) and arr_ax[1, 0].get_ylabel() == "b"
    assert arr_ax[1, 0].get_xlabel() == "alpha"
    save(arr_ax[0, 0], tmp_path)


def test_plot_histogram_1d(one, tmp_path):
    ax = viz.plot_histogram_1d(one, "a", bins=12, refval={"a": 0.5})
    assert_drawn(ax)
    bars = ax.patches
    assert len(bars) == 12
    area = sum(bar.get_height() * bar.get_width() for bar in bars)
    assert area == pytest.approx(1)  # a density by default
    assert ax.lines[0].get_xdata()[0] == 0.5
    save(ax, tmp_path)

    ax = viz.plot_histogram_1d(one, "b", t=0, bins=7, density=False)
    assert len(ax.patches) == 7
    assert sum(bar.get_height() for bar in ax.patches) == pytest.approx(1)  # the weights
    save(ax, tmp_path)


def test_plot_histogram_1d_of_the_second_model(two, tmp_path):
    df, w = two.get_distribution(1)
    ax = viz.plot_histogram_1d(two, "theta", m=1, xmin=-3, xmax=3, density=False)
    heights = np.array([bar.get_height() for bar in ax.patches])
    inside = (df["theta"] >= -3) & (df["theta"] <= 3)
    assert heights.sum() == pytest.approx(w[inside].sum())
    assert ax.patches[0].get_x() == -3
    save(ax, tmp_path)


# -- how the runs went -----------------------------------------------------------------

def test_plot_epsilons(histories, tmp_path):
    ax = viz.plot_epsilons(list(histories))
    assert_drawn(ax)
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 2
    for line, h in zip(ax.lines, histories):
        info = h.get_generation_info()
        assert list(line.get_xdata()) == list(range(h.n_populations))
        assert np.allclose(line.get_ydata(), info["epsilon"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["History 1", "History 2"]
    save(ax, tmp_path)


def test_plot_epsilons_of_one_history(one, tmp_path):
    ax = viz.plot_epsilons(one, labels="run", colors=["k"], yscale="lin", title="eps")
    assert len(ax.lines) == 1 and ax.get_yscale() == "linear" and ax.get_title() == "eps"
    assert ax.get_legend().get_texts()[0].get_text() == "run"
    save(ax, tmp_path)


def test_plot_sample_numbers(histories, tmp_path):
    ax = viz.plot_sample_numbers(histories, labels=["one", "two"], rotation=45)
    assert_drawn(ax)
    rows = len(histories[0].get_all_populations())  # the calibration and 3 generations
    assert rows == 4
    assert len(ax.containers) == rows and len(ax.patches) == rows * 2
    assert ax.containers[0].get_label() == "calibration"
    for i, h in enumerate(histories):  # each stack is the run's total
        top = max(bars[i].get_y() + bars[i].get_height() for bars in ax.containers)
        assert top == h.get_all_populations()["samples"].sum()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["one", "two"]
    assert ax.get_xticklabels()[0].get_rotation() == 45
    save(ax, tmp_path)


def test_plot_acceptance_rates_trajectory(histories, tmp_path):
    ax = viz.plot_acceptance_rates_trajectory(histories)
    assert_drawn(ax)
    assert len(ax.lines) == 2 and ax.get_yscale() == "linear"
    for line, h in zip(ax.lines, histories):
        info = h.get_generation_info()
        assert np.allclose(line.get_ydata(), N_POP / info["samples"])
    save(ax, tmp_path)

    ax = viz.plot_acceptance_rates_trajectory(histories[0], normalize_by_ess=True, yscale="log")
    info = histories[0].get_generation_info()
    assert ax.get_yscale() == "log"
    assert np.allclose(ax.lines[0].get_ydata(), info["ess"] / info["samples"])
    save(ax, tmp_path)


def test_plot_effective_sample_sizes(histories, tmp_path):
    ax = viz.plot_effective_sample_sizes(histories)
    assert_drawn(ax)
    assert len(ax.lines) == 2
    for line, h in zip(ax.lines, histories):
        ess = [1 / np.sum(h.get_weighted_distances(t)["w"] ** 2) for t in range(3)]
        assert np.allclose(line.get_ydata(), ess)
    save(ax, tmp_path)

    ax = viz.plot_effective_sample_sizes(histories, relative=True, colors=["C3", "C4"])
    for line in ax.lines:
        assert np.all((0 < line.get_ydata()) & (line.get_ydata() <= 1))
    save(ax, tmp_path)


def test_plot_model_probabilities(two, tmp_path):
    ax = viz.plot_model_probabilities(two, rotation=90)
    assert_drawn(ax)
    assert len(ax.containers) == 2  # one bar group per model
    assert all(len(bars) == two.n_populations for bars in ax.containers)
    heights = np.array([[bar.get_height() for bar in bars] for bars in ax.containers])
    assert np.allclose(heights.sum(axis=0), 1)
    assert np.allclose(heights, two.get_model_probabilities().to_numpy().T)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0: model_ab",
                                                                   "1: model_theta"]
    save(ax, tmp_path)


def test_plots_draw_into_a_given_axes(histories, tmp_path):
    fig, axes = plt.subplots(1, 3, layout="constrained")
    assert viz.plot_epsilons(histories, ax=axes[0]) is axes[0]
    assert viz.plot_kde_1d(histories[0], "a", ax=axes[1]) is axes[1]
    assert viz.plot_model_probabilities(histories[1], ax=axes[2], size=(9, 3)) is axes[2]
    assert tuple(fig.get_size_inches()) == (9, 3)
    save(axes[0], tmp_path)


# -- bad input ---------------------------------------------------------------------------

def test_unknown_parameter_names_the_models_parameters(one, two):
    with pytest.raises(ValueError, match=r"unknown parameter 'c'.*model 0 .*\['a', 'b'\]"):
        viz.plot_kde_1d(one, "c")
    with pytest.raises(ValueError, match=r"unknown parameter 'a'.*model 1 .*\['theta'\]"):
        viz.plot_histogram_1d(two, "a", m=1)
    with pytest.raises(ValueError, match=r"unknown parameter 'c'.*\['a', 'b'\]"):
        viz.plot_kde_2d(*one.get_distribution(0), "a", "c")
    with pytest.raises(ValueError, match=r"unknown parameter 'c'"):
        viz.plot_kde_matrix(one, limits={"c": (0, 1)})


def test_model_out_of_range(one, two):
    with pytest.raises(ValueError, match=r"m=2 is out of range.*2 model.*0: model_ab, "
                                         r"1: model_theta"):
        viz.plot_kde_matrix(two, m=2)
    with pytest.raises(ValueError, match=r"m=1 is out of range"):
        viz.plot_histogram_1d(one, "a", m=1)


def test_generation_that_does_not_exist(one):
    with pytest.raises(ValueError, match=r"generation t=3 does not exist.*0\.\.2"):
        viz.plot_kde_1d(one, "a", t=3)
    with pytest.raises(ValueError, match=r"generation t=-1 does not exist"):
        viz.plot_histogram_1d(one, "a", t=-1)


def test_misplaced_arguments(one, histories):
    with pytest.raises(TypeError, match=r"with a History call plot_kde_1d\(history, 'x'"):
        viz.plot_kde_1d(one, "a", 0.0)  # xmin positionally after a History
    with pytest.raises(TypeError, match="m and t select a population of a History"):
        viz.plot_kde_1d(*one.get_distribution(0), "a", m=0)
    with pytest.raises(TypeError, match="weights w are missing"):
        viz.plot_kde_1d(one.get_distribution(0)[0], x="a")
    with pytest.raises(ValueError, match="3 labels for 2 histories"):
        viz.plot_epsilons(histories, labels=["a", "b", "c"])
    with pytest.raises(TypeError, match="expected a dask_abc.History"):
        viz.plot_sample_numbers([one, "two.db"])
    with pytest.raises(ValueError, match="refval has no value for parameter 'b'"):
        viz.plot_kde_2d(one, "a", "b", refval={"a": 0})
