"""The ABC page: bokeh plots and tables, fed by polling the plugin's JSON every second."""

from __future__ import annotations

from collections.abc import Sequence

from .. import config
from ..report import GENERATION_METRICS, SIGNIFICANT, axis_type, table_column
from .plugin import GENERATION_FIELDS, PAGE, POSTERIOR_FIELDS

POLL_MS = 1000
SLOWEST_FIELDS = ("name", "workers", "slots", "busy", "evaluations", "rate", "relative",
                  "seconds_per_evaluation")

# One request a second for everything; a source's data is replaced (and its plots
# drawn again) only when it changed, which keeps the page's CPU cost small. The
# worker part is a summary of bounded size, whatever the number of workers. A
# DataTable redraws only when its view's indices change, i.e. when the number of
# rows does (bokeh 3), so a table is told explicitly.
POLL = """
const last = {};
function set(name, data) {
  const text = JSON.stringify(data);
  if (data && text !== last[name]) {
    last[name] = text;
    sources[name].data = data;
    if (tables[name]) tables[name].view.change.emit();
  }
}
const plural = (n, word) => `${n} ${word}${n == 1 ? "" : "s"}`;
function counter(d, w) {
  const v = (k, f) => (d[k] && d[k][0] != null) ? f(d[k][0]) : "–";
  const t = d.generation ? d.generation[0] : null;
  let text = `<b>${v("run", x => x)}</b><br>` +
    `${t == null ? "" : t < 0 ? "calibration" : "generation " + t}: ` +
    `accepted <b>${v("accepted", x => x)}</b>/${v("population", x => x)}, ` +
    `${v("evaluations", x => x)} evaluations` +
    (d.failed && d.failed[0] ? `, ${d.failed[0]} failed` : "") +
    ` (acceptance ${v("acceptance_rate", x => (100 * x).toFixed(1) + "%")}), ` +
    `epsilon ${v("epsilon", x => x.toPrecision(4))}, batch size ${v("batch_size", x => x)}, ` +
    `${v("evaluations_per_second", x => x.toFixed(0))} evaluations/s, ` +
    `about ${v("seconds_left", x => x.toFixed(0))} s to go`;
  if (w && w.slots) {
    const share = (100 * w.busy / w.slots).toFixed(0);
    text += `<br>cluster: <b>${w.busy}</b>/${w.slots} slots busy (${share}%) on ` +
      `${plural(w.hosts, "host")}, ${plural(w.workers, "worker")}; ` +
      `${plural(w.idle, w.unit)} idle`;
  }
  div.text = text;
}
async function poll() {
  try {
    const all = await (await fetch(url)).json();
    for (const name of ["generations", "model_probabilities", "posterior"]) {
      set(name, all[name]);
    }
    const w = all.workers;
    set("history", w.history);
    set("histogram", w.histogram);
    set("slowest", w.slowest);
    const units = w.unit == "host" ? "hosts" : "workers";
    throughput.title.text = `Throughput per slot, over ${units}`;
    slowest_title.text = `<b>Slowest ${units}</b> (idle ones first while ranges run; ` +
      `throughput in evaluations per slot-second, ${window_text}; ` +
      `median ${+w.median_rate.toPrecision(3)})`;
    counter(all.status, w);
  } catch (error) {
    div.text = "no connection to the scheduler";
  }
}
poll();
setInterval(poll, interval);
"""


def page_html(marginals: Sequence[tuple[str, str]] = (), window: float | None = None,
              slowest: int | None = None) -> str:
    """The whole page, BokehJS inline (it works without network access), with a
    posterior histogram for each (model, parameter) of ``marginals``; ``window`` and
    ``slowest`` (default ``abc.dashboard.rate-window`` and ``.slowest``) say what the
    worker summary measures.

    Examples
    --------
    >>> html = page_html([("gauss", "mu")])
    >>> "Posterior of mu (model gauss)" in html and "cdn.bokeh.org" not in html
    True
    """
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, CustomJS, DataTable, Div
    from bokeh.resources import INLINE

    sources = {}

    def source(part: str, columns) -> ColumnDataSource:
        sources[part] = ColumnDataSource({c: [] for c in columns}, name=f"abc-data-{part}")
        return sources[part]

    generations = source("generations", GENERATION_FIELDS)
    posterior = source("posterior", POSTERIOR_FIELDS)
    probabilities = source("model_probabilities", ("t", "model", "name", "p"))
    history = source("history", ("time", "busy", "slots"))
    histogram = source("histogram", ("left", "right", "count"))
    slowest_hosts = source("slowest", SLOWEST_FIELDS)
    window = float(config.get("dashboard.rate-window") if window is None else window)
    rows = int(config.get("dashboard.slowest") if slowest is None else slowest)
    window_text = f"last {window:.0f} s"

    # relative links: they also work behind a proxy (e.g. jupyter-server-proxy)
    header = Div(text='<h2 style="margin-bottom: 0">dask-abc</h2>'
                      '<a href="status">back to the Dask dashboard</a>')
    counter = Div(name="abc-counter", text="waiting for a run", styles={"font-size": "115%"})
    throughput = _throughput_plot(histogram, window_text)
    plots = [*_generation_plots(generations, probabilities), _busy_plot(history), throughput,
             *_posterior_plots(posterior, marginals)]
    slowest_title = Div(name="abc-slowest-title", text="<b>Slowest workers</b>")
    slowest_table = _slowest_table(slowest_hosts, rows)
    generation_table = DataTable(
        source=generations, name="abc-generations", height=220, index_position=None,
        sizing_mode="stretch_width", columns=[table_column(f) for f in GENERATION_FIELDS])
    layout = column(header, counter, gridplot(plots, ncols=3, width=360, height=260),
                    slowest_title, slowest_table, Div(text="<b>Generations</b>"),
                    generation_table,
                    sizing_mode="stretch_width")
    tables = {"slowest": slowest_table, "generations": generation_table}
    poll = CustomJS(args={"div": counter, "sources": sources, "tables": tables,
                          "url": f"{PAGE}/data/all",
                          "interval": POLL_MS, "throughput": throughput,
                          "slowest_title": slowest_title, "window_text": window_text},
                    code=POLL)
    document = Document()
    document.add_root(layout)
    document.js_on_event("document_ready", poll)
    return file_html(document, INLINE, "dask-abc")


