"""Weighted histograms of the posterior."""

from __future__ import annotations

from ..storage import History
from ._util import new_axes, population, reference


def plot_histogram_1d(history, x, m=0, t=None, xmin=None, xmax=None, ax=None, size=None,
                      refval=None, refval_color="C1", bins=20, xname=None, **kwargs):
    """Plot a weighted histogram of one parameter of model ``m`` in generation ``t``.

    Parameters
    ----------
    history : History
        The run.
    x : str
        The parameter.
    m : int
        The model.
    t : int, optional
        The generation; default the last.
    xmin, xmax : float, optional
        The histogram's range; default the range of the particles.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.
    size : tuple of float, optional
        Figure size in inches.
    refval : dict, optional
        Reference parameters; ``refval[x]`` is marked by a dotted vertical line.
    refval_color : str
        Colour of that line.
    bins : int or sequence
        Number of bins, or their edges.
    xname : str, optional
        Label of the x axis; default ``x``.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.hist`.

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    The weights are those of the model's particles, normalised to 1. By default
    the bars show a density (``density=True``, as in pyABC): their areas sum to 1.
    With ``density=False`` they show the weight in each bin: their heights sum to 1
    (less any weight outside ``xmin, xmax``).

    Examples
    --------
    From stored runs (not run here)::

        plot_histogram_1d(history, "theta", bins=30, refval={"theta": 1.0})
    """
    if not isinstance(history, History):
        raise TypeError(f"plot_histogram_1d takes a History, got {history!r}; for particles "
                        "and weights use plot_histogram_1d_lowlevel(df, w, x)")
    df, w, _ = population(history, None, (x,), m, t, "plot_histogram_1d")
    return plot_histogram_1d_lowlevel(df, w, x, xmin, xmax, ax=ax, size=size, refval=refval,
                                      refval_color=refval_color, bins=bins, xname=xname,
                                      **kwargs)


def plot_histogram_1d_lowlevel(df, w, x, xmin=None, xmax=None, ax=None, size=None,
                               refval=None, refval_color="C1", bins=20, xname=None, **kwargs):
    """:func:`plot_histogram_1d` of particles ``df`` with weights ``w``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from matplotlib.figure import Figure
    >>> df = pd.DataFrame({"a": np.random.default_rng(0).normal(size=100)})
    >>> ax = plot_histogram_1d_lowlevel(df, np.ones(100), "a", bins=5, density=False,
    ...                                 ax=Figure().subplots())
    >>> round(float(sum(bar.get_height() for bar in ax.patches)), 6)
    1.0
    """
    df, w, _ = population(df, w, (x,), None, None, "plot_histogram_1d_lowlevel")
    ref = None if refval is None else reference(refval, x)
    values = df[x].to_numpy(dtype=float)
    lower = values.min() if xmin is None else xmin
    upper = values.max() if xmax is None else xmax
    kwargs.setdefault("density", True)
    ax = new_axes(ax, size)
    ax.hist(values, bins=bins, range=(lower, upper), weights=w / w.sum(), **kwargs)
    ax.set_xlabel(x if xname is None else xname)
    ax.set_ylabel("Posterior" if kwargs["density"] else "Weight")
    if ref is not None:
        ax.axvline(ref, color=refval_color, linestyle="dotted")
    return ax
