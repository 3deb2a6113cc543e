"""Unit tests of the building blocks: random streams, priors, statistics, distances,
thresholds, kernels and the batch invariance of a generation spec."""

from __future__ import annotations

import dask.config
import numpy as np
import pytest
import scipy.stats as st

import dask_abc as abc
from dask_abc import distance as distance_module
from dask_abc import rng
from dask_abc.distance import median_absolute_deviation
from dask_abc.epsilon import weighted_quantile
from dask_abc.parameters import Parameter
from dask_abc.sampler import SingleCoreSampler
from dask_abc.sumstat import SumStatError, SumStatLayout
from dask_abc.transition import silverman_rule_of_thumb

N = 1000
PIECES = [1, 3, 333]


def in_pieces(f, n, size):
    """``f(start, stop)`` over consecutive pieces of ``size`` covering ``0..n-1``."""
    return [f(s, min(s + size, n)) for s in range(0, n, size)]


# -- rng.IndexStreams ------------------------------------------------------------------


@pytest.mark.parametrize("size", PIECES)
def test_streams_do_not_depend_on_batching(size):
    s = rng.IndexStreams(seed=7, t=3)
    idx = np.arange(N)
    for draw in (
        lambda i: s.uniforms(i, rng.PRIOR, width=3),
        lambda i: s.uniforms(i, rng.ANCESTOR, width=1, attempt=2),
        lambda i: s.normals(i, rng.NORMALS, width=4),
        lambda i: s.seeds(i),
    ):
        whole = draw(idx)
        pieces = np.concatenate(in_pieces(lambda a, b, d=draw: d(idx[a:b]), N, size))
        assert np.array_equal(whole, pieces)
        # Any order of the indices gives the same numbers per index.
        perm = np.random.default_rng(0).permutation(N)
        assert np.array_equal(draw(idx[perm]), whole[perm])


def test_streams_same_key_same_numbers_in_a_new_object():
    a = rng.IndexStreams(seed=7, t=3).uniforms(np.arange(N), rng.PRIOR, 2)
    b = rng.IndexStreams(seed=7, t=3).uniforms(np.arange(N), rng.PRIOR, 2)
    assert np.array_equal(a, b)


def test_streams_differ_by_seed_generation_stream_and_attempt():
    idx = np.arange(N)
    base = rng.IndexStreams(seed=7, t=3).uniforms(idx, rng.PRIOR, 2)
    others = {
        "seed": rng.IndexStreams(seed=8, t=3).uniforms(idx, rng.PRIOR, 2),
        "generation": rng.IndexStreams(seed=7, t=4).uniforms(idx, rng.PRIOR, 2),
        "calibration": rng.IndexStreams(seed=7, t=-1).uniforms(idx, rng.PRIOR, 2),
        "stream": rng.IndexStreams(seed=7, t=3).uniforms(idx, rng.ANCESTOR, 2),
        "attempt": rng.IndexStreams(seed=7, t=3).uniforms(idx, rng.PRIOR, 2, attempt=1),
    }
    for what, other in others.items():
        # Independent uniforms essentially never coincide.
        assert np.mean(other == base) < 0.001, what
    # Neighbouring indices and neighbouring positions differ too.
    assert np.all(base[1:, 0] != base[:-1, 0])
    assert np.all(base[:, 0] != base[:, 1])


def test_uniforms_are_in_the_open_unit_interval_with_the_right_moments():
    u = rng.IndexStreams(seed=1, t=0).uniforms(np.arange(100_000), rng.PRIOR, width=2)
    assert u.shape == (100_000, 2)
    assert u.min() > 0 and u.max() < 1
    # sd of the mean of 200,000 uniforms is 0.29 / 447 = 0.00065: tolerance 0.005.
    assert abs(u.mean() - 0.5) < 0.005
    assert abs(u.var() - 1 / 12) < 0.002
    # Spread over the whole interval: every tenth holds about a tenth.
    counts = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
    assert np.all(np.abs(counts - 0.1) < 0.005)


def test_normals_have_mean_zero_and_sd_one():
    z = rng.IndexStreams(seed=2, t=5).normals(np.arange(100_000), rng.NORMALS, width=2)
    assert np.all(np.isfinite(z))
    # sd of the mean of 200,000 normals is 0.0022: tolerance 0.01; same for the sd.
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.02


def test_seeds_are_32_bit_and_spread():
    seeds = rng.IndexStreams(seed=3, t=0).seeds(np.arange(N))
    assert seeds.dtype == np.uint32
    assert len(np.unique(seeds)) == N


# -- priors ----------------------------------------------------------------------------


