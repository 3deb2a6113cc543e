"""Model probabilities of a model selection run."""

from __future__ import annotations

from ..storage import History
from ._util import new_axes


def plot_model_probabilities(history, rotation=0, title="Model probabilities", ax=None,
                             size=None):
    """Plot the probability of every model in every generation as grouped bars.

    Parameters
    ----------
    history : History
        The run.
    rotation : float
        Rotation of the x tick labels in degrees.
    title : str
        Title of the plot.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.
    size : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.axes.Axes
        One bar container per model (labelled "m: name"), one bar per generation.

    Examples
    --------
    From stored runs (not run here)::

        plot_model_probabilities(history)
    """
    if not isinstance(history, History):
        raise TypeError(f"plot_model_probabilities takes a History, got {history!r}")
    probabilities = history.get_model_probabilities()
    names = history.model_names
    ax = new_axes(ax, size)
    t = probabilities.index.to_numpy()
    width = 0.8 / len(names)
    for m, name in enumerate(names):
        offset = (m - (len(names) - 1) / 2) * width
        ax.bar(t + offset, probabilities[m].to_numpy(), width, label=f"{m}: {name}")
    ax.set_xticks(t, [str(i) for i in t], rotation=rotation)
    ax.set_xlabel("Population index $t$")
    ax.set_ylabel("Probability")
    ax.set_title(title)
    ax.legend(title="Model")
    return ax