def _generation_plots(generations, probabilities) -> list:
    """One plot per generation metric, and the model probabilities."""
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure
    from bokeh.transform import linear_cmap

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
    p.scatter("t", "p", source=probabilities, size=8, legend_field="name",
              color=linear_cmap("model", Category10_10, 0, 9))
    p.add_layout(p.legend[0], "right")  # beside the plot: points span the whole height
    plots.append(p)
    return plots


def _busy_plot(history):
    """Slots busy over time, against the slots there are."""
    from bokeh.plotting import figure

    p = figure(title="Slots busy", x_axis_type="datetime", name="abc-busy", y_axis_label="slots",
               tools="pan,wheel_zoom,reset,save,hover",
               tooltips=[("busy", "@busy"), ("slots", "@slots")])
    p.step("time", "slots", source=history, mode="after", color="gray", line_dash="dashed",
           legend_label="slots")
    p.step("time", "busy", source=history, mode="after", line_width=2, legend_label="busy")
    p.legend.location = "bottom_left"
    p.xaxis.ticker.desired_num_ticks = 4
    return p


def _throughput_plot(histogram, window_text: str):
    """The distribution of the throughput per slot over workers (or hosts)."""
    from bokeh.plotting import figure

    throughput = figure(title="Throughput per slot", name="abc-throughput",
                        x_axis_label=f"evaluations per slot-second, {window_text}",
                        y_axis_label="count",
                        tools="hover", tooltips=[("from", "@left"), ("to", "@right"),
                                                 ("count", "@count")])
    throughput.quad(left="left", right="right", top="count", bottom=0, source=histogram,
                    alpha=0.7)
    return throughput


def _posterior_plots(posterior, marginals: Sequence[tuple[str, str]]) -> list:
    """One histogram per parameter known when the page is opened (all in one before)."""
    from bokeh.models import CDSView, GroupFilter
    from bokeh.plotting import figure

    plots = []
    for model, parameter in marginals or [(None, None)]:
        if model is None:
            view, title, name = CDSView(), "Posterior marginals", "abc-posterior"
        else:
            view = CDSView(filter=GroupFilter(column_name="name",
                                              group=f"{model}: {parameter}"))
            title = f"Posterior of {parameter} (model {model})"
            name = f"abc-posterior-{model}: {parameter}"
        p = figure(title=title, name=name, x_axis_label=parameter,
                   tools="pan,wheel_zoom,reset,save,hover")
        p.quad(left="left", right="right", top="density", bottom=0, source=posterior,
               view=view, alpha=0.6)
        plots.append(p)
    return plots


def _slowest_table(slowest_hosts, rows: int):
    """The slowest workers (or hosts) with their load and throughput."""
    from bokeh.models import DataTable, HTMLTemplateFormatter, NumberFormatter, TableColumn

    significant = HTMLTemplateFormatter(template=SIGNIFICANT)
    return DataTable(
        source=slowest_hosts, name="abc-slowest", height=30 + 25 * rows, index_position=None,
        sizing_mode="stretch_width", columns=[
            TableColumn(field="name", title="name"),
            TableColumn(field="workers", title="workers"),
            TableColumn(field="busy", title="slots busy",
                        formatter=HTMLTemplateFormatter(template="<%= busy %>/<%= slots %>")),
            TableColumn(field="evaluations", title="evaluations",
                        formatter=NumberFormatter(format="0,0")),
            TableColumn(field="rate", title="throughput per slot", formatter=significant),
            TableColumn(field="relative", title="vs median", formatter=HTMLTemplateFormatter(
                template='<%= value == null ? "" : +value.toPrecision(2) + "×" %>')),
            TableColumn(field="seconds_per_evaluation", title="s per evaluation",
                        formatter=significant)])