X_GRID = np.array([-3.0, -0.5, 0.0, 0.25, 1.0, 2.5, 7.0])


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("norm", (1.0, 2.0), {}),
        ("uniform", (-1.0, 3.0), {}),
        ("gamma", (2.0,), {"scale": 1.5}),
        ("lognorm", (0.5,), {}),
    ],
)
def test_rv_pdf_cdf_ppf_match_scipy(name, args, kwargs):
    rv = abc.RV(name, *args, **kwargs)
    ref = getattr(st, name)(*args, **kwargs)
    assert np.array_equal(rv.pdf(X_GRID), ref.pdf(X_GRID))
    assert np.array_equal(rv.cdf(X_GRID), ref.cdf(X_GRID))
    u = np.linspace(0.01, 0.99, 13)
    assert np.array_equal(rv.ppf(u), ref.ppf(u))
    assert np.array_equal(rv.in_support(X_GRID), ref.pdf(X_GRID) > 0)


def test_discrete_rv_uses_the_pmf():
    rv = abc.RV("poisson", 3)
    k = np.arange(-1, 8)
    assert np.array_equal(rv.pdf(k), st.poisson(3).pmf(k))
    assert rv.discrete
    assert np.array_equal(rv.in_support(k.astype(float)), k >= 0)


def test_rv_in_support_accepts_scalars_like_other_random_variables():
    """``RVBase.in_support`` (used by BoundedRV) takes scalars; ``RV.in_support`` does too
    inside the support (1.0 below works) but not on its boundary."""
    expon = abc.RV("expon")
    assert bool(expon.in_support(1.0))
    assert bool(abc.BoundedRV(expon, lower=0.0).in_support(0.0))
    assert bool(expon.in_support(0.0))  # the density at 0 is 1


def test_rv_rejects_unknown_names():
    with pytest.raises(ValueError, match="'no_such_distribution'"):
        abc.RV("no_such_distribution", 0, 1)
    with pytest.raises(ValueError, match="'RV'"):
        abc.RV("RV")  # an attribute of scipy.stats that is not a distribution


def test_bounded_rv_is_truncated_and_renormalised():
    comp = abc.RV("norm", 0, 1)
    rv = abc.BoundedRV(comp, lower=-0.5, upper=2.0)
    mass = st.norm.cdf(2.0) - st.norm.cdf(-0.5)
    x = np.array([-1.0, -0.5, 0.0, 1.0, 2.0, 2.5])
    expected = np.where((x >= -0.5) & (x <= 2.0), st.norm.pdf(x) / mass, 0.0)
    assert np.allclose(rv.pdf(x), expected)
    u = np.linspace(0.001, 0.999, 50)
    y = rv.ppf(u)
    assert np.all((y >= -0.5) & (y <= 2.0))
    assert np.allclose(rv.cdf(y), u)
    # Integrates to one.
    grid = np.linspace(-0.5, 2.0, 20001)
    assert abs(np.trapezoid(rv.pdf(grid), grid) - 1) < 1e-6
    lower_only = abc.LowerBoundDecorator(comp, 0.0)
    assert np.allclose(lower_only.pdf(np.array([-0.1, 0.3])), [0.0, 2 * st.norm.pdf(0.3)])
    with pytest.raises(ValueError, match="not below"):
        abc.BoundedRV(comp, lower=1.0, upper=1.0)


def test_distribution_sorts_parameter_names():
    prior = abc.Distribution(z=abc.RV("norm", 0, 1), a=abc.RV("uniform", 0, 1),
                             m=abc.RV("norm", 5, 2))
    assert prior.get_parameter_names() == ["a", "m", "z"]
    assert list(prior) == ["a", "m", "z"]
    assert prior.dim == 3


def test_distribution_matrices_match_the_components():
    a, m, z = abc.RV("uniform", 0, 1), abc.RV("norm", 5, 2), abc.RV("gamma", 2.0)
    prior = abc.Distribution(z=z, a=a, m=m)
    u = np.random.default_rng(0).uniform(size=(50, 3))
    x = prior.ppf_matrix(u)
    assert x.shape == (50, 3)
    assert np.array_equal(x[:, 0], st.uniform(0, 1).ppf(u[:, 0]))
    assert np.array_equal(x[:, 1], st.norm(5, 2).ppf(u[:, 1]))
    assert np.array_equal(x[:, 2], st.gamma(2.0).ppf(u[:, 2]))
    dens = prior.pdf_matrix(x)
    expected = st.uniform.pdf(x[:, 0]) * st.norm(5, 2).pdf(x[:, 1]) * st.gamma(2.0).pdf(x[:, 2])
    assert np.allclose(dens, expected, rtol=1e-12)
    assert prior.pdf({"a": 0.5, "m": 5.0, "z": 1.0}) == pytest.approx(
        1.0 * st.norm(5, 2).pdf(5.0) * st.gamma(2.0).pdf(1.0))
    outside = np.array([[0.5, 5.0, 1.0], [1.5, 5.0, 1.0], [0.5, 5.0, -1.0], [-0.1, 0.0, 0.1]])
    assert prior.in_support(outside).tolist() == [True, False, False, False]
    assert np.array_equal(prior.in_support(outside), prior.pdf_matrix(outside) > 0)
    with pytest.raises(KeyError, match="'m'"):
        prior.pdf({"a": 0.5, "z": 1.0})


