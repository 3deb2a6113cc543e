"""How runs went, generation by generation: thresholds, samples, acceptance, ESS.

Each plot takes one History or a list of them (one line or bar per run),
labelled "History 1", "History 2", ... unless ``labels`` are given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._util import as_histories, history_labels, integer_xticks, new_axes, per_history

# pyABC's names of y scales, and matplotlib's
_YSCALES = {"lin": "linear", "log10": "log"}


def _trajectories(histories, labels, colors, ax, size, series, ylabel, title, yscale,
                  rotation=0):
    """One ``x-`` line per history of ``series(history) -> (t, values)``."""
    histories = as_histories(histories)
    labels = history_labels(labels, len(histories))
    colors = per_history(colors, len(histories), "colors", lambda i: None)
    ax = new_axes(ax, size)
    for history, label, color in zip(histories, labels, colors):
        t, values = series(history)
        ax.plot(t, values, "x-", label=label, color=color)
    ax.set_yscale(_YSCALES.get(yscale, yscale))
    ax.set_xlabel("Population index $t$")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    integer_xticks(ax, rotation)
    return ax


def plot_epsilons(histories, labels=None, colors=None, yscale="log", title="Epsilon values",
                  size=None, ax=None):
    """Plot the acceptance threshold of every generation, one line per run.

    Parameters
    ----------
    histories : History or list of History
        The runs.
    labels : str or list of str, optional
        Their legend labels; default "History 1", "History 2", ...
    colors : list, optional
        Their line colours; default matplotlib's colour cycle.
    yscale : str
        Scale of the y axis: "log" (also "log10"), "lin", or any matplotlib scale.
    title : str
        Title of the plot.
    size : tuple of float, optional
        Figure size in inches.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    From stored runs (not run here)::

        plot_epsilons([history1, history2], labels=["median", "quantile 0.3"])
    """
    def epsilons(history):
        pops = history.get_all_populations()
        pops = pops[pops["t"] >= 0]  # the calibration's threshold is infinite
        return pops["t"], pops["epsilon"]
    return _trajectories(histories, labels, colors, ax, size, epsilons, "Epsilon", title,
                         yscale)


def plot_sample_numbers(histories, labels=None, rotation=0, title="Required samples",
                        size=None, ax=None):
    """Plot the evaluations each run needed as a bar stacked by generation.

    The lowest segment of a bar is the calibration sample (if the run drew one),
    then generation 0, 1, ... Each segment's bar container is labelled
    ("calibration", "t=0", ...), so ``ax.legend()`` names them.

    Parameters
    ----------
    histories : History or list of History
        The runs.
    labels : str or list of str, optional
        Their tick labels; default "History 1", "History 2", ...
    rotation : float
        Rotation of the tick labels in degrees.
    title : str
        Title of the plot.
    size : tuple of float, optional
        Figure size in inches.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    From stored runs (not run here)::

        plot_sample_numbers([history1, history2], rotation=45)
    """
    histories = as_histories(histories)
    labels = history_labels(labels, len(histories))
    # rows: generations of any run (-1 the calibration), columns: runs
    samples = pd.DataFrame({i: h.get_all_populations().set_index("t")["samples"]
                            for i, h in enumerate(histories)}).fillna(0).sort_index()
    ax = new_axes(ax, size)
    x = np.arange(len(histories))
    bottom = np.zeros(len(histories))
    for t, row in samples.iterrows():
        heights = row.to_numpy(dtype=float)
        ax.bar(x, heights, bottom=bottom, label="calibration" if t < 0 else f"t={t}")
        bottom += heights
    ax.set_xticks(x, labels, rotation=rotation)
    ax.set_xlabel("Run")
    ax.set_ylabel("Samples")
    ax.set_title(title)
    return ax


def plot_acceptance_rates_trajectory(histories, labels=None, rotation=0,
                                     title="Acceptance rates", yscale="lin", colors=None,
                                     normalize_by_ess=False, size=None, ax=None):
    """Plot the acceptance rate of every generation, one line per run.

    The acceptance rate is the population size over the evaluations the
    generation needed; with ``normalize_by_ess`` the effective sample size over
    the evaluations.

    Parameters
    ----------
    histories : History or list of History
        The runs.
    labels : str or list of str, optional
        Their legend labels; default "History 1", "History 2", ...
    rotation : float
        Rotation of the x tick labels in degrees.
    title : str
        Title of the plot.
    yscale : str
        Scale of the y axis: "lin", "log" (also "log10"), or any matplotlib scale.
        Unlike pyABC, a log scale is a log axis, not log-transformed values.
    colors : list, optional
        Line colours; default matplotlib's colour cycle.
    normalize_by_ess : bool
        Divide the effective sample size instead of the population size.
    size : tuple of float, optional
        Figure size in inches.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    From stored runs (not run here)::

        plot_acceptance_rates_trajectory(history, yscale="log")
    """
    def rates(history):
        info = history.get_generation_info()
        if normalize_by_ess:
            return info["t"], info["ess"] / info["samples"]
        return info["t"], info["acceptance_rate"]
    ylabel = "ESS / samples" if normalize_by_ess else "Acceptance rate"
    return _trajectories(histories, labels, colors, ax, size, rates, ylabel, title, yscale,
                         rotation)


def plot_effective_sample_sizes(histories, labels=None, rotation=0,
                                title="Effective sample size", relative=False, colors=None,
                                size=None, ax=None):
    """Plot the effective sample size (ESS) of every generation, one line per run.

    The ESS is ``1 / sum(w**2)`` of the weights of the whole population
    (all models), normalised to 1.

    Parameters
    ----------
    histories : History or list of History
        The runs.
    labels : str or list of str, optional
        Their legend labels; default "History 1", "History 2", ...
    rotation : float
        Rotation of the x tick labels in degrees.
    title : str
        Title of the plot.
    relative : bool
        Divide the ESS by the population size (1 is best).
    colors : list, optional
        Line colours; default matplotlib's colour cycle.
    size : tuple of float, optional
        Figure size in inches.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    From stored runs (not run here)::

        plot_effective_sample_sizes([history1, history2], relative=True)
    """
    def ess(history):
        info = history.get_generation_info()
        if not relative:
            return info["t"], info["ess"]
        particles = history.get_all_populations().set_index("t")["particles"]
        return info["t"], info["ess"].to_numpy() / particles.loc[info["t"]].to_numpy()
    ylabel = "ESS / population size" if relative else "ESS"
    return _trajectories(histories, labels, colors, ax, size, ess, ylabel, title, "linear",
                         rotation)
