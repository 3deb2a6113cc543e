"""The generation spec: everything a worker needs to evaluate indices of one generation.

A :class:`GenerationSpec` is built once per generation by :class:`~dask_abc.ABCSMC`,
shipped once to every worker, and evaluated on index ranges. It holds the
previous population only as fitted kernels and arrays, never the ABCSMC object
or the History.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import rng
from .acceptor import Acceptor
from .batch_random import BatchRandom
from .distance import Distance
from .model import Model, ModelError
from .parameters import Parameter
from .particles import Particles
from .random_variables import Distribution
from .reproducibility import draws_from_global_state
from .sumstat import SumStatError, SumStatLayout
from .transition import ModelPerturbationKernel, Transition

#: Proposal attempts per evaluation before giving up on a prior's support.
MAX_PROPOSAL_ATTEMPTS = 10_000

#: Failures whose error a batch result keeps (those of the smallest indices), enough for
#: the first few of a generation, whatever its batches.
KEPT_FAILURES = 3


def _no_failures() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(kw_only=True)
class BatchResult(Particles):
    """Columnar result of evaluating the index range ``[start, start + n_evaluated)``:
    its accepted :class:`~dask_abc.particles.Particles` in index order, weights
    unnormalised."""

    start: int
    n_evaluated: int
    all_sum_stats: np.ndarray | None = None  # (n_evaluated, k) when recorded
    seconds: float = 0.0
    #: the indices whose simulation raised (``model_errors="reject"``), in order
    failed: np.ndarray = field(default_factory=_no_failures)
    #: the errors (:meth:`~dask_abc.model.ModelError.brief`) of the first few of them
    first_failures: tuple[ModelError, ...] = ()

    def __setstate__(self, state: dict) -> None:
        # checkpoints written before failures were recorded have none
        self.__dict__.update({"failed": _no_failures(), "first_failures": ()}, **state)

    @property
    def stop(self) -> int:
        return self.start + self.n_evaluated

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    @classmethod
    def concat(cls, batches: Sequence[BatchResult]) -> BatchResult:
        """One batch of consecutive batches (each starting where the previous stops)."""
        first = batches[0]
        if len(batches) == 1:
            return first
        return cls(start=first.start, n_evaluated=sum(b.n_evaluated for b in batches),
                   all_sum_stats=None if first.all_sum_stats is None else
                   np.concatenate([b.all_sum_stats for b in batches]),
                   seconds=sum(b.seconds for b in batches),
                   failed=np.concatenate([b.failed for b in batches]),
                   first_failures=first_failures(batches), **cls.concat_columns(batches))


def first_failures(batches: Sequence[BatchResult], below: float = np.inf,
                   keep: int = KEPT_FAILURES) -> tuple[ModelError, ...]:
    """The errors of the ``keep`` failures with the smallest indices below ``below`` kept by
    ``batches``."""
    errors = sorted((e for b in batches for e in b.first_failures if e.index < below),
                    key=lambda e: e.index)
    return tuple(errors[:keep])


def _categorical(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    cum = np.cumsum(p)
    return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(p) - 1)


class _Failures:
    """The rows of a range whose simulation raised (``model_errors="reject"``)."""

    def __init__(self, count: int):
        self.mask = np.zeros(count, dtype=bool)
        self.errors: list[ModelError] = []

    def add(self, row: int, error: ModelError, X: np.ndarray) -> None:
        self.mask[row] = True
        X[row] = np.nan  # no statistics: recorded ones are dropped by the collector
        self.errors.append(error)
        if len(self.errors) > KEPT_FAILURES:  # keep those of the smallest indices
            self.errors = sorted(self.errors, key=lambda e: e.index)[:KEPT_FAILURES]

    def first(self) -> tuple[ModelError, ...]:
        return tuple(e.brief() for e in sorted(self.errors, key=lambda e: e.index))


@dataclass(frozen=True)
class GenerationSpec:
    """One generation's proposal, simulation, distance and acceptance.

    Parameters
    ----------
    t : int
        The generation; -1 is the calibration sample (prior, everything accepted).
    seed : int
        The run's seed; evaluation ``i`` draws only from ``(seed, t, i)``.
    models, priors, model_prior, model_kernel
        The models, their parameter priors, the prior over models and the
        model perturbation kernel.
    previous_model_probabilities : ndarray or None
        Model probabilities of generation t-1; None to propose from the prior.
    transitions : list
        Per model, the kernel fitted to generation t-1 (None for dead models).
    summary_statistics, distance, layout, x0, eps, acceptor
        Statistics, distance to the flat observed vector ``x0``, the threshold.
    record_all_sum_stats : bool
        Return the statistics of every evaluation, not only of accepted ones.
    global_rng_models : tuple of str, optional
        Names of the models that draw from numpy's global random state, as found
        by :meth:`check`; None if not known (see
        :meth:`models_drawing_from_global_state`).
    model_errors : {"raise", "reject"}
        A simulation that raises: ``"raise"`` a :class:`~dask_abc.model.ModelError`,
        or ``"reject"`` the evaluation (it counts, is not accepted, and its index is
        listed in the result's ``failed``). A vectorised model's batch call that raises
        is then repeated one row at a time (batches of one), so that exactly the rows
        that fail alone are rejected, whatever the batches.
    """

    t: int
    seed: int
    models: Sequence[Model]
    priors: Sequence[Distribution]
    model_prior: np.ndarray
    model_kernel: ModelPerturbationKernel
    previous_model_probabilities: np.ndarray | None
    transitions: Sequence[Transition | None]
    summary_statistics: Callable
    distance: Distance
    layout: SumStatLayout
    x0: np.ndarray
    eps: float
    acceptor: Acceptor
    record_all_sum_stats: bool = False
    global_rng_models: tuple[str, ...] | None = None
    model_errors: str = "raise"
    names: list = field(init=False, repr=False)
    max_dim: int = field(init=False, repr=False)
    streams: rng.IndexStreams = field(init=False, repr=False)
    any_vectorized: bool = field(init=False, repr=False)

    def __post_init__(self):
        names = [p.get_parameter_names() for p in self.priors]
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "max_dim", max((len(n) for n in names), default=0))
        object.__setattr__(self, "streams", rng.IndexStreams(self.seed, self.t))
        object.__setattr__(self, "any_vectorized", any(m.vectorized for m in self.models))

    # -- proposal ------------------------------------------------------------

    def _from_prior(self, idx, streams, attempt=0):
        u = streams.uniforms(idx, rng.MODEL_CHOICE, 1, attempt)[:, 0]
        m = _categorical(self.model_prior, u)
        theta = np.full((len(idx), self.max_dim), np.nan)
        for j, prior in enumerate(self.priors):
            rows = np.flatnonzero(m == j)
            if rows.size and prior.dim:
                u = streams.uniforms(idx[rows], rng.PRIOR, prior.dim, attempt)
                theta[rows, : prior.dim] = prior.ppf_matrix(u)
        return m, theta

    def _perturbed(self, idx, streams, attempt):
        p_prev = self.previous_model_probabilities
        m_s = _categorical(p_prev, streams.uniforms(idx, rng.MODEL_CHOICE, 1, attempt)[:, 0])
        m = self.model_kernel.rvs_from(m_s, streams.uniforms(idx, rng.MODEL_JUMP, 1, attempt)[:, 0])
        theta = np.full((len(idx), self.max_dim), np.nan)
        valid = np.zeros(len(idx), dtype=bool)
        for j, transition in enumerate(self.transitions):
            rows = np.flatnonzero(m == j)
            if not rows.size or transition is None or self.model_prior[j] == 0:
                continue  # a dead model: propose again
            d = self.priors[j].dim
            u = streams.uniforms(idx[rows], rng.ANCESTOR, 1, attempt)[:, 0]
            z = streams.normals(idx[rows], rng.NORMALS, d, attempt)
            theta[rows, :d] = transition.rvs_from(u, z)
            valid[rows] = self.priors[j].in_support(theta[rows, :d])
        return m, theta, valid

    def propose(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Models and parameters for the indices ``idx`` (all inside the prior's support)."""
        streams = self.streams
        if self.previous_model_probabilities is None:
            return self._from_prior(idx, streams)
        m = np.empty(len(idx), dtype=int)
        theta = np.full((len(idx), self.max_dim), np.nan)
        pending = np.arange(len(idx))
        for attempt in range(MAX_PROPOSAL_ATTEMPTS):
            m_p, theta_p, valid = self._perturbed(idx[pending], streams, attempt)
            m[pending[valid]], theta[pending[valid]] = m_p[valid], theta_p[valid]
            pending = pending[~valid]
            if not pending.size:
                return m, theta
        raise RuntimeError(
            f"generation {self.t}: no proposal inside the prior's support after "
            f"{MAX_PROPOSAL_ATTEMPTS} attempts for evaluations {idx[pending][:5].tolist()}; "
            "check the priors and the transitions' scaling"
        )

    def weights(self, m: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Importance weights prior / proposal of accepted evaluations (unnormalised)."""
        if self.previous_model_probabilities is None:
            return np.ones(len(m))
        p_prev = self.previous_model_probabilities
        w = np.zeros(len(m))
        for j, transition in enumerate(self.transitions):
            rows = np.flatnonzero(m == j)
            if not rows.size:
                continue
            d = self.priors[j].dim
            th = theta[rows, :d]
            model_factor = (p_prev * self.model_kernel.pmf(j, np.arange(len(p_prev)))).sum()
            prior = self.model_prior[j] * self.priors[j].pdf_matrix(th)
            w[rows] = prior / (model_factor * transition.pdf(th))
        return w

    # -- simulation ----------------------------------------------------------

    def parameter(self, m: int, theta_row: np.ndarray) -> Parameter:
        names = self.names[m]
        return Parameter(zip(names, theta_row[: len(names)].tolist()))

    def simulate(self, m: int, theta_row: np.ndarray, seed: int, index: int) -> np.ndarray:
        """Run model ``m`` once and return its flat statistics."""
        model = self.models[m]
        par = self.parameter(m, theta_row)
        np.random.seed(seed)
        try:
            gen = np.random.Generator(np.random.PCG64(seed)) if model.wants_rng else None
            stats = self.summary_statistics(model.sample(par, gen))
        except Exception as e:
            raise ModelError(model.name, par, index, self.t, traceback.format_exc()) from e
        return self.layout.flatten(stats, who=f"model {model.name!r}")

    def simulate_batch(self, m: int, theta_rows: np.ndarray, indices: np.ndarray,
                       streams: rng.IndexStreams | None = None) -> np.ndarray:
        """Run vectorised model ``m`` once on a batch and return flat statistics (rows)."""
        model, names = self.models[m], self.names[m]
        pars = Parameter({n: theta_rows[:, k].copy() for k, n in enumerate(names)})
        random = BatchRandom(streams or self.streams, indices)
        try:
            stats = self.summary_statistics(model.sample_batch(pars, random))
        except Exception as e:
            first = self.parameter(m, theta_rows[0])
            raise ModelError(model.name, first, int(indices[0]), self.t,
                             f"(a batch of {len(indices)} evaluations; the parameter shown is "
                             f"the first)\n{traceback.format_exc()}") from e
        return self.layout.flatten_batch(stats, len(indices), who=f"model {model.name!r}")

    def _simulate_row(self, m: int, theta, seeds, idx, X, r: int, failures: _Failures) -> None:
        try:
            X[r] = self.simulate(m, theta[r], seeds[r], int(idx[r]))
        except ModelError as error:
            if self.model_errors == "raise":
                raise
            failures.add(r, error, X)

    def _simulate_block(self, m: int, theta, idx, X, rows: np.ndarray,
                        failures: _Failures) -> None:
        """Vectorised model ``m`` on ``rows``; if the call raises and failures are rejected,
        each row again alone, so that exactly the rows that fail alone are rejected."""
        try:
            X[rows] = self.simulate_batch(m, theta[rows], idx[rows])
            return
        except ModelError as error:
            if self.model_errors == "raise":
                raise
            if len(rows) == 1:
                failures.add(rows[0], error, X)
                return
        for r in rows:
            try:
                X[r] = self.simulate_batch(m, theta[r:r + 1], idx[r:r + 1])[0]
            except ModelError as error:
                failures.add(r, error, X)

    def _simulate_rows(self, m, theta, idx, seeds, X, lo: int, hi: int, failures: _Failures,
                       stop: Callable[[], bool] | None = None) -> bool:
        """Fill ``X[lo:hi]``: vectorised models once per model, others row by row.

        False if ``stop`` said so before a row (the rows are then incomplete).
        """
        if not self.any_vectorized:
            for r in range(lo, hi):
                if stop is not None and stop():
                    return False
                self._simulate_row(int(m[r]), theta, seeds, idx, X, r, failures)
            return True
        for j, model in enumerate(self.models):
            rows = lo + np.flatnonzero(m[lo:hi] == j)
            if not rows.size:
                continue
            if stop is not None and stop():
                return False
            if model.vectorized:
                self._simulate_block(j, theta, idx, X, rows, failures)
            else:
                for r in rows:
                    self._simulate_row(j, theta, seeds, idx, X, r, failures)
        return True

    def _judge(self, X, distances, accepted, failed, block: slice) -> None:
        """Distances and acceptance of the rows ``block``; a failed row is at distance
        infinity and never accepted (not even by the calibration's infinite threshold)."""
        ok = ~failed[block]
        if ok.all():
            distances[block] = self.distance.batch(X[block], self.x0, self.t)
            accepted[block] = self.acceptor.accept(distances[block], self.eps)
            return
        distances[block], accepted[block] = np.inf, False
        rows = block.start + np.flatnonzero(ok)
        if rows.size:
            distances[rows] = self.distance.batch(X[rows], self.x0, self.t)
            accepted[rows] = self.acceptor.accept(distances[rows], self.eps)

    def evaluate(self, start: int, count: int, needed: int | None = None,
                 stop: Callable[[], bool] | None = None) -> BatchResult | None:
        """Evaluate indices ``start, …, start + count - 1``.

        Numpy's global random state is reseeded for every simulation and not
        restored (samplers that run in the caller's process restore it).

        Parameters
        ----------
        needed : int, optional
            Stop as soon as this many evaluations are accepted. Sub-batches are
            never larger than the acceptances still needed, so no simulation
            beyond the last needed acceptance runs (vectorised models run the
            whole range in one call instead).
        stop : callable, optional
            Asked before every simulation (every batch call of a vectorised
            model); when it returns True the range is abandoned and ``None``
            returned (its generation was completed elsewhere).
        """
        t0 = time.perf_counter()
        idx = np.arange(start, start + count, dtype=np.int64)
        m, theta = self.propose(idx)
        seeds = self.streams.seeds(idx).tolist()
        X = np.empty((count, self.layout.size))
        accepted = np.zeros(count, dtype=bool)
        distances = np.empty(count)
        failures = _Failures(count)
        pos = n_acc = 0
        while pos < count:
            size = count - pos
            if needed is not None and not self.any_vectorized:
                size = min(size, max(needed - n_acc, 1))
            block = slice(pos, pos + size)
            if not self._simulate_rows(m, theta, idx, seeds, X, pos, pos + size, failures,
                                       stop):
                return None
            self._judge(X, distances, accepted, failures.mask, block)
            n_acc += int(accepted[block].sum())
            pos += size
            if needed is not None and n_acc >= needed:
                break
        acc = np.flatnonzero(accepted[:pos])
        return BatchResult(
            start=start,
            n_evaluated=pos,
            index=idx[acc],
            model=m[acc],
            theta=theta[acc],
            distance=distances[acc],
            weight=self.weights(m[acc], theta[acc]),
            sum_stats=X[acc],
            all_sum_stats=X[:pos] if self.record_all_sum_stats else None,
            seconds=time.perf_counter() - t0,
            failed=idx[:pos][failures.mask[:pos]],
            first_failures=failures.first(),
        )

    # -- pre-flight ----------------------------------------------------------

    def check(self) -> tuple[str, ...]:
        """Run every model once on a prior sample and check its output.

        Raises a clear error before sampling starts: a parameter the model
        asks for that its prior does not define, statistics that do not match
        the observed data, a distance that is not a number. Numpy's global
        random state is left as it was. Returns the names of the models that
        draw from numpy's global random state (see
        :mod:`dask_abc.reproducibility`).
        """
        return self._preflight(validate=True)

    def models_drawing_from_global_state(self) -> tuple[str, ...]:
        """Names of the models that draw from numpy's global random state, which the
        threads of a process share.

        Known from :meth:`check` if it ran for this setup, else found here by running
        each model once; call it where no other thread of this process simulates.
        """
        if self.global_rng_models is None:
            object.__setattr__(self, "global_rng_models", self._preflight(validate=False))
        return self.global_rng_models

    def _preflight(self, validate: bool) -> tuple[str, ...]:
        """Run each model once on a prior sample (the check's key, t = -2); with
        ``validate`` raise on a bad setup. The names of models that moved numpy's
        freshly seeded global random state."""
        streams = rng.IndexStreams(self.seed, -2)
        state = np.random.get_state()
        global_rng = []
        try:
            for j, model in enumerate(self.models):
                idx = np.array([j], dtype=np.int64)
                theta = np.full((1, self.max_dim), np.nan)
                if self.priors[j].dim:
                    theta[0, : self.priors[j].dim] = self.priors[j].ppf_matrix(
                        streams.uniforms(idx, rng.PRIOR, self.priors[j].dim))[0]
                seed = int(streams.seeds(idx)[0])
                try:
                    if model.vectorized:
                        x = self.simulate_batch(j, theta, idx, streams)[0]
                    else:
                        x = self.simulate(j, theta[0], seed, -1)
                        if draws_from_global_state(seed):
                            global_rng.append(model.name)
                except ModelError as e:
                    explained = _explain_model_error(e, self.names[j])
                    if self.model_errors == "reject" and explained is e:
                        continue  # a parameter it fails for: the run rejects such ones
                    raise explained from e.__cause__
                except SumStatError as e:
                    raise SumStatError(f"{e} (parameter {dict(self.parameter(j, theta[0]))})") \
                        from None
                if not validate:
                    continue
                d = self.distance.batch(x[None, :], self.x0, max(self.t, 0))
                if not np.isfinite(d[0]) and not np.isposinf(d[0]):
                    raise ValueError(
                        f"distance {_name(self.distance)} returned {d[0]} for model "
                        f"{model.name!r} at parameter {dict(self.parameter(j, theta[0]))}; "
                        "a distance must be a number"
                    )
        finally:
            np.random.set_state(state)
        return tuple(dict.fromkeys(global_rng))


def _name(obj) -> str:
    """A short name for messages: a class name, or the repr of a wrapped function."""
    cls = type(obj)
    return repr(obj) if cls.__repr__ is not object.__repr__ else cls.__name__


def _explain_model_error(error: ModelError, names: list[str]) -> Exception:
    cause = error.__cause__
    if isinstance(cause, KeyError | AttributeError):
        key = cause.args[0] if cause.args else None
        if isinstance(key, str) and key not in names:
            return KeyError(
                f"model {error.model!r} asks for parameter {key!r}, but its prior defines "
                f"only {names}"
            )
    return error