def test_distribution_rvs_returns_a_parameter():
    prior = abc.Distribution(theta=abc.RV("norm", 0, 3), sigma=abc.RV("uniform", 0, 1))
    p = prior.rvs(random_state=42)
    assert isinstance(p, Parameter)
    assert sorted(p) == ["sigma", "theta"]
    assert p.theta == p["theta"] and p.sigma == p["sigma"]
    assert 0 < p.sigma < 1
    assert prior.rvs(random_state=42) == p
    assert prior.rvs(random_state=43) != p
    with pytest.raises(AttributeError, match="nope"):
        p.nope  # noqa: B018


def test_distribution_rejects_values_that_are_not_rvs():
    with pytest.raises(TypeError, match="'sigma'"):
        abc.Distribution(theta=abc.RV("norm", 0, 1), sigma=0.5)
    with pytest.raises(TypeError, match="'sigma'"):
        abc.Distribution({"sigma": st.norm(0, 1)})


def test_distribution_from_dictionary_of_dictionaries():
    prior = abc.Distribution.from_dictionary_of_dictionaries(
        {"x": {"type": "norm", "args": [1, 2]}, "y": {"type": "uniform", "kwargs": {"scale": 3}}})
    assert prior.get_parameter_names() == ["x", "y"]
    assert prior["x"].pdf(1.0) == st.norm(1, 2).pdf(1.0)
    assert prior["y"].pdf(2.5) == pytest.approx(1 / 3)


# -- SumStatLayout ---------------------------------------------------------------------


OBSERVED = {"a": 1.0, "b": np.array([1.0, 2.0, 3.0]), "c": np.arange(6.0).reshape(2, 3)}


def test_layout_round_trip():
    layout = SumStatLayout.from_observed(OBSERVED)
    assert layout.keys == ["a", "b", "c"]
    assert layout.size == 10
    stats = {"a": 0.5, "b": [4, 5, 6], "c": np.arange(10.0, 16.0).reshape(2, 3)}
    flat = layout.flatten(stats)
    assert np.array_equal(flat, [0.5, 4, 5, 6, 10, 11, 12, 13, 14, 15])
    back = layout.unflatten(flat)
    assert back["a"] == 0.5 and isinstance(back["a"], float)
    assert np.array_equal(back["b"], [4, 5, 6])
    assert np.array_equal(back["c"], stats["c"])
    assert layout.column_names() == ["a", "b[0]", "b[1]", "b[2]"] + [f"c[{i}]" for i in range(6)]
    copy = SumStatLayout.from_dict(layout.to_dict())
    assert np.array_equal(copy.flatten(stats), flat)
    # numpy scalars, ints and pandas objects count as numbers.
    import pandas as pd

    flat2 = layout.flatten({"a": np.float32(0.5), "b": pd.Series([4, 5, 6]),
                            "c": stats["c"].tolist()})
    assert np.array_equal(flat2, flat)


def test_layout_names_missing_and_unexpected_keys():
    layout = SumStatLayout.from_observed(OBSERVED)
    good = {k: np.asarray(v) for k, v in OBSERVED.items()}
    with pytest.raises(SumStatError, match=r"my model.*missing \['b'\]"):
        layout.flatten({"a": 1.0, "c": good["c"]}, who="my model")
    with pytest.raises(SumStatError, match=r"unexpected \['zz'\]"):
        layout.flatten(dict(good, zz=1.0), who="my model")
    with pytest.raises(SumStatError, match="expected a dict"):
        layout.flatten([1.0, 2.0], who="my model")


def test_layout_names_the_key_of_a_shape_mismatch():
    layout = SumStatLayout.from_observed(OBSERVED)
    with pytest.raises(SumStatError, match=r"'b' has shape \(2,\).*\(3,\)"):
        layout.flatten({"a": 1.0, "b": [1.0, 2.0], "c": OBSERVED["c"]})
    with pytest.raises(SumStatError, match=r"'a' has shape \(2,\)"):
        layout.flatten({"a": [1.0, 2.0], "b": OBSERVED["b"], "c": OBSERVED["c"]})
    with pytest.raises(SumStatError, match=r"'c' has shape \(6,\)"):
        layout.flatten({"a": 1.0, "b": OBSERVED["b"], "c": np.arange(6.0)})


