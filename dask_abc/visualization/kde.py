"""Kernel density estimates of the posterior: 1d, 2d and the matrix of both.

The densities are weighted Gaussian kernel density estimates
(:class:`scipy.stats.gaussian_kde`, Scott's bandwidth on the effective sample
size), unless ``kde`` is given: any :class:`~dask_abc.Transition`, or another
object with ``fit(X, w)`` and ``pdf(Y)`` on ``(n, d)`` arrays.

Each plot takes pyABC's ``(df, w, ...)`` (e.g. ``history.get_distribution(m, t)``),
or a History in place of ``df, w``: ``plot_kde_1d(history, "a", m=0, t=None)``.
With a History, pass the parameter name(s) positionally and everything else by
keyword.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gaussian_kde

from ._util import check_parameters, new_axes, population, reference, require_matplotlib

_NO_LIMITS = (None, None)


def _density(values: np.ndarray, w: np.ndarray, points: np.ndarray, kde=None) -> np.ndarray:
    """Weighted kernel density of the rows of ``values`` at the rows of ``points``."""
    if kde is not None:
        kde.fit(values, w)
        return np.asarray(kde.pdf(points), dtype=float)
    try:
        return gaussian_kde(values.T, weights=w)(points.T)
    except np.linalg.LinAlgError:
        raise ValueError("cannot estimate a density: the particles lie on a point or a line "
                         "(a constant parameter, or perfectly correlated ones)") from None


def _grid(values: np.ndarray, lower, upper, num: int) -> np.ndarray:
    lower = values.min() if lower is None else lower
    upper = values.max() if upper is None else upper
    return np.linspace(lower, upper, num)


def kde_1d(df, w, x, xmin=None, xmax=None, numx=50, kde=None):
    """The weighted density of parameter ``x`` on a grid.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per particle, one column per parameter.
    w : array_like
        The particles' weights.
    x : str
        The parameter.
    xmin, xmax : float, optional
        The grid's bounds; default the smallest and largest value of ``x``.
    numx : int
        Number of grid points.
    kde : Transition, optional
        The density estimator; default a weighted Gaussian KDE.

    Returns
    -------
    x, pdf : numpy.ndarray
        The grid and the density on it.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame({"a": np.random.default_rng(0).normal(size=200)})
    >>> grid, pdf = kde_1d(df, np.ones(200), "a", -4, 4, numx=9)
    >>> float(grid[4]), bool(0.3 < pdf[4] < 0.5)
    (0.0, True)
    """
    check_parameters(df, [x], "df")
    values = df[[x]].to_numpy(dtype=float)
    grid = _grid(values[:, 0], xmin, xmax, numx)
    return grid, _density(values, np.asarray(w, dtype=float).ravel(), grid[:, None], kde)


def kde_2d(df, w, x, y, xmin=None, xmax=None, ymin=None, ymax=None, numx=50, numy=50,
           kde=None):
    """The weighted joint density of parameters ``x`` and ``y`` on a grid.

    Parameters are those of :func:`kde_1d`, for two parameters.

    Returns
    -------
    X, Y, PDF : numpy.ndarray
        Mesh grids of shape ``(numy, numx)`` and the density on them, ready for
        ``ax.pcolormesh(X, Y, PDF)``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    >>> X, Y, PDF = kde_2d(df, np.ones(100), "a", "b", numx=4, numy=3)
    >>> PDF.shape
    (3, 4)
    """
    check_parameters(df, [x, y], "df")
    values = df[[x, y]].to_numpy(dtype=float)
    X, Y = np.meshgrid(_grid(values[:, 0], xmin, xmax, numx),
                       _grid(values[:, 1], ymin, ymax, numy))
    pdf = _density(values, np.asarray(w, dtype=float).ravel(),
                   np.column_stack([X.ravel(), Y.ravel()]), kde)
    return X, Y, pdf.reshape(X.shape)


def plot_kde_1d(df, w=None, x=None, xmin=None, xmax=None, numx=50, ax=None, size=None,
                title=None, refval=None, refval_color="C1", kde=None, xname=None, *,
                m=None, t=None, **kwargs):
    """Plot the posterior density of one parameter.

    Parameters
    ----------
    df : pandas.DataFrame or History
        The particles (one column per parameter), or a History: then ``m`` and
        ``t`` select the population and ``w`` is left out.
    w : array_like
        The particles' weights.
    x : str
        The parameter.
    xmin, xmax : float, optional
        The plotted range; default the range of the particles.
    numx : int
        Number of points of the density curve.
    ax : matplotlib.axes.Axes, optional
        Where to plot; default a new figure.
    size : tuple of float, optional
        Figure size in inches.
    title : str, optional
        Title of the plot.
    refval : dict, optional
        Reference parameters (e.g. the ground truth); ``refval[x]`` is marked by
        a dotted vertical line.
    refval_color : str
        Colour of that line.
    kde : Transition, optional
        The density estimator; default a weighted Gaussian KDE.
    xname : str, optional
        Label of the x axis; default ``x``.
    m : int, optional
        With a History: the model (default 0).
    t : int, optional
        With a History: the generation (default the last).
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from matplotlib.figure import Figure
    >>> df = pd.DataFrame({"a": np.random.default_rng(0).normal(size=100)})
    >>> ax = plot_kde_1d(df, np.ones(100), "a", numx=30, ax=Figure().subplots(),
    ...                  refval={"a": 0.0})
    >>> len(ax.lines[0].get_xdata()), len(ax.lines)
    (30, 2)

    From a run, for generation 2 of model 1:
    >>> plot_kde_1d(history, "theta", m=1, t=2)  # doctest: +SKIP
    """
    df, w, (x,) = population(df, w, (x,), m, t, "plot_kde_1d")
    ref = None if refval is None else reference(refval, x)
    grid, pdf = kde_1d(df, w, x, xmin, xmax, numx, kde)
    ax = new_axes(ax, size)
    ax.plot(grid, pdf, **kwargs)
    ax.set_xlabel(x if xname is None else xname)
    ax.set_ylabel("Posterior")
    ax.set_xlim(xmin, xmax)
    if title is not None:
        ax.set_title(title)
    if ref is not None:
        ax.axvline(ref, color=refval_color, linestyle="dotted")
    return ax


def plot_kde_1d_highlevel(history, x, m=0, t=None, xmin=None, xmax=None, numx=50, ax=None,
                          size=None, title=None, refval=None, refval_color="C1", kde=None,
                          xname=None, **kwargs):
    """:func:`plot_kde_1d` of model ``m`` in generation ``t`` (default the last) of a History.

    Examples
    --------
    From stored runs (not run here)::

        plot_kde_1d_highlevel(history, "theta", t=0, refval={"theta": 1.0})
    """
    return plot_kde_1d(history, x=x, xmin=xmin, xmax=xmax, numx=numx, ax=ax, size=size,
                       title=title, refval=refval, refval_color=refval_color, kde=kde,
                       xname=xname, m=m, t=t, **kwargs)


def plot_kde_2d(df, w=None, x=None, y=None, xmin=None, xmax=None, ymin=None, ymax=None,
                numx=50, numy=50, ax=None, size=None, colorbar=True, title=None, refval=None,
                refval_color="C1", kde=None, xname=None, yname=None, *, m=None, t=None,
                **kwargs):
    """Plot the joint posterior density of two parameters as a colour mesh.

    Parameters are those of :func:`plot_kde_1d`, for parameters ``x`` and ``y``;
    also:

    colorbar : bool
        Draw a colour bar next to the plot.
    refval : dict, optional
        ``(refval[x], refval[y])`` is marked by a dot.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.pcolormesh`.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from matplotlib.figure import Figure
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    >>> ax = plot_kde_2d(df, np.ones(100), "a", "b", numx=20, numy=10, ax=Figure().subplots())
    >>> ax.collections[0].get_array().shape
    (10, 20)
    >>> plot_kde_2d(history, "a", "b", t=1)  # doctest: +SKIP
    """
    df, w, (x, y) = population(df, w, (x, y), m, t, "plot_kde_2d")
    ref = None if refval is None else (reference(refval, x), reference(refval, y))
    X, Y, PDF = kde_2d(df, w, x, y, xmin, xmax, ymin, ymax, numx, numy, kde)
    ax = new_axes(ax, size)
    mesh = ax.pcolormesh(X, Y, PDF, shading="auto", **kwargs)
    ax.set_xlabel(x if xname is None else xname)
    ax.set_ylabel(y if yname is None else yname)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.get_figure().colorbar(mesh, ax=ax)
    if ref is not None:
        ax.scatter([ref[0]], [ref[1]], color=refval_color)
    return ax


def plot_kde_2d_highlevel(history, x, y, m=0, t=None, xmin=None, xmax=None, ymin=None,
                          ymax=None, numx=50, numy=50, ax=None, size=None, colorbar=True,
                          title=None, refval=None, refval_color="C1", kde=None, xname=None,
                          yname=None, **kwargs):
    """:func:`plot_kde_2d` of model ``m`` in generation ``t`` (default the last) of a History.

    Examples
    --------
    From stored runs (not run here)::

        plot_kde_2d_highlevel(history, "a", "b", colorbar=False)
    """
    return plot_kde_2d(history, x=x, y=y, xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax,
                       numx=numx, numy=numy, ax=ax, size=size, colorbar=colorbar, title=title,
                       refval=refval, refval_color=refval_color, kde=kde, xname=xname,
                       yname=yname, m=m, t=t, **kwargs)


def plot_kde_matrix(df, w=None, limits=None, colorbar=True, height=2.5, numx=50, numy=50,
                    refval=None, refval_color="C1", kde=None, names=None, arr_ax=None, *,
                    m=None, t=None):
    """Plot all 1d and 2d marginal posterior densities in a grid.

    The diagonal shows :func:`plot_kde_1d` of each parameter, the lower triangle
    :func:`plot_kde_2d` of each pair, the upper triangle the particles, more
    opaque the heavier they are.

    Parameters
    ----------
    df : pandas.DataFrame or History
        The particles, or a History (then ``m`` and ``t`` select the population).
    w : array_like
        The particles' weights.
    limits : dict, optional
        ``{name: (lower, upper)}`` plotted ranges; default the particles' ranges.
    colorbar : bool
        Draw colour bars next to the 2d densities.
    height : float
        Height (and width) of each cell in inches.
    numx, numy : int
        Grid points per parameter.
    refval : dict, optional
        Reference parameters, marked in every cell.
    refval_color : str
        Their colour.
    kde : Transition, optional
        The density estimator; default a weighted Gaussian KDE.
    names : dict, optional
        ``{name: label}`` axis labels; default the parameter names.
    arr_ax : numpy.ndarray of matplotlib.axes.Axes, optional
        A d×d array of axes to plot in; default a new figure.
    m, t : int, optional
        With a History: the model (default 0) and generation (default the last).

    Returns
    -------
    numpy.ndarray
        The d×d array of axes.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from matplotlib.figure import Figure
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    >>> arr_ax = plot_kde_matrix(df, np.ones(100), numx=10, numy=10,
    ...                          arr_ax=Figure().subplots(2, 2, squeeze=False))
    >>> arr_ax.shape
    (2, 2)
    >>> plot_kde_matrix(history, m=1, limits={"a": (-2, 2)})  # doctest: +SKIP
    """
    df, w, _ = population(df, w, (), m, t, "plot_kde_matrix")
    limits = dict(limits or {})
    check_parameters(df, limits, "the population")
    params = list(df.columns)
    if refval is not None:
        for p in params:
            reference(refval, p)  # a missing value fails before anything is drawn
    labels = {p: p for p in params} | dict(names or {})
    n = len(params)
    if arr_ax is None:
        require_matplotlib()
        import matplotlib.pyplot as plt
        _, arr_ax = plt.subplots(n, n, figsize=(height * n, height * n), squeeze=False,
                                 layout="constrained")
    arr_ax = np.asarray(arr_ax)
    if arr_ax.shape != (n, n):
        raise ValueError(f"arr_ax has shape {arr_ax.shape}; {n} parameters need ({n}, {n})")
    for row, y in enumerate(params):
        for col, x in enumerate(params):
            ax = arr_ax[row, col]
            if row == col:
                plot_kde_1d(df, w, x, *limits.get(x, _NO_LIMITS), numx=numx, ax=ax,
                            refval=refval, refval_color=refval_color, kde=kde)
            elif col < row:
                plot_kde_2d(df, w, x, y, *limits.get(x, _NO_LIMITS), *limits.get(y, _NO_LIMITS),
                            numx=numx, numy=numy, ax=ax, colorbar=colorbar, refval=refval,
                            refval_color=refval_color, kde=kde)
            else:
                _scatter(ax, df[x], df[y], w, refval, refval_color)
                ax.set_xlim(*limits.get(x, _NO_LIMITS))
                ax.set_ylim(*limits.get(y, _NO_LIMITS))
            # only the outer cells name their parameters
            ax.set_xlabel(labels[x] if row == n - 1 else "")
            ax.set_ylabel(labels[y] if col == 0 else "")
    return arr_ax


def _scatter(ax, x, y, w, refval, refval_color) -> None:
    ax.scatter(x, y, s=8, color="k", alpha=w / w.max(), linewidths=0)
    if refval is not None:
        ax.scatter([reference(refval, x.name)], [reference(refval, y.name)],
                   color=refval_color)


def plot_kde_matrix_highlevel(history, m=0, t=None, limits=None, colorbar=True, height=2.5,
                              numx=50, numy=50, refval=None, refval_color="C1", kde=None,
                              names=None, arr_ax=None):
    """:func:`plot_kde_matrix` of model ``m`` in generation ``t`` (default the last).

    Examples
    --------
    From stored runs (not run here)::

        plot_kde_matrix_highlevel(history, t=2, refval={"a": 0.5, "b": 1.0})
    """
    return plot_kde_matrix(history, limits=limits, colorbar=colorbar, height=height,
                           numx=numx, numy=numy, refval=refval, refval_color=refval_color,
                           kde=kde, names=names, arr_ax=arr_ax, m=m, t=t)
