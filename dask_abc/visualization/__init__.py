"""pyABC's everyday plots of runs, drawn with matplotlib.

matplotlib is the optional extra ``plot`` (``pip install dask-abc[plot]``); it is
imported when a plot is drawn, not with this module. Every plot returns its
matplotlib Axes (:func:`plot_kde_matrix` a 2d array of them) and, given
``ax=``, draws into an existing one.

- posterior densities: :func:`plot_kde_1d`, :func:`plot_kde_2d`,
  :func:`plot_kde_matrix` (each on ``(df, w)`` or a History), their
  ``*_highlevel`` variants (on a History), and :func:`plot_histogram_1d`;
- the course of runs: :func:`plot_epsilons`, :func:`plot_sample_numbers`,
  :func:`plot_acceptance_rates_trajectory`, :func:`plot_effective_sample_sizes`
  (one History or a list of them);
- model selection: :func:`plot_model_probabilities`.

Examples
--------
From stored runs (not run here)::

    import dask_abc.visualization as viz
    ax = viz.plot_kde_1d(history, "theta", refval={"theta": 1.0})
    ax.get_figure().savefig("posterior.png")
"""

from .diagnostics import (
    plot_acceptance_rates_trajectory,
    plot_effective_sample_sizes,
    plot_epsilons,
    plot_sample_numbers,
)
from .histogram import plot_histogram_1d, plot_histogram_1d_lowlevel
from .kde import (
    kde_1d,
    kde_2d,
    plot_kde_1d,
    plot_kde_1d_highlevel,
    plot_kde_2d,
    plot_kde_2d_highlevel,
    plot_kde_matrix,
    plot_kde_matrix_highlevel,
)
from .model_probabilities import plot_model_probabilities

__all__ = [
    "kde_1d",
    "kde_2d",
    "plot_acceptance_rates_trajectory",
    "plot_effective_sample_sizes",
    "plot_epsilons",
    "plot_histogram_1d",
    "plot_histogram_1d_lowlevel",
    "plot_kde_1d",
    "plot_kde_1d_highlevel",
    "plot_kde_2d",
    "plot_kde_2d_highlevel",
    "plot_kde_matrix",
    "plot_kde_matrix_highlevel",
    "plot_model_probabilities",
    "plot_sample_numbers",
]
