"""ABCSMC: the generation loop, stopping rules, calibration, weights and ESS.

It knows nothing about processes or clusters: each generation is a
:class:`~dask_abc.generation.GenerationSpec` handed to a sampler.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping

import cloudpickle
import numpy as np

from . import config, fingerprint
from .acceptor import Acceptor, to_acceptor
from .distance import Distance, to_distance
from .epsilon import ConstantEpsilon, Epsilon, MedianEpsilon
from .generation import GenerationSpec
from .model import MODEL_ERRORS, Model, to_model
from .observers import GenerationObserver, GenerationOutcome, Observers
from .population import Population
from .progress import GenerationProgress
from .random_variables import RV, Distribution
from .sample import SampleCollector
from .sampler import Sampler, default_sampler
from .storage import DatabaseError, History
from .storage.journal import Journal
from .sumstat import SumStatLayout, identity
from .transition import ModelPerturbationKernel, MultivariateNormalTransition, Transition

logger = logging.getLogger("dask_abc")


class SetupChangedError(DatabaseError):
    """The setup of an ABCSMC differs from the one stored with the run it loads."""


def _as_list(x) -> list:
    return list(x) if isinstance(x, list | tuple) else [x]


def _population_size(population_size) -> int:
    n = getattr(population_size, "nr_particles", population_size)  # pyABC's ConstantPopulationSize
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"population_size must be an integer >= 1, got {population_size!r}")
    return int(n)


def _model_errors(model_errors) -> str:
    if model_errors not in MODEL_ERRORS:
        raise ValueError(f"model_errors must be one of {', '.join(map(repr, MODEL_ERRORS))}, "
                         f"got {model_errors!r}")
    return model_errors


class ABCSMC:
    """Approximate Bayesian computation by sequential Monte Carlo (pyABC's interface).

    Parameters
    ----------
    models : callable or list of callables
        ``model(parameter) -> dict``; several models for model selection.
    parameter_priors : Distribution or list of Distribution
        One prior per model.
    distance_function : Distance or callable, optional
        Default :class:`~dask_abc.PNormDistance` (p=2); a plain callable
        ``f(x, x0) -> float`` works too.
    population_size : int
        Accepted particles per generation.
    summary_statistics : callable
        Applied to every model output; default identity.
    model_prior : RV, optional
        Prior over model indices; default uniform.
    model_perturbation_kernel : ModelPerturbationKernel, optional
        Default: stay with probability 0.7.
    transitions : Transition or list of Transition, optional
        Default :class:`~dask_abc.MultivariateNormalTransition` per model.
    eps : Epsilon or float, optional
        Default :class:`~dask_abc.MedianEpsilon`; a number means a constant threshold.
    sampler : Sampler, optional
        Default: see :func:`~dask_abc.sampler.default_sampler`.
    acceptor : Acceptor or callable, optional
        Default: accept when distance <= epsilon.
    stop_if_only_single_model_alive : bool
        Stop when one model is left.
    max_nr_recorded_particles : int
        At most this many statistics per generation feed adaptive distances.
    seed : int, optional
        The seed; the whole run depends only on it and the configuration.
        Drawn at random (and stored) if not given.
    model_errors : {"raise", "reject"}
        What a simulation that raises does: ``"raise"`` (default) stops the run with a
        :class:`~dask_abc.ModelError` naming the model and parameter; ``"reject"``
        counts it as a rejected evaluation (distance infinity), on every sampler
        alike. Failures are counted per generation (``failed_samples`` of
        :meth:`History.get_all_populations`) and the first few logged; a
        generation whose first ``max(population_size, 100)`` evaluations all fail
        raises :class:`~dask_abc.AllEvaluationsFailed`. See docs/sampling.md.

    Examples
    --------
    >>> import dask_abc as abc
    >>> def model(p):
    ...     return {"y": p["theta"] + np.random.normal()}
    >>> prior = abc.Distribution(theta=abc.RV("norm", 0, 3))
    >>> smc = abc.ABCSMC(model, prior, population_size=50, seed=1,
    ...                  sampler=abc.sampler.SingleCoreSampler())
    >>> history = smc.new("sqlite://", {"y": 1.0})
    >>> history = smc.run(max_nr_populations=2)
    >>> history.n_populations
    2
    """

    def __init__(self, models, parameter_priors, distance_function=None, population_size=100,
                 summary_statistics: Callable = identity, model_prior: RV | None = None,
                 model_perturbation_kernel: ModelPerturbationKernel | None = None,
                 transitions=None, eps=None, sampler: Sampler | None = None,
                 acceptor: Acceptor | None = None, stop_if_only_single_model_alive: bool = False,
                 max_nr_recorded_particles: float = np.inf, seed: int | None = None,
                 model_errors: str = "raise"):
        # what is stored with a run, to check a resume against and to resume from alone
        self._setup = dict(
            models=models, parameter_priors=parameter_priors,
            distance_function=distance_function, population_size=population_size,
            summary_statistics=summary_statistics, model_prior=model_prior,
            model_perturbation_kernel=model_perturbation_kernel, transitions=transitions,
            eps=eps, acceptor=acceptor,
            stop_if_only_single_model_alive=stop_if_only_single_model_alive,
            max_nr_recorded_particles=max_nr_recorded_particles, model_errors=model_errors)
        self.models: list[Model] = [to_model(m, i) for i, m in enumerate(_as_list(models))]
        self.parameter_priors: list[Distribution] = self._priors(parameter_priors)
        n_models = len(self.models)
        self.population_size = _population_size(population_size)
        self.distance_function: Distance = to_distance(distance_function)
        if not callable(summary_statistics):
            raise TypeError("summary_statistics must be callable")
        self.summary_statistics = summary_statistics
        self.model_prior = model_prior if model_prior is not None else RV("randint", 0, n_models)
        self._model_prior_p = self._model_prior_probabilities()
        self.model_perturbation_kernel = (model_perturbation_kernel
                                          or ModelPerturbationKernel(n_models, 0.7))
        self.transitions: list[Transition] = self._transitions(transitions, n_models)
        if eps is None:
            eps = MedianEpsilon()
        elif isinstance(eps, int | float):
            eps = ConstantEpsilon(eps)
        if not isinstance(eps, Epsilon):
            raise TypeError(f"eps must be an Epsilon or a number, got {eps!r}")
        self.eps = eps
        self.sampler = sampler if sampler is not None else default_sampler()
        self.acceptor = to_acceptor(acceptor)
        self.stop_if_only_single_model_alive = stop_if_only_single_model_alive
        self.max_nr_recorded_particles = max_nr_recorded_particles
        self.model_errors = _model_errors(model_errors)
        self.seed = None if seed is None else int(seed)
        self.history: History | None = None
        self._layout: SumStatLayout | None = None
        self._x0: np.ndarray | None = None
        self._population: Population | None = None
        self.eps_values: dict[int, float] = {}  # the threshold used in every generation
        self._checkpoint: Journal | None = None  # the running generation's, during runs
        self._observers = Observers()
        self.observers: list[GenerationObserver] = []  # the user's, heard in every run()
        # the share of the calibration sample within eps(0): generation 0's expected
        # acceptance rate, which samplers size their first ranges by
        self._calibration_hint: float | None = None
        # models that draw from numpy's global random state (None: not checked yet)
        self._global_rng_models: tuple[str, ...] | None = None

    # -- setup -----------------------------------------------------------------

    def _priors(self, parameter_priors) -> list[Distribution]:
        """One :class:`Distribution` per model."""
        priors = _as_list(parameter_priors)
        if len(priors) != len(self.models):
            raise ValueError(f"{len(self.models)} model(s) but {len(priors)} parameter "
                             "prior(s): give one prior per model")
        for i, prior in enumerate(priors):
            if not isinstance(prior, Distribution):
                raise TypeError(f"parameter prior {i} (model {self.models[i].name!r}) must be a "
                                f"Distribution, got {type(prior).__name__}")
        return priors

    def _model_prior_probabilities(self) -> np.ndarray:
        n = len(self.models)
        p = np.array([float(self.model_prior.pdf(m)) for m in range(n)])
        if not (np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() > 0):
            raise ValueError(f"model_prior gives probabilities {p.tolist()} to models 0..{n - 1}")
        return p / p.sum()

    @staticmethod
    def _transitions(transitions, n_models: int) -> list[Transition]:
        if transitions is None:
            return [MultivariateNormalTransition() for _ in range(n_models)]
        if isinstance(transitions, Transition):
            return [copy.deepcopy(transitions) for _ in range(n_models)]
        transitions = list(transitions)
        if len(transitions) != n_models:
            raise ValueError(f"{n_models} model(s) but {len(transitions)} transitions")
        return transitions

    def _configure(self, observed: Mapping) -> None:
        self._layout = SumStatLayout.from_observed(observed)
        self._x0 = self._layout.flatten(observed, who="observed data")
        self.distance_function.configure(self._layout)

    def _spec(self, t: int, eps: float, population: Population | None,
              record_all: bool) -> GenerationSpec:
        fitted = None
        if population is not None:
            fitted = []
            for j, transition in enumerate(self.transitions):
                rows = np.flatnonzero(population.model == j)
                if population.model_probabilities[j] > 0 and rows.size:
                    d = self.parameter_priors[j].dim
                    transition.fit(population.theta[rows, :d], population.weight[rows])
                    fitted.append(transition)
                else:
                    fitted.append(None)
        return GenerationSpec(
            t=t, seed=self.seed, models=self.models, priors=self.parameter_priors,
            model_prior=self._model_prior_p, model_kernel=self.model_perturbation_kernel,
            previous_model_probabilities=(None if population is None
                                          else population.model_probabilities),
            transitions=fitted or [None] * len(self.models),
            summary_statistics=self.summary_statistics, distance=self.distance_function,
            layout=self._layout, x0=self._x0, eps=eps, acceptor=self.acceptor,
            record_all_sum_stats=record_all, global_rng_models=self._global_rng_models,
            model_errors=self.model_errors)

    def _open(self, db) -> History:
        if isinstance(db, History):
            db.conn  # noqa: B018 - raises if closed
            return db
        return History(db)

    @staticmethod
    def _open_existing(db, abc_id: int | None) -> History:
        """``db`` if it is a History, else run ``abc_id`` of the existing database ``db``."""
        return db if isinstance(db, History) else History(db, abc_id=abc_id, create=False)

    def new(self, db, observed_sum_stat: Mapping | None = None, *, gt_model: int | None = None,
            gt_par: Mapping | None = None, meta_info: Mapping | None = None) -> History:
        """Start a new run in the database ``db`` with the observed data.

        Every model is run once on a prior sample first, so that a bad setup
        (parameter names, statistic keys and types, a distance that is not a
        number) fails here, before any sampling and before the run is stored.
        """
        if observed_sum_stat is None:
            raise ValueError("new() needs the observed data (observed_sum_stat)")
        if self.seed is None:
            self.seed = int(np.random.SeedSequence().entropy % 2**63)
        self._configure(observed_sum_stat)
        self._global_rng_models = self._spec(-1, np.inf, None, False).check()
        description = self._describe_setup()
        history = self._open(db)
        history.create_run(
            seed=self.seed, model_names=[m.name for m in self.models],
            parameter_names=[p.get_parameter_names() for p in self.parameter_priors],
            layout=self._layout, observed=observed_sum_stat, observed_flat=self._x0,
            gt_model=gt_model, gt_par=gt_par, meta_info=meta_info)
        self._store_setup(history, description)
        self.history, self._population = history, None
        logger.info("new run %d in %s (seed %d)", history.id, history.db, self.seed)
        return history

    def load(self, db, abc_id: int = 1, observed_sum_stat: Mapping | None = None, *,
             ignore_setup_changes: bool = False) -> History:
        """Continue run ``abc_id`` of ``db`` where it stopped.

        The run may have ended, failed or been killed at any instant: the next
        :meth:`run` continues from the last completed generation and reuses the
        results the running generation had streamed to the database, so the
        result is identical to an uninterrupted run's. This ABCSMC must have the
        setup stored with the run (models, priors, distance, epsilon,
        transitions, ...); a difference raises :class:`SetupChangedError` naming
        it, unless ``ignore_setup_changes`` (then the new setup is stored and
        used from here on).
        """
        history = self._open_existing(db, abc_id)
        return self._load(history, observed_sum_stat,
                          "ignore" if ignore_setup_changes else "check")

    @classmethod
    def from_history(cls, db, abc_id: int | None = 1, *,
                     sampler: Sampler | None = None) -> ABCSMC:
        """The ABCSMC of run ``abc_id`` of ``db``, rebuilt from the setup stored with it
        and loaded: :meth:`run` continues where the run stopped.

        This is what ``dask-abc resume`` does; unlike :meth:`load` it needs no
        script, only that the modules defining the run's models and functions
        are importable here.

        Parameters
        ----------
        db : str, os.PathLike or History
            The database (``sqlite:///`` URL or path), or an open History (kept
            open and used).
        abc_id : int, optional
            The run; None for the latest. Ignored for an open History, whose
            run is used.
        sampler : Sampler, optional
            Samples the continued run (not stored with it); default see
            :func:`~dask_abc.sampler.default_sampler`.

        Raises
        ------
        DatabaseError
            If the database, the run or its stored setup is missing, or the
            setup does not unpickle here.

        Examples
        --------
        >>> import os, tempfile
        >>> import dask_abc as abc
        >>> def model(p):
        ...     return {"y": p["theta"] + np.random.normal()}
        >>> smc = abc.ABCSMC(model, abc.Distribution(theta=abc.RV("norm", 0, 3)),
        ...                  population_size=50, seed=1, sampler=abc.sampler.SingleCoreSampler())
        >>> db = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "run.db")
        >>> _ = smc.new(db, {"y": 1.0})
        >>> smc.run(max_nr_populations=1).close()
        >>> again = abc.ABCSMC.from_history(db, sampler=abc.sampler.SingleCoreSampler())
        >>> again.run(max_nr_populations=1).n_populations
        2
        """
        history = cls._open_existing(db, abc_id)
        try:
            smc = cls(**history.load_setup(), sampler=sampler)
            smc._load(history, setup="trust")  # built from the stored setup
        except BaseException:
            if history is not db:
                history.close()
            raise
        return smc

    def _load(self, history: History, observed_sum_stat: Mapping | None = None,
              setup: str = "check") -> History:
        """``setup``: "check" the stored setup, "ignore" differences (store the new one),
        or "trust" it (this ABCSMC was built from it)."""
        abc_id = history.id
        names = [p.get_parameter_names() for p in self.parameter_priors]
        if history.parameter_names != names:
            raise SetupChangedError(f"run {abc_id} of {history.db!r} has parameters "
                                    f"{history.parameter_names}, this ABCSMC {names}")
        if self.seed is not None and self.seed != history.seed:
            raise SetupChangedError(
                f"run {abc_id} was started with seed {history.seed}, this ABCSMC has seed "
                f"{self.seed}; leave seed=None to continue the run")
        self.seed = history.seed
        self._configure(observed_sum_stat if observed_sum_stat is not None
                        else history.observed_sum_stat())
        # the preflight simulation of new() only for a setup not known to have passed it
        if setup != "trust" and not self._check_setup(history, setup == "ignore"):
            self._global_rng_models = self._spec(-1, np.inf, None, False).check()
        self.history, self._population = history, None
        if history.max_t >= 0:
            self._restore(history)
        logger.info("loaded run %d of %s at generation %d", abc_id, history.db, history.max_t)
        return history

    def _describe_setup(self) -> dict:
        setup = {key: getattr(self, key) for key in (
            "models", "parameter_priors", "distance_function", "population_size",
            "summary_statistics", "model_prior", "model_perturbation_kernel", "transitions",
            "eps", "acceptor", "stop_if_only_single_model_alive", "max_nr_recorded_particles")}
        if self.model_errors != "raise":  # so that runs stored before it existed still match
            setup["model_errors"] = self.model_errors
        return {key: fingerprint.describe(value) for key, value in setup.items()}

    def _store_setup(self, history: History, description: dict) -> None:
        try:
            pickled = cloudpickle.dumps({**self._setup, "seed": self.seed})
        except Exception as e:  # the run works, only `dask-abc resume` cannot rebuild it
            logger.warning("the setup does not pickle (%s: %s): resume this run from your "
                           "script with ABCSMC.load(), not with `dask-abc resume`",
                           type(e).__name__, e)
            pickled = None
        history.store_setup(pickled, description, fingerprint.fingerprint(description))

    def _check_setup(self, history: History, ignore_setup_changes: bool) -> bool:
        """Whether this setup is the stored one; raises if not (unless ignored)."""
        stored = history.setup_description
        if stored is None:
            logger.info("run %d of %s stored no setup: it is not checked", history.id,
                        history.db)
            return False
        current = self._describe_setup()
        if fingerprint.fingerprint(current) == history.setup_hash:
            return True
        lines = fingerprint.differences(stored, current)
        message = (f"the setup differs from the one stored with run {history.id} of "
                   f"{history.db!r}:\n  " + "\n  ".join(lines))
        if not ignore_setup_changes:
            raise SetupChangedError(
                message + "\nA resumed run would not be the run that was started. Pass "
                "ignore_setup_changes=True to load() to continue with the new setup anyway.")
        logger.warning("%s\ncontinuing with the new setup (ignore_setup_changes=True)", message)
        self._store_setup(history, current)
        return False

    def _restore(self, history: History) -> None:
        t = history.max_t
        self._population = history.population(t)
        info = history.get_generation_info()
        states = {}
        for s, eps in zip(info["t"].astype(int), info["epsilon"].astype(float)):
            self.eps_values[s] = eps
            self.eps.restore(s, eps)
            states[s] = history.get_state(s)
            self.distance_function.set_state(s, states[s].get("distance"))
        self.distance_function.set_state(t + 1, states[t].get("next_distance"))
        self._prepare_epsilon(t + 1, self._population)

    # -- the loop ------------------------------------------------------------------

    def _calibrate(self) -> None:
        needs = self.eps.requires_calibration or self.distance_function.requires_calibration
        if not needs:
            self.eps.initialize(0, np.zeros(0), np.zeros(0))
            return
        start = time.perf_counter()
        stored = self.history.get_calibration_arrays()
        if stored is not None:  # a resumed run: calibrated before, from these statistics
            stats = stored["sum_stats"]
        else:
            spec = self._spec(-1, np.inf, None, False)
            sample = self._sample(spec, self.population_size)
            stats = sample.sum_stats
        self.distance_function.initialize(0, stats, self._x0)
        distances = self.distance_function.batch(stats, self._x0, 0)
        self.eps.initialize(0, distances, np.full(len(distances), 1 / len(distances)))
        # generation 0 samples the prior too: its acceptance rate is about this share
        self._calibration_hint = float(np.mean(distances <= self.eps(0))) or None
        if stored is None:
            self._observers.on_end(self._outcome(-1, np.inf, f"eps(0) = {self.eps(0):.4g}"))
            self.history.store_calibration(
                sample.n_evaluations, time.perf_counter() - start, theta=sample.theta,
                sum_stats=stats, evaluations_performed=sample.evaluations_performed,
                failed_samples=sample.failed_samples)
            logger.info("calibration: %d prior samples, eps(0) = %.4g (%.2f s)",
                        sample.n_evaluations, self.eps(0), time.perf_counter() - start)

    def _sample(self, spec: GenerationSpec, n: int, max_eval: float = np.inf,
                acceptance_rate_hint: float | None = None):
        """The sampler's sample of ``spec``, resumed from the checkpoint; the observers
        hear of its start, of every returned range and of its end."""
        restored = []
        if self._checkpoint is not None:
            restored = self._checkpoint.begin(spec.t, spec.eps)
            if restored:
                logger.info("generation %d: resuming with %d evaluations (%d ranges) from the "
                            "checkpoint", spec.t, sum(b.n_evaluated for b in restored),
                            len(restored))
        observers = self._observers
        collector = SampleCollector(n, max_eval, restored,
                                    on_batch=observers.on_batch if len(observers) else None,
                                    acceptance_rate_hint=acceptance_rate_hint)
        observers.on_start(spec.t, n, spec.eps, restored)
        try:
            sample = self.sampler.sample(spec, collector)
        except BaseException:
            observers.on_end(self._outcome(spec.t, spec.eps, None))
            raise
        observers.on_sampled(sample)
        _log_failures(spec.t, sample)
        return sample

    def _outcome(self, t: int, eps: float, summary: str | None,
                 population: Population | None = None, seconds: float = 0.0,
                 failed_samples: int = 0):
        return GenerationOutcome(t, eps, summary, population, seconds,
                                 [m.name for m in self.models],
                                 [p.get_parameter_names() for p in self.parameter_priors],
                                 failed_samples)

    def _prepare_epsilon(self, t: int, population: Population) -> None:
        distances = self.distance_function.batch(population.sum_stats, self._x0, t)
        self.eps.update(t, distances, population.weight)

    def run(self, minimum_epsilon: float | None = None, max_nr_populations: float = np.inf,
            min_acceptance_rate: float = 0.0, max_total_nr_simulations: float = np.inf,
            max_walltime: datetime.timedelta | None = None, min_eps_diff: float = 0.0,
            progress: bool = False) -> History:
        """Run generations until a stopping rule holds; returns the History.

        Rules, checked in this order after every generation: the generation
        limit (counted from this call; a call that resumes a killed or failed
        call with the same arguments counts from where that one started, so a
        re-run script ends where an uninterrupted one would), epsilon <=
        ``minimum_epsilon``, epsilon
        change < ``min_eps_diff``, a single model alive (if asked), acceptance
        rate < ``min_acceptance_rate`` (a generation that would need more than
        ``population_size / min_acceptance_rate`` evaluations is stopped early
        and not stored), total simulations >= ``max_total_nr_simulations``,
        wall time > ``max_walltime`` (of this call). The log says which rule stopped
        the run.

        ``progress=True`` shows a progress bar per generation (accepted i/n,
        evaluations, rate; a widget in Jupyter), which keeps the generation's
        summary line when it completes. Any :class:`~dask_abc.GenerationObserver` in
        the list ``self.observers`` hears every generation's start, returned ranges
        and end, as the checkpoint journal and the progress bars do.

        Only one process runs a run at a time (:class:`~dask_abc.RunLockedError`
        names the other). Results are streamed to the database as they return
        (``abc.storage.stream-checkpoints``), so a run killed at any instant
        loses only what was in flight; see :meth:`load`.
        """
        if self.history is None:
            raise RuntimeError("call new() or load() before run()")
        history = self.history
        history.acquire_lock()  # also fails on a closed History, before any work
        call = {"minimum_epsilon": minimum_epsilon, "max_nr_populations": max_nr_populations,
                "min_acceptance_rate": min_acceptance_rate,
                "max_total_nr_simulations": max_total_nr_simulations,
                "max_walltime": None if max_walltime is None else max_walltime.total_seconds(),
                "min_eps_diff": min_eps_diff}
        t = history.max_t + 1
        t_first = self._first_generation_of_call(history, call, t)
        if minimum_epsilon is None:
            minimum_epsilon = -np.inf
        n = self.population_size
        max_eval = n / min_acceptance_rate if min_acceptance_rate > 0 else np.inf
        started = time.perf_counter()
        t_end = t_first + max_nr_populations
        reason = None
        if config.get("storage.stream-checkpoints"):
            self._checkpoint = history.journal()
        self._observers = Observers([
            self._checkpoint, GenerationProgress() if progress else None, *self.observers,
            *self.sampler.observers(f"run {history.id} of {history.db}")])
        try:
            if t == 0:
                self._calibrate()
            while reason is None:
                if t >= t_end:
                    reason = f"maximum number of generations reached ({t})"
                    break
                if t >= self.eps.max_generations():
                    reason = f"all {t} epsilon values of {type(self.eps).__name__} used"
                    break
                reason = self._generation(t, n, max_eval, min_acceptance_rate)
                if reason is None:
                    reason = self._stop_reason(t, minimum_epsilon, min_eps_diff,
                                               min_acceptance_rate, max_total_nr_simulations,
                                               max_walltime, started)
                t += 1
        except BaseException as e:
            self._close_observers()  # the checkpoint keeps what returned, for a resume
            history.done(f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         failed=True)
            raise
        finally:
            self._close_observers()
            self.sampler.stop()
            history.release_lock()
        history.done(reason)
        logger.info("stopped: %s", reason)
        return history

    def _close_observers(self) -> None:
        observers, self._observers, self._checkpoint = self._observers, Observers(), None
        observers.close()

    @staticmethod
    def _first_generation_of_call(history: History, call: dict, t: int) -> int:
        """Where the generation budget of this ``run()`` call counts from: the start of an
        interrupted call with the same arguments (a resume finishes it), else ``t``."""
        call = json.loads(json.dumps(call, default=float))  # as stored: numbers are floats
        previous = history.run_call
        if previous is not None and previous["arguments"] == call:
            if previous["t"] < t:
                logger.info("continuing the interrupted run() call that started at generation "
                            "%d", previous["t"])
            return int(previous["t"])
        history.store_run_call({"arguments": call, "t": t})
        return t

    def _generation(self, t: int, n: int, max_eval: float, min_acceptance_rate: float):
        start = time.perf_counter()
        eps = self.eps(t)
        self.eps_values[t] = eps
        previous = self._population
        record_all = self.distance_function.requires_all_sum_stats
        spec = self._spec(t, eps, previous, record_all)
        sample = self._sample(spec, n, max_eval,
                                   previous.acceptance_rate if previous
                                   else self._calibration_hint)
        if not sample.complete:
            self._observers.on_end(self._outcome(
                t, eps, f"stopped: {sample.n_accepted}/{n} accepted"))
            return (f"acceptance rate below {min_acceptance_rate}: {sample.n_accepted}/{n} "
                    f"accepted in {sample.n_evaluations} evaluations of generation {t} "
                    "(generation not stored)")
        population = Population.from_sample(t, sample, len(self.models))
        if record_all:
            stats = sample.all_sum_stats
            if len(stats) > self.max_nr_recorded_particles:
                stats = stats[: int(self.max_nr_recorded_particles)]
            self.distance_function.update(t + 1, stats, self._x0)
        self._prepare_epsilon(t + 1, population)
        seconds = time.perf_counter() - start
        self.history.append_population(
            t, population, epsilon=eps, evaluations_performed=sample.evaluations_performed,
            failed_samples=sample.failed_samples, seconds=seconds,
            state={"distance": self.distance_function.get_state(t),
                   "next_distance": self.distance_function.get_state(t + 1)})
        self._population = population
        probs = ""
        if len(self.models) > 1:
            probs = ", p(m) " + " ".join(f"{p:.3f}" for p in population.model_probabilities)
        failed = f", {sample.failed_samples} failed" if sample.failed_samples else ""
        summary = (f"eps={eps:.4g}, accepted {n}/{population.samples} "
                   f"({100 * population.acceptance_rate:.2f}%){failed}, "
                   f"ESS {population.ess:.1f}, {seconds:.2f} s{probs}")
        logger.info("t=%d: %s", t, summary)
        self._observers.on_end(self._outcome(t, eps, summary, population, seconds,
                                             sample.failed_samples))
        return None

    def _stop_reason(self, t, minimum_epsilon, min_eps_diff, min_acceptance_rate,
                     max_total_nr_simulations, max_walltime, started) -> str | None:
        eps = self.eps_values[t]
        population = self._population
        if eps <= minimum_epsilon:
            return f"epsilon {eps:.4g} <= minimum_epsilon {minimum_epsilon}"
        if t - 1 in self.eps_values and abs(eps - self.eps_values[t - 1]) < min_eps_diff:
            return (f"epsilon changed by {abs(eps - self.eps_values[t - 1]):.4g} < "
                    f"min_eps_diff {min_eps_diff}")
        alive = int(np.count_nonzero(population.model_probabilities))
        if self.stop_if_only_single_model_alive and alive <= 1:
            return "only a single model alive"
        if population.acceptance_rate < min_acceptance_rate:
            return (f"acceptance rate {population.acceptance_rate:.4g} < min_acceptance_rate "
                    f"{min_acceptance_rate}")
        total = self.history.total_nr_simulations
        if total >= max_total_nr_simulations:
            return (f"total simulations {total} >= max_total_nr_simulations "
                    f"{max_total_nr_simulations}")
        if max_walltime is not None:
            elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
            if elapsed > max_walltime:
                return f"wall time {elapsed} > max_walltime {max_walltime}"
        return None


def _log_failures(t: int, sample) -> None:
    """Log how many evaluations of generation ``t`` failed (``model_errors="reject"``),
    with the errors of the first few."""
    if not sample.failed_samples:
        return
    first = "\n  ".join(f"evaluation {e.index}: model {e.model!r} with parameter "
                        f"{e.parameter}: {e.cause}" for e in sample.first_failures)
    logger.warning("%s: %d of %d evaluations failed and were rejected "
                   "(model_errors='reject'); the first:\n  %s",
                   "calibration" if t < 0 else f"t={t}", sample.failed_samples,
                   sample.n_evaluations, first)
