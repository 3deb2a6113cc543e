"""Bad input gets a clear error before sampling (and a failing model mid-run a clear one
after the completed generations are safe in the database)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import dask_abc as abc
from dask_abc.sampler import SingleCoreSampler

OBSERVED = {"y": 1.0}
PRIOR_A = abc.Distribution(a=abc.RV("norm", 0, 1))


class Counted:
    """A model that records its calls (in this process: use SingleCoreSampler)."""

    def __init__(self, function, name):
        self.function, self.__name__, self.calls = function, name, []

    def __call__(self, p):
        self.calls.append(dict(p))
        return self.function(p)


def make_smc(models, priors, distance=None, seed=3, **kwargs):
    return abc.ABCSMC(models, priors, distance, population_size=100,
                      sampler=SingleCoreSampler(), seed=seed, **kwargs)


@pytest.fixture
def db(tmp_path):
    """An existing dask-abc database without runs."""
    path = tmp_path / "bad.db"
    abc.History(str(path)).close()
    return path


def assert_no_run(path):
    with abc.History(str(path)) as h:
        assert len(h.all_runs()) == 0
        assert h.n_populations == 0


def new_fails(smc, db, exc, match, observed=OBSERVED):
    with pytest.raises(exc, match=match) as info:
        smc.new("sqlite:///" + str(db), observed)
    assert_no_run(db)
    return str(info.value)


# -- pre-flight errors in new() -----------------------------------------------------------


def test_parameter_the_prior_does_not_define(db):
    model = Counted(lambda p: {"y": p["a"] + p["b"]}, "needs_b")
    msg = new_fails(make_smc(model, PRIOR_A), db, KeyError, "'b'")
    assert "needs_b" in msg and "['a']" in msg
    assert len(model.calls) == 1


def test_parameter_the_prior_does_not_define_by_attribute(db):
    model = Counted(lambda p: {"y": p.a * p.sigma}, "needs_sigma")
    prior = abc.Distribution(a=abc.RV("norm", 0, 1), mu=abc.RV("norm", 0, 1))
    msg = new_fails(make_smc(model, prior), db, KeyError, "'sigma'")
    assert "needs_sigma" in msg and "['a', 'mu']" in msg
    assert len(model.calls) == 1


def test_second_model_with_a_bad_prior_is_named(db):
    good = Counted(lambda p: {"y": p["a"]}, "good")
    bad = Counted(lambda p: {"y": p["c"]}, "bad")
    prior_b = abc.Distribution(b=abc.RV("uniform", 0, 1))
    msg = new_fails(make_smc([good, bad], [PRIOR_A, prior_b]), db, KeyError, "'c'")
    assert "'bad'" in msg and "['b']" in msg and "'good'" not in msg
    assert len(good.calls) <= 1 and len(bad.calls) == 1


def test_model_keys_differ_from_observed_data(db):
    model = Counted(lambda p: {"y2": p["a"], "extra": 1.0}, "wrong_keys")
    msg = new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, "keys different")
    assert "'wrong_keys'" in msg
    assert "missing ['y']" in msg
    assert "unexpected ['extra', 'y2']" in msg
    assert len(model.calls) == 1


def test_model_missing_one_of_several_keys(db):
    model = Counted(lambda p: {"y": p["a"]}, "too_few")
    msg = new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, r"missing \['z'\]",
                    observed={"y": 1.0, "z": [1.0, 2.0]})
    assert "'too_few'" in msg and "unexpected []" in msg
    assert len(model.calls) == 1


def test_model_not_returning_a_dict(db):
    model = Counted(lambda p: p["a"], "returns_float")
    msg = new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, "expected a dict")
    assert "'returns_float'" in msg and "float" in msg
    assert len(model.calls) == 1


def test_non_numeric_statistic(db):
    model = Counted(lambda p: {"y": p["a"], "label": "high" if p["a"] > 0 else "low"},
                    "with_label")
    msg = new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, "'label' is not numeric",
                    observed={"y": 1.0, "label": 0.0})
    assert "'with_label'" in msg
    assert len(model.calls) == 1


def test_statistic_with_the_wrong_shape(db):
    model = Counted(lambda p: {"y": [p["a"], p["a"]]}, "pair")
    msg = new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, r"'y' has shape \(2,\)",
                    observed={"y": [1.0, 2.0, 3.0]})
    assert "'pair'" in msg and "(3,)" in msg
    assert len(model.calls) == 1


def nan_distance(x, x0):
    return float("nan")


def test_distance_returning_nan_fails_before_sampling(db):
    model = Counted(lambda p: {"y": p["a"]}, "fine")
    msg = new_fails(make_smc(model, PRIOR_A, nan_distance), db, ValueError, "distance")
    assert "nan" in msg and "'fine'" in msg
    assert len(model.calls) == 1


def test_distance_returning_nan_names_the_callable(db):
    """The user wrote ``nan_distance``; the message should say so, not only the wrapper's
    class name ``FunctionDistance``."""
    model = Counted(lambda p: {"y": p["a"]}, "fine")
    msg = new_fails(make_smc(model, PRIOR_A, nan_distance), db, ValueError, "nan")
    assert "nan_distance" in msg


class NaNDistance(abc.Distance):
    def batch(self, X, x0, t):
        return np.full(len(X), np.nan)


def test_distance_subclass_returning_nan_is_named(db):
    model = Counted(lambda p: {"y": p["a"]}, "fine")
    new_fails(make_smc(model, PRIOR_A, NaNDistance()), db, ValueError, "NaNDistance")
    assert len(model.calls) == 1


def test_model_raising_at_the_first_call(db):
    model = Counted(lambda p: {"y": 1 / 0}, "divides")
    msg = new_fails(make_smc(model, PRIOR_A), db, abc.ModelError, "'divides'")
    assert "ZeroDivisionError" in msg
    assert len(model.calls) == 1


def test_observed_data_must_be_a_dict(db):
    model = Counted(lambda p: {"y": p["a"]}, "fine")
    new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, "dict", observed=[1.0, 2.0])
    new_fails(make_smc(model, PRIOR_A), db, ValueError, "observed", observed=None)
    new_fails(make_smc(model, PRIOR_A), db, abc.SumStatError, "'y' is not numeric",
              observed={"y": "one"})
    assert model.calls == []


# -- errors in the constructor ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, -5, 2.5, "100", True])
def test_population_size_must_be_a_positive_integer(size):
    with pytest.raises(ValueError, match="population_size"):
        abc.ABCSMC(lambda p: {"y": p["a"]}, PRIOR_A, population_size=size,
                   sampler=SingleCoreSampler())


def test_population_size_one_is_allowed():
    smc = abc.ABCSMC(lambda p: {"y": p["a"]}, PRIOR_A, population_size=1,
                     sampler=SingleCoreSampler())
    assert smc.population_size == 1


def test_number_of_models_and_priors_must_match():
    with pytest.raises(ValueError, match=r"2 model\(s\) but 1 parameter prior"):
        abc.ABCSMC([lambda p: {"y": 1.0}, lambda p: {"y": 2.0}], PRIOR_A,
                   sampler=SingleCoreSampler())
    with pytest.raises(ValueError, match=r"1 model\(s\) but 3 parameter prior"):
        abc.ABCSMC(lambda p: {"y": 1.0}, [PRIOR_A] * 3, sampler=SingleCoreSampler())


def test_prior_must_be_a_distribution():
    with pytest.raises(TypeError, match="Distribution"):
        abc.ABCSMC(lambda p: {"y": 1.0}, {"a": abc.RV("norm", 0, 1)},
                   sampler=SingleCoreSampler())


# -- a model failing during sampling ---------------------------------------------------


def fragile(p):
    if p["theta"] > 2.5:
        raise FloatingPointError(f"unstable at theta={p['theta']}")
    return {"y": p["theta"] + np.random.normal()}


PRIOR_THETA = abc.Distribution(theta=abc.RV("norm", 0, 3))


def test_model_failing_during_sampling(tmp_path):
    path = tmp_path / "fails.db"
    model = Counted(fragile, "fragile")
    smc = make_smc(model, PRIOR_THETA, seed=3)
    smc.new("sqlite:///" + str(path), {"y": 2.0})
    assert len(model.calls) == 1  # the pre-flight check passed
    with pytest.raises(abc.ModelError, match="'fragile'") as info:
        smc.run(max_nr_populations=3)
    err = info.value
    assert len(model.calls) > 2  # it failed while sampling, not at the first check
    assert err.model == "fragile"
    assert isinstance(err.parameter, dict) and set(err.parameter) == {"theta"}
    assert err.parameter["theta"] > 2.5
    assert err.parameter == model.calls[-1]
    assert "FloatingPointError" in str(err) and "unstable" in str(err)
    assert str(err.parameter["theta"]) in str(err)
    assert isinstance(err.__cause__, FloatingPointError)
    with pytest.raises(FloatingPointError):  # the parameter reproduces the failure
        fragile(err.parameter)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.model, copy.parameter, copy.index) == (err.model, err.parameter, err.index)
    with abc.History("sqlite:///" + str(path)) as h:
        assert h.stop_reason.startswith("failed")
        assert "ModelError" in h.stop_reason


def test_completed_generations_survive_a_failing_model(tmp_path):
    path = tmp_path / "partial.db"
    armed = []

    def later_fragile(p):
        if armed and p["theta"] > 2.5:
            raise FloatingPointError("unstable")
        return {"y": p["theta"] + np.random.normal()}

    smc = make_smc(later_fragile, PRIOR_THETA, seed=3)
    smc.new("sqlite:///" + str(path), {"y": 2.5})
    smc.run(max_nr_populations=2)
    armed.append(True)  # from now on, large theta breaks the model
    with pytest.raises(abc.ModelError, match="'later_fragile'") as info:
        smc.run(max_nr_populations=2)
    assert info.value.parameter["theta"] > 2.5
    assert info.value.t == 2
    with abc.History("sqlite:///" + str(path)) as h:
        assert h.n_populations >= 1
        assert h.n_populations == 2
        assert h.all_runs()["stop_reason"].iloc[0].startswith("failed")
        assert h.stop_reason.startswith("failed: ModelError")
        df, w = h.get_distribution(0, 1)
        assert len(df) == 100 and w.sum() == pytest.approx(1.0)