def test_layout_rejects_non_numeric_statistics_by_key():
    layout = SumStatLayout.from_observed(OBSERVED)
    with pytest.raises(SumStatError, match="'a' is not numeric"):
        layout.flatten({"a": "high", "b": OBSERVED["b"], "c": OBSERVED["c"]})
    with pytest.raises(SumStatError, match="'b' is not numeric"):
        layout.flatten({"a": 1.0, "b": ["x", "y", "z"], "c": OBSERVED["c"]})
    with pytest.raises(SumStatError, match="'b' is not numeric"):
        layout.flatten({"a": 1.0, "b": [1.0, [2.0, 3.0], 4.0], "c": OBSERVED["c"]})
    with pytest.raises(SumStatError, match="'s' is not numeric"):
        SumStatLayout.from_observed({"s": "text"})
    with pytest.raises(SumStatError, match="non-empty dict"):
        SumStatLayout.from_observed({})


# -- distances -------------------------------------------------------------------------


X_STATS = {"a": 1.0, "b": np.array([2.0, 3.0])}
X0_STATS = {"a": 0.0, "b": np.array([0.0, 1.0])}  # differences 1, 2, 2


@pytest.mark.parametrize(
    "p, weights, expected",
    [
        (1, None, 5.0),
        (2, None, 3.0),
        (np.inf, None, 2.0),
        (3, None, 17.0 ** (1 / 3)),
        (1, {"a": 3}, 7.0),
        (2, {"a": 3}, np.sqrt(17.0)),
        (np.inf, {"a": 3}, 3.0),
        (1, {"b": [1.0, 0.5]}, 4.0),
        (2, {"a": 0, "b": 0.5}, np.sqrt(2.0)),
    ],
)
def test_pnorm_distance_against_hand_computed_values(p, weights, expected):
    d = abc.PNormDistance(p=p, fixed_weights=weights)
    assert d(X_STATS, X0_STATS) == pytest.approx(expected, rel=1e-14)
    # Symmetric, and zero at the observed data.
    assert d(X0_STATS, X_STATS) == pytest.approx(expected, rel=1e-14)
    assert d(X0_STATS, X0_STATS) == 0.0


def test_pnorm_distance_call_shapes():
    d = abc.PNormDistance()
    assert d(X_STATS, X0_STATS, 3) == 3.0
    assert d(X_STATS, X0_STATS, t=2, par={"theta": 1.0}) == 3.0
    with pytest.raises(ValueError, match="p must be >= 1"):
        abc.PNormDistance(p=0.5)
    with pytest.raises(KeyError, match="'nope'"):
        abc.PNormDistance(fixed_weights={"nope": 2})(X_STATS, X0_STATS)


def _stats_matrix(n=N, k=5, seed=0):
    r = np.random.default_rng(seed)
    scales = np.array([0.1, 1.0, 10.0, 3.0, 0.5])[:k]
    return r.normal(size=(n, k)) * scales + np.arange(k), np.zeros(k)


def test_adaptive_pnorm_weights_are_normalised_inverse_mad():
    X, x0 = _stats_matrix()
    layout = SumStatLayout([f"s{i}" for i in range(5)], [()] * 5)
    d = abc.AdaptivePNormDistance(p=2)
    d.configure(layout)
    assert d.requires_calibration and d.requires_all_sum_stats
    d.initialize(0, X, x0)
    mad = np.median(np.abs(X - np.median(X, axis=0)), axis=0)
    w = (1 / mad) / np.mean(1 / mad)
    assert np.allclose(d.weights_for(0), w, rtol=1e-12)
    assert np.allclose(median_absolute_deviation(X), mad)
    # Generation 0's distances use these weights.
    assert np.allclose(d.batch(X[:5], x0, 0), np.sqrt((((X[:5] - x0) * w) ** 2).sum(axis=1)))
    # update() fits the next generation; earlier weights stay.
    X2 = X * np.array([1, 2, 1, 1, 4])
    assert d.update(1, X2, x0)
    mad2 = np.median(np.abs(X2 - np.median(X2, axis=0)), axis=0)
    assert np.allclose(d.weights_for(1), (1 / mad2) / np.mean(1 / mad2), rtol=1e-12)
    assert np.allclose(d.weights_for(0), w, rtol=1e-12)
    assert np.array_equal(d.weights_for(5), d.weights_for(1))  # latest at or before t


def test_adaptive_pnorm_zero_scale_gets_weight_zero():
    X, x0 = _stats_matrix(k=3)
    X[:, 1] = 4.0
    d = abc.AdaptivePNormDistance(p=1)
    d.configure(SumStatLayout(["a", "b", "c"], [()] * 3))
    d.initialize(0, X, x0)
    w = d.weights_for(0)
    assert w[1] == 0 and w[0] > 0 and w[2] > 0
    assert w.mean() == pytest.approx(1.0)


