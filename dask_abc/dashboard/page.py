"""The ABC page: bokeh plots and tables, fed by polling the plugin's JSON every second."""

from __future__ import annotations

from collections.abc import Sequence

from ..report import GENERATION_METRICS, axis_type
from .plugin import GENERATION_FIELDS

POLL_MS = 1000

# One request a second for everything; a source's data is replaced (and its plots
# drawn again) only when it changed, which keeps the page's CPU cost small.
POLL = """
const last = {};
function counter(d) {
  const v = (k, f) => (d[k] && d[k][0] != null) ? f(d[k][0]) : "–";
  const t = d.generation ? d.generation[0] : null;
  div.text = `<b>${v("run", x => x)}</b><br>` +
    `${t == null ? "" : t < 0 ? "calibration" : "generation " + t}: ` +
    `accepted <b>${v("accepted", x => x)}</b>/${v("population", x => x)}, ` +
    `${v("evaluations", x => x)} evaluations ` +
    `(acceptance ${v("acceptance_rate", x => (100 * x).toFixed(1) + "%")}), ` +
    `epsilon ${v("epsilon", x => x.toPrecision(4))}, batch size ${v("batch_size", x => x)}, ` +
    `${v("evaluations_per_second", x => x.toFixed(0))} evaluations/s, ` +
    `about ${v("seconds_left", x => x.toFixed(0))} s to go`;
}
async function poll() {
  try {
    const all = await (await fetch(url)).json();
    for (const [name, source] of Object.entries(sources)) {
      const text = JSON.stringify(all[name]);
      if (text !== last[name]) {
        last[name] = text;
        source.data = all[name];
      }
    }
    counter(all.status);
  } catch (error) {
    div.text = "no connection to the scheduler";
  }
}
poll();
setInterval(poll, interval);
"""


def page_html(parameters: Sequence[str] = ()) -> str:
    """The whole page, BokehJS inline (it works without network access), with a
    posterior histogram for each of ``parameters`` ("model: parameter")."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.models import (
        CDSView,
        ColumnDataSource,
        CustomJS,
        DataTable,
        Div,
        GroupFilter,
        TableColumn,
    )
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure
    from bokeh.resources import INLINE
    from bokeh.transform import linear_cmap

    sources = {}

    def source(part: str, columns) -> ColumnDataSource:
        sources[part] = ColumnDataSource({c: [] for c in columns}, name=f"abc-data-{part}")
        return sources[part]

    generations = source("generations", GENERATION_FIELDS)
    posterior = source("posterior", ("name", "left", "right", "density"))
    probabilities = source("model_probabilities", ("t", "model", "name", "p"))

    counter = Div(name="abc-counter", text="waiting for a run", styles={"font-size": "115%"})
    plots = []
    for field, title in GENERATION_METRICS:
        p = figure(title=title, y_axis_type=axis_type(field), x_axis_label="generation",
                   name=f"abc-{field}", tools="pan,wheel_zoom,reset,save,hover")
        p.line("t", field, source=generations)
        p.scatter("t", field, source=generations, size=6)
        plots.append(p)
    p = figure(title="Model probabilities", x_axis_label="generation", y_range=(0, 1.05),
               name="abc-model-probabilities", tools="pan,wheel_zoom,reset,save,hover",
               tooltips=[("model", "@name"), ("p", "@p")])
    p.scatter("t", "p", source=probabilities, size=8,
              color=linear_cmap("model", Category10_10, 0, 9))
    plots.append(p)
    workers = source("workers", ("index", "worker", "evaluations", "running"))
    p = figure(title="Evaluations per worker (hover: ranges running)", name="abc-workers",
               tools="hover", tooltips=[("worker", "@worker"), ("evaluations", "@evaluations"),
                                        ("ranges running", "@running")], y_axis_label="worker")
    p.hbar(y="index", right="evaluations", height=0.7, source=workers)
    plots.append(p)
    # one histogram per parameter known when the page is opened (all in one before that)
    for name in parameters or [None]:
        view = CDSView() if name is None else CDSView(filter=GroupFilter(column_name="name",
                                                                          group=name))
        p = figure(title=f"Posterior, {name}" if name else "Posterior marginals",
                   name=f"abc-posterior-{name}" if name else "abc-posterior",
                   tools="pan,wheel_zoom,reset,save,hover")
        p.quad(left="left", right="right", top="density", bottom=0, source=posterior,
               view=view, alpha=0.6)
        plots.append(p)
    generation_table = DataTable(
        source=generations, height=220, index_position=None, sizing_mode="stretch_width",
        columns=[TableColumn(field=f, title=f) for f in GENERATION_FIELDS])
    layout = column(Div(text="<h2>dask-abc</h2>"), counter,
                    gridplot(plots, ncols=3, width=360, height=260), generation_table,
                    sizing_mode="stretch_width")
    poll = CustomJS(args={"div": counter, "sources": sources, "url": "/abc/data/all",
                          "interval": POLL_MS}, code=POLL)
    document = Document()
    document.add_root(layout)
    document.js_on_event("document_ready", poll)
    return file_html(document, INLINE, "dask-abc")
