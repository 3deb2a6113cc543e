"""A static HTML report of a run (bokeh), for sharing: ``dask-abc report DB``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .storage import History

#: Bins of the posterior histograms.
BINS = 30
#: The per-generation columns plotted here and on the dashboard's ABC page, and titles.
GENERATION_METRICS = [("epsilon", "Epsilon"), ("acceptance_rate", "Acceptance rate"),
                      ("ess", "Effective sample size"), ("samples", "Evaluations"),
                      ("seconds", "Wall time (s)")]


def axis_type(column: str) -> str:
    """Epsilon decays geometrically: a log axis; the others are linear."""
    return "log" if column == "epsilon" else "linear"


# numbers as people read them: counts with thousands separators, rates in percent,
# everything else to 4 significant digits (epsilon spans orders of magnitude)
_COUNT = {"t", "samples", "evaluations_performed"}
_PERCENT = {"acceptance_rate"}
_TITLES = {"t": "generation", "samples": "evaluations", "ess": "ESS",
           "evaluations_performed": "evaluations performed",
           "acceptance_rate": "acceptance rate"}
SIGNIFICANT = '<%= typeof value === "number" ? +value.toPrecision(4) : value %>'
PERCENT = '<%= typeof value === "number" ? +(100 * value).toPrecision(3) + "%" : value %>'


def table_column(field: str):
    """A bokeh ``TableColumn`` of the generations table (here and on the ABC page),
    formatted for reading.

    Examples
    --------
    >>> table_column("acceptance_rate").title
    'acceptance rate'
    >>> table_column("epsilon").formatter.template == SIGNIFICANT
    True
    """
    from bokeh.models import HTMLTemplateFormatter, NumberFormatter, TableColumn

    if field in _COUNT:
        formatter = NumberFormatter(format="0,0")
    else:
        formatter = HTMLTemplateFormatter(template=PERCENT if field in _PERCENT
                                          else SIGNIFICANT)
    return TableColumn(field=field, title=_TITLES.get(field, field), formatter=formatter)


def report(db: str | os.PathLike | History, out: str | os.PathLike | None = None,
           abc_id: int | None = None, title: str | None = None) -> Path:
    """Write a self-contained HTML page (BokehJS inline, no network needed) of a finished or
    running run: epsilon, acceptance rate, ESS, evaluations and wall time per generation,
    model probabilities, the posterior marginals of the last generation, the table of
    generations, and the running generation's progress.

    Parameters
    ----------
    db : str, path or History
        The database (``sqlite:///`` URL or path) or an open History.
    out : str or path, optional
        The HTML file; default the database's name with ``.html``.
    abc_id : int, optional
        The run; default the latest.
    title : str, optional
        The page title.

    Returns
    -------
    Path
        The file written.

    Examples
    --------
    ``report("sqlite:///run.db")`` writes ``run.html``, as does the command line
    ``dask-abc report run.db``.
    """
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.resources import INLINE

    history = db if isinstance(db, History) else History(db, abc_id=abc_id, create=False)
    try:
        if out is None:
            out = Path(history.path).with_suffix(".html")
        title = title or f"dask-abc run {history.id} of {history.path}"
        plots = [*_generation_plots(history), *_posterior_plots(history)]
        page = column(_summary(history, title), gridplot(plots, ncols=3, width=380, height=280),
                      _table(history), sizing_mode="stretch_width")
        html = file_html(page, INLINE, title)
    finally:
        if history is not db:
            history.close()
    out = Path(out)
    out.write_text(html, encoding="utf-8")
    return out


def _summary(history: History, title: str):
    from bokeh.models import Div

    runs = history.all_runs().set_index("id")
    stop = runs.loc[history.id, "stop_reason"]
    lines = [f"<h2>{title}</h2>",
             f"<p>models: {', '.join(history.model_names)}; generations: "
             f"{history.n_populations}; simulations: {history.total_nr_simulations}; "
             f"seed {history.seed}</p>",
             f"<p>stopped: {stop}</p>" if stop else "<p>running (or interrupted)</p>"]
    partial = history.get_partial_info()
    if partial["evaluations"]:
        lines.append(f"<p>generation {partial['t']}: {partial['evaluations']} evaluations, "
                     f"{partial['accepted']} accepted so far</p>")
    return Div(text="\n".join(lines))


def _generation_plots(history: History) -> list:
    from bokeh.plotting import figure

    info = history.get_generation_info()
    if info.empty:
        return []
    t = info["t"].to_numpy()
    plots = []
    for column, name in GENERATION_METRICS:
        p = figure(title=name, x_axis_label="generation", y_axis_type=axis_type(column),
                   tools="pan,wheel_zoom,box_zoom,reset,save,hover")
        y = info[column].to_numpy(dtype=float)
        if column in ("samples", "seconds"):  # amounts: bars
            p.vbar(x=t, top=y, width=0.8)
        else:
            p.line(t, y)
            p.scatter(t, y, size=6)
        plots.append(p)
    probabilities = history.get_model_probabilities()
    if len(history.model_names) > 1:
        p = figure(title="Model probabilities", x_axis_label="generation",
                   tools="pan,wheel_zoom,reset,save,hover")
        for m, name in enumerate(history.model_names):
            p.line(probabilities.index.to_numpy(), probabilities[m].to_numpy(),
                   legend_label=name, color=_color(m))
        plots.append(p)
    return plots


def _posterior_plots(history: History) -> list:
    from bokeh.plotting import figure

    if history.n_populations == 0:
        return []
    plots = []
    for m, names in enumerate(history.parameter_names):
        df, w = history.get_distribution(m)
        if not len(w):
            continue  # a model that died out
        for name in names:
            values = df[name].to_numpy()
            density, edges = np.histogram(values, bins=BINS, weights=w, density=True)
            mean = float(np.sum(w * values))
            sd = float(np.sqrt(np.sum(w * (values - mean) ** 2)))
            p = figure(title=f"{history.model_names[m]}: {name} (mean {mean:.3g}, sd {sd:.3g})",
                       x_axis_label=name, tools="pan,wheel_zoom,reset,save")
            p.quad(top=density, bottom=0, left=edges[:-1], right=edges[1:], alpha=0.6,
                   color=_color(m))
            plots.append(p)
    return plots


def _table(history: History):
    from bokeh.models import ColumnDataSource, DataTable

    info = history.get_generation_info()
    columns = [table_column(c) for c in info.columns]
    source = ColumnDataSource({c: info[c].to_numpy() for c in info.columns})
    return DataTable(source=source, columns=columns, height=260,
                     sizing_mode="stretch_width")


def _color(m: int) -> str:
    from bokeh.palettes import Category10_10

    return Category10_10[m % 10]