def test_adaptive_pnorm_state_round_trip():
    X, x0 = _stats_matrix()
    layout = SumStatLayout([f"s{i}" for i in range(5)], [()] * 5)
    d = abc.AdaptivePNormDistance(p=1)
    d.configure(layout)
    d.initialize(0, X, x0)
    d.update(1, X[::2] * 3, x0)
    states = {t: d.get_state(t) for t in (0, 1)}
    assert all(isinstance(s, list) for s in states.values())
    other = abc.AdaptivePNormDistance(p=1)
    other.configure(layout)
    assert not np.array_equal(other.weights_for(0), d.weights_for(0))
    for t, s in states.items():
        other.set_state(t, s)
    for t in (0, 1):
        assert np.array_equal(other.weights_for(t), d.weights_for(t))
        assert np.array_equal(other.batch(X, x0, t), d.batch(X, x0, t))


def test_adaptive_pnorm_initial_weights_skip_calibration():
    d = abc.AdaptivePNormDistance(initial_weights={"b": 2.0})
    d.configure(SumStatLayout(["a", "b"], [(), ()]))
    assert not d.requires_calibration
    d.initialize(0, np.zeros((0, 2)), np.zeros(2))
    assert np.array_equal(d.weights_for(0), [1.0, 2.0])


def test_function_distance_wraps_a_callable():
    def absolute(x, x0):
        return abs(x["y"] - x0["y"]) + float(np.sum(x["z"]))

    d = abc.FunctionDistance(absolute)
    assert d({"y": 2.0, "z": [0.0, 0.0]}, {"y": 0.5, "z": [1, 1]}) == 1.5
    layout = SumStatLayout.from_observed({"y": 0.5, "z": [1.0, 1.0]})
    d.configure(layout)
    X = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    assert np.array_equal(d.batch(X, layout.flatten({"y": 0.5, "z": [1, 1]}), 0), [1.5, 3.5])
    # ABCSMC wraps a plain function the same way.
    smc = abc.ABCSMC(lambda p: {"y": p["t"]}, abc.Distribution(t=abc.RV("norm", 0, 1)),
                     absolute, sampler=SingleCoreSampler())
    assert isinstance(smc.distance_function, abc.FunctionDistance)
    assert smc.distance_function.function is absolute
    with pytest.raises(TypeError, match="distance_function"):
        abc.ABCSMC(lambda p: {"y": 1.0}, abc.Distribution(t=abc.RV("norm", 0, 1)), 3,
                   sampler=SingleCoreSampler())


def _adaptive():
    d = abc.AdaptivePNormDistance(p=2)
    d.configure(SumStatLayout([f"s{i}" for i in range(5)], [()] * 5))
    X, x0 = _stats_matrix(seed=5)
    d.initialize(0, X, x0)
    return d


def _configured(d):
    d.configure(SumStatLayout([f"s{i}" for i in range(5)], [()] * 5))
    return d


DISTANCES = {
    "p1": lambda: _configured(abc.PNormDistance(p=1)),
    "p2": lambda: _configured(abc.PNormDistance(p=2)),
    "pinf": lambda: _configured(abc.PNormDistance(p=np.inf)),
    "p3-weighted": lambda: _configured(abc.PNormDistance(p=3, fixed_weights={"s2": 0.7})),
    "adaptive": _adaptive,
    "function": lambda: _configured(abc.FunctionDistance(
        lambda x, x0: float(np.sqrt(sum((x[k] - x0[k]) ** 2 for k in x))))),
}


@pytest.mark.parametrize("name", sorted(DISTANCES))
@pytest.mark.parametrize("size", PIECES)
def test_distance_batch_is_row_wise(name, size):
    d = DISTANCES[name]()
    X, _ = _stats_matrix(seed=1)
    x0 = np.array([0.1, 1.2, 1.7, 3.3, 3.9])
    whole = d.batch(X, x0, 0)
    assert whole.shape == (N,) and np.all(np.isfinite(whole))
    pieces = np.concatenate(in_pieces(lambda a, b: d.batch(X[a:b], x0, 0), N, size))
    assert np.array_equal(whole, pieces)


# -- epsilon ---------------------------------------------------------------------------


def test_weighted_quantile():
    points = np.array([3.0, 1.0, 2.0])
    assert weighted_quantile(points, alpha=0.5) == 2.0
    # weights 1/4, 1/4, 1/2 at 1, 2, 3: midpoints of the cumulative weights 1/8, 3/8, 3/4.
    w = np.array([2.0, 1.0, 1.0])
    assert weighted_quantile(points, w, 0.5) == pytest.approx(2 + (0.5 - 0.375) / 0.375)
    assert weighted_quantile(points, w, 0.0) == 1.0
    assert weighted_quantile(points, w, 1.0) == 3.0
    # Unweighted: Hazen's quantile.
    x = np.random.default_rng(1).normal(size=101)
    for alpha in (0.1, 0.5, 0.9):
        assert weighted_quantile(x, None, alpha) == pytest.approx(
            np.quantile(x, alpha, method="hazen"), rel=1e-12)
    # Scaling the weights changes nothing.
    assert weighted_quantile(points, 10 * w, 0.3) == weighted_quantile(points, w, 0.3)


