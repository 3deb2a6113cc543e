"""What the plot families share: matplotlib on demand, histories, populations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..storage import History


def require_matplotlib():
    """Import matplotlib, or explain how to install it (it is the optional extra "plot")."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install dask-abc[plot]") from err
    return matplotlib


def new_axes(ax=None, size=None):
    """``ax``, or the axes of a new figure; resized to ``size`` (inches) if given."""
    require_matplotlib()
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(layout="constrained")
    if size is not None:
        ax.get_figure().set_size_inches(size)
    return ax


def integer_xticks(ax, rotation=0):
    """Whole-number ticks on the x axis (generations), labels rotated by ``rotation``."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="x", labelrotation=rotation)


# -- histories ----------------------------------------------------------------------------

def as_histories(histories) -> list[History]:
    """One History or a sequence of them, as a non-empty list."""
    if isinstance(histories, History):
        return [histories]
    histories = list(histories)
    if not histories:
        raise ValueError("no histories to plot")
    for h in histories:
        if not isinstance(h, History):
            raise TypeError(f"expected a dask_abc.History or a list of them, got {h!r}")
    return histories


def per_history(values, n: int, what: str, default) -> list:
    """``labels`` or ``colors``: one per history (a single string for one history)."""
    if values is None:
        return [default(i) for i in range(n)]
    if isinstance(values, str):
        values = [values]
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{len(values)} {what} for {n} histories")
    return values


def history_labels(labels, n: int) -> list[str]:
    """``labels``, by default "History 1", "History 2", ..."""
    return per_history(labels, n, "labels", lambda i: f"History {i + 1}")


# -- populations --------------------------------------------------------------------------

def check_model(history: History, m: int) -> None:
    names = history.model_names
    if not 0 <= m < len(names):
        models = ", ".join(f"{i}: {name}" for i, name in enumerate(names))
        raise ValueError(f"model index m={m} is out of range: the run has {len(names)} "
                         f"model(s) ({models})")


def distribution(history: History, m: int = 0, t: int | None = None
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """The particles of model ``m`` in generation ``t`` (default the last) and their weights."""
    check_model(history, m)
    max_t = history.max_t
    if max_t < 0:
        raise ValueError(f"{history!r} has no generation yet")
    if t is not None and not 0 <= t <= max_t:
        raise ValueError(f"generation t={t} does not exist: the run has generations 0..{max_t}")
    df, w = history.get_distribution(m, t)
    if len(df) == 0:
        raise ValueError(f"model {m} has no particles in generation {max_t if t is None else t} "
                         "(its probability is 0)")
    return df, w


def check_parameters(df: pd.DataFrame, names: Sequence[str], where: str) -> None:
    for name in names:
        if name not in df.columns:
            raise ValueError(f"unknown parameter {name!r}: {where} has parameters "
                             f"{list(df.columns)}")


def reference(refval, name: str) -> float:
    """``refval[name]``, the reference value (e.g. the ground truth) of a parameter."""
    try:
        return refval[name]
    except KeyError:
        raise ValueError(f"refval has no value for parameter {name!r}") from None


def population(data, w, names: tuple, m, t, call: str):
    """``(df, w, names)`` for a plot called with ``(df, w, *names)`` or with a History.

    With a History the parameter names arrive one argument early (in ``w``), since
    ``plot(history, "a")`` has no weights; ``m`` and ``t`` select the population.
    """
    if isinstance(data, History):
        given = [v for v in (w, *names) if v is not None]
        if len(given) != len(names):
            usage = ", ".join(["history", *(repr(n) for n in "xy"[: len(names)])])
            raise TypeError(f"with a History call {call}({usage}, m=0, t=None, ...): the "
                            "parameter name(s), then keywords only")
        m = 0 if m is None else m
        df, w = distribution(data, m, t)
        check_parameters(df, given, f"model {m} ({data.model_names[m]})")
        return df, w, given
    if m is not None or t is not None:
        raise TypeError(f"{call}: m and t select a population of a History, "
                        "not of a (df, w) pair")
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{call} takes a DataFrame and weights, or a History; got {data!r}")
    if w is None:
        raise TypeError(f"{call}(df, w, ...): the weights w are missing")
    if None in names:
        raise TypeError(f"{call}(df, w, ...): the parameter name(s) are missing")
    w = np.asarray(w, dtype=float).ravel()
    if len(w) != len(data):
        raise ValueError(f"{len(w)} weights for {len(data)} rows of df")
    check_parameters(data, names, "df")
    return data, w, list(names)