def test_constant_and_list_epsilon():
    eps = abc.ConstantEpsilon(0.5)
    assert [eps(t) for t in range(4)] == [0.5] * 4
    assert eps.max_generations() == np.inf
    assert not eps.requires_calibration
    lst = abc.ListEpsilon([3, 2, 1])
    assert [lst(t) for t in range(3)] == [3.0, 2.0, 1.0]
    assert lst.max_generations() == 3
    with pytest.raises(ValueError, match="at least one value"):
        abc.ListEpsilon([])


def test_list_epsilon_limits_the_number_of_generations():
    smc = abc.ABCSMC(lambda p: {"y": p["t"] + np.random.normal()},
                     abc.Distribution(t=abc.RV("norm", 0, 1)), population_size=50,
                     eps=abc.ListEpsilon([3, 2]), sampler=SingleCoreSampler(), seed=1)
    smc.new("sqlite://", {"y": 0.0})
    history = smc.run(max_nr_populations=10)
    assert history.n_populations == 2
    assert history.get_all_populations()["epsilon"].tolist() == [3.0, 2.0]
    assert history.stop_reason == "all 2 epsilon values of ListEpsilon used"
    history.close()


def test_quantile_epsilon_from_calibration_sample_and_update():
    d = np.random.default_rng(2).exponential(size=400)
    w = np.full(400, 1 / 400)
    eps = abc.QuantileEpsilon(alpha=0.2, quantile_multiplier=0.9)
    assert eps.requires_calibration
    eps.initialize(0, d, w)
    assert eps(0) == pytest.approx(0.9 * np.quantile(d, 0.2, method="hazen"), rel=1e-12)
    w2 = np.random.default_rng(3).uniform(size=400)
    eps.update(1, d / 2, w2)
    assert eps(1) == pytest.approx(0.9 * weighted_quantile(d / 2, w2, 0.2), rel=1e-12)
    assert eps(1) != pytest.approx(0.9 * weighted_quantile(d / 2, None, 0.2), rel=1e-6)
    assert eps(0) == pytest.approx(0.9 * np.quantile(d, 0.2, method="hazen"), rel=1e-12)
    unweighted = abc.QuantileEpsilon(alpha=0.2, weighted=False)
    unweighted.update(1, d / 2, w2)
    assert unweighted(1) == pytest.approx(weighted_quantile(d / 2, None, 0.2), rel=1e-12)


def test_median_epsilon():
    d = np.arange(1.0, 102.0)  # median 51
    eps = abc.MedianEpsilon()
    eps.initialize(0, d, np.ones(101))
    assert eps(0) == pytest.approx(51.0, rel=1e-12)
    half = abc.MedianEpsilon(median_multiplier=0.5)
    half.initialize(0, d, np.ones(101))
    assert half(0) == pytest.approx(25.5, rel=1e-12)
    fixed = abc.MedianEpsilon(initial_epsilon=4.0)
    assert not fixed.requires_calibration
    fixed.initialize(0, np.zeros(0), np.zeros(0))
    assert fixed(0) == 4.0
    fixed.update(1, d, np.ones(101))
    assert fixed(1) == pytest.approx(51.0, rel=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        abc.QuantileEpsilon(alpha=0)
    with pytest.raises(ValueError, match="initial_epsilon"):
        abc.MedianEpsilon(initial_epsilon=-1)


# -- transitions -----------------------------------------------------------------------


def _population(n=200, seed=0):
    r = np.random.default_rng(seed)
    X = r.multivariate_normal([1.0, -2.0], [[1.0, 0.6], [0.6, 2.0]], size=n)
    w = r.uniform(0.2, 1.0, size=n)
    return X, w / w.sum()


def _targets(n=N, seed=9):
    return np.random.default_rng(seed).normal([1.0, -2.0], [2.0, 2.5], size=(n, 2))


def _local_covariances(X, k, scaling):
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=-1)
    nb = np.argsort(d2, axis=1)[:, :k]
    return [np.cov(X[i], rowvar=False) * scaling for i in nb]


def test_multivariate_normal_transition_pdf_is_the_gaussian_mixture():
    X, w = _population()
    tr = abc.MultivariateNormalTransition(scaling=1.5)
    tr.fit(X, w * 7)  # weights are normalised by fit
    cov = np.cov(X, rowvar=False, aweights=w) * silverman_rule_of_thumb(200, 2) ** 2 * 1.5
    assert np.allclose(tr.cov, cov)
    Y = _targets(100)
    expected = sum(wi * st.multivariate_normal(xi, cov).pdf(Y) for xi, wi in zip(X, w))
    assert np.allclose(tr.pdf(Y), expected, rtol=1e-10, atol=0)


def test_local_transition_pdf_is_the_gaussian_mixture():
    X, w = _population()
    tr = abc.LocalTransition(k=20, scaling=0.8)
    tr.fit(X, w)
    covs = _local_covariances(X, 20, 0.8)
    assert np.allclose(tr.chol @ np.swapaxes(tr.chol, 1, 2), np.array(covs))
    Y = _targets(100)
    expected = sum(wi * st.multivariate_normal(xi, ci).pdf(Y) for xi, ci, wi in zip(X, covs, w))
    assert np.allclose(tr.pdf(Y), expected, rtol=1e-10, atol=0)
    # The default k is a quarter of the population.
    default = abc.LocalTransition()
    default.fit(X, w)
    covs50 = _local_covariances(X, 50, 1.0)
    assert np.allclose(default.chol @ np.swapaxes(default.chol, 1, 2), np.array(covs50))


TRANSITIONS = {
    "mvn": lambda: abc.MultivariateNormalTransition(),
    "local": lambda: abc.LocalTransition(k=15),
}


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
@pytest.mark.parametrize("size", PIECES)
def test_transition_pdf_is_batch_invariant(name, size):
    X, w = _population()
    tr = TRANSITIONS[name]()
    tr.fit(X, w)
    Y = _targets()
    whole = tr.pdf(Y)
    assert np.all(whole > 0)
    pieces = np.concatenate(in_pieces(lambda a, b: tr.pdf(Y[a:b]), N, size))
    assert np.array_equal(whole, pieces)
    # Blocks inside pdf (bounded memory) change nothing either.
    with dask.config.set({"abc.kernel.block-elements": 200 * 2 * 2 * 7}):
        assert np.array_equal(tr.pdf(Y), whole)


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
@pytest.mark.parametrize("size", PIECES)
def test_transition_rvs_from_is_batch_invariant(name, size):
    X, w = _population()
    tr = TRANSITIONS[name]()
    tr.fit(X, w)
    s = rng.IndexStreams(4, 1)
    u, z = s.uniforms(np.arange(N), rng.ANCESTOR)[:, 0], s.normals(np.arange(N), rng.NORMALS, 2)
    whole = tr.rvs_from(u, z)
    pieces = np.concatenate(in_pieces(lambda a, b: tr.rvs_from(u[a:b], z[a:b]), N, size))
    assert np.array_equal(whole, pieces)


def _mixture_moments(X, w, kernel_covs):
    mean = w @ X
    spread = ((X - mean).T * w) @ (X - mean)
    return mean, spread + np.tensordot(w, kernel_covs, axes=1)


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_transition_rvs_from_moments(name):
    X, w = _population()
    tr = TRANSITIONS[name]()
    tr.fit(X, w)
    n = 100_000
    r = np.random.default_rng(11)
    Y = tr.rvs_from(r.uniform(size=n), r.normal(size=(n, 2)))
    if name == "mvn":
        kernel_covs = np.repeat(tr.cov[None], len(X), axis=0)
    else:
        kernel_covs = tr.chol @ np.swapaxes(tr.chol, 1, 2)
    mean, cov = _mixture_moments(X, w, kernel_covs)
    # Standard errors are about sd / sqrt(n) = 0.005: tolerance 0.03 on the mean and
    # 3% of the scale on the covariance.
    assert np.allclose(Y.mean(axis=0), mean, atol=0.03)
    assert np.allclose(np.cov(Y, rowvar=False), cov, atol=0.03 * np.abs(cov).max())
    # With zero normals a proposal is its ancestor, chosen with probability w_i.
    Y0 = tr.rvs_from(r.uniform(size=n), np.zeros((n, 2)))
    match = (Y0[:, None, :] == X[None, :, :]).all(axis=-1)
    assert np.all(match.sum(axis=1) == 1)
    # Binomial sd of a frequency is at most 0.0003: tolerance 0.002.
    assert np.allclose(match.mean(axis=0), w, atol=0.002)


@pytest.mark.parametrize("n_models, stay", [(2, 0.7), (3, 0.6), (4, 0.25)])
def test_model_perturbation_kernel(n_models, stay):
    k = abc.ModelPerturbationKernel(n_models, probability_to_stay=stay)
    targets = np.arange(n_models)
    r = np.random.default_rng(n_models)
    for m_old in range(n_models):
        pmf = k.pmf(targets, m_old)
        assert pmf.sum() == pytest.approx(1.0)
        assert pmf[m_old] == pytest.approx(stay)
        m = k.rvs_from(np.full(100_000, m_old), r.uniform(size=100_000))
        freq = np.bincount(m, minlength=n_models) / m.size
        # Binomial sd at most 0.0016: tolerance 0.01.
        assert np.allclose(freq, pmf, atol=0.01)


def test_model_perturbation_kernel_single_model():
    k = abc.ModelPerturbationKernel(1, probability_to_stay=0.3)
    assert k.probability_to_stay == 1.0
    assert np.array_equal(k.pmf(np.array([0]), 0), [1.0])
    assert np.array_equal(k.rvs_from(np.zeros(10, int), np.linspace(0, 0.99, 10)), np.zeros(10))
    with pytest.raises(ValueError, match="probability_to_stay"):
        abc.ModelPerturbationKernel(2, probability_to_stay=1.5)


# -- the generation spec ---------------------------------------------------------------


def two_parameter_model(p):
    z = np.random.normal(size=3)
    return {"s1": p["a"] + 0.5 * z[0], "s2": p.b * p.b + z[1],
            "arr": np.array([p["a"] + p["b"], p["a"] - p["b"]]) + 0.3 * z[1:]}


def other_model(p, rng=None):
    z = rng.normal(size=3)
    return {"s1": p["c"] + z[0], "s2": 1.0 + z[1], "arr": np.array([p["c"], 0.0]) + z[1:]}


OBSERVED_2 = {"s1": 0.5, "s2": 1.3, "arr": np.array([1.0, -0.5])}


@pytest.fixture(scope="module", params=["mvn", "local", "adaptive-two-models"])
def next_spec(request):
    if request.param == "adaptive-two-models":
        models = [two_parameter_model, other_model]
        priors = [abc.Distribution(a=abc.RV("norm", 0, 2), b=abc.RV("uniform", -3, 6)),
                  abc.Distribution(c=abc.RV("norm", 0, 2))]
        kwargs = {"distance_function": abc.AdaptivePNormDistance(p=2)}
    else:
        models = two_parameter_model
        priors = abc.Distribution(a=abc.RV("norm", 0, 2), b=abc.RV("uniform", -3, 6))
        kwargs = {"transitions": TRANSITIONS[request.param]()}
    smc = abc.ABCSMC(models, priors, population_size=200, sampler=SingleCoreSampler(),
                     seed=11, **kwargs)
    history = smc.new("sqlite://", OBSERVED_2)
    smc.run(max_nr_populations=2)
    assert history.n_populations == 2
    t = history.max_t + 1
    spec = smc._spec(t, smc.eps(t), smc._population, False)
    history.close()
    return spec


FIELDS = ["index", "model", "theta", "distance", "weight", "sum_stats"]


@pytest.mark.parametrize("size", PIECES + [64, 1000])
def test_generation_spec_is_batch_invariant(next_spec, size):
    whole = next_spec.evaluate(0, N)
    assert whole.n_evaluated == N
    assert 0 < whole.n_accepted < N  # some accepted, some rejected: acceptance matters
    assert np.all(whole.weight > 0)
    pieces = in_pieces(lambda a, b: next_spec.evaluate(a, b - a), N, size)
    assert sum(p.n_evaluated for p in pieces) == N
    for field in FIELDS:
        joined = np.concatenate([getattr(p, field) for p in pieces])
        assert np.array_equal(getattr(whole, field), joined, equal_nan=True), field


def test_generation_spec_evaluate_needed_stops_at_the_nth_acceptance(next_spec):
    whole = next_spec.evaluate(0, N)
    needed = 10
    part = next_spec.evaluate(0, N, needed=needed)
    assert part.n_accepted == needed
    assert part.n_evaluated == whole.index[needed - 1] + 1
    for field in FIELDS:
        assert np.array_equal(getattr(part, field), getattr(whole, field)[:needed],
                              equal_nan=True), field


@pytest.mark.parametrize("scale", [
    distance_module.mean_absolute_deviation,
    distance_module.standard_deviation,
    distance_module.median_absolute_deviation_to_observation,
    distance_module.mean_absolute_deviation_to_observation,
    distance_module.root_mean_square_deviation,
])
def test_adaptive_distance_with_pyabc_scale_functions(scale):
    X = np.random.default_rng(5).normal(size=(200, 3)) * np.array([1.0, 10.0, 100.0])
    x0 = np.array([0.5, -1.0, 2.0])
    d = abc.AdaptivePNormDistance(p=1, scale_function=scale)
    d.configure(SumStatLayout(["a", "b", "c"], [(), (), ()]))
    d.initialize(0, X, x0)
    w = 1 / scale(X, x0)
    assert np.allclose(d.weights_for(0), w * 3 / w.sum())
    assert d.weights_for(0)[0] > d.weights_for(0)[1] > d.weights_for(0)[2]
