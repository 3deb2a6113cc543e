"""The scheduler side of the ABC page: run state from events, the page and its data.

The master publishes its progress as Dask events under :data:`TOPIC` (one small
message at most every ``abc.dashboard.interval`` seconds, plus one per
generation); :class:`ABCDashboardPlugin` keeps the latest state on the scheduler,
follows the Dask sampler's range tasks through their transitions
(:class:`~dask_abc.dashboard.load.ClusterLoad`), and adds routes to the
dashboard's web server: the page ``/abc`` (bokeh, BokehJS inline), listed in the
dashboard's menu, and the JSON it polls every second, ``/abc/data/all`` (and each
part alone: ``/abc/data/status``, ``generations``, ``model_probabilities``,
``posterior``, ``workers``).
"""

from __future__ import annotations

import json
import logging
import sys

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado import web
from tornado.ioloop import PeriodicCallback

from .. import config
from ..sampler.range_key import RangeKey
from .load import ClusterLoad

logger = logging.getLogger("dask_abc")

#: The Dask event topic of dask-abc's progress messages.
TOPIC = "dask-abc"
STATUS_FIELDS = ("run", "generation", "accepted", "population", "evaluations", "failed",
                 "acceptance_rate", "epsilon", "batch_size", "evaluations_per_second",
                 "seconds_left")
GENERATION_FIELDS = ("t", "epsilon", "acceptance_rate", "ess", "samples", "failed_samples",
                     "seconds")
POSTERIOR_FIELDS = ("name", "model", "parameter", "left", "right", "density")
#: The page's address on the dashboard, and its entry in the dashboard's menu.
PAGE = "abc"


class ABCState:
    """What the page shows, built from the master's events.

    Examples
    --------
    >>> state = ABCState()
    >>> state.update({"kind": "status", "generation": 0, "accepted": 5, "population": 10})
    >>> state.status["accepted"]
    [5]
    """

    def __init__(self):
        self.status = {field: [None] for field in STATUS_FIELDS}
        self.generations: dict[str, list] = {f: [] for f in GENERATION_FIELDS}
        # long format, one row per generation and model
        self.model_probabilities: dict[str, list] = {"t": [], "model": [], "name": [],
                                                     "p": []}
        # long format, one row per histogram bin
        self.posterior: dict[str, list] = {f: [] for f in POSTERIOR_FIELDS}

    def all(self) -> dict:
        """Every part of the page's data, for one request."""
        return {part: _value(getattr(self, part, None)) for part in PARTS}

    def marginals(self) -> list[tuple[str, str]]:
        """The (model, parameter) pairs of the posterior, in order."""
        return list(dict.fromkeys(zip(self.posterior["model"], self.posterior["parameter"])))

    def update(self, msg: dict) -> None:
        kind = msg.get("kind")
        if kind == "start":
            self.__init__()
            self.status["run"] = [msg.get("run")]
        elif kind == "status":
            for field in STATUS_FIELDS:
                if field in msg:
                    self.status[field] = [msg[field]]
        elif kind == "generation":
            for field in GENERATION_FIELDS:  # a master of an older version lacks new ones
                self.generations[field].append(msg.get(field))
            for m, (name, p) in enumerate(msg.get("model_probabilities", {}).items()):
                for column, value in zip(("t", "model", "name", "p"), (msg["t"], m, name, p)):
                    self.model_probabilities[column].append(value)
            self.posterior = {f: [] for f in POSTERIOR_FIELDS}
            for marginal in msg.get("posterior", ()):
                edges, density = marginal["edges"], marginal["density"]
                model, parameter = marginal["model"], marginal["parameter"]
                self.posterior["name"] += [f"{model}: {parameter}"] * len(density)
                self.posterior["model"] += [model] * len(density)
                self.posterior["parameter"] += [parameter] * len(density)
                self.posterior["left"] += edges[:-1]
                self.posterior["right"] += edges[1:]
                self.posterior["density"] += density


PARTS = ("status", "generations", "model_probabilities", "posterior", "workers")


def _value(data):
    return data() if callable(data) else data


class _JSON(web.RequestHandler):
    def initialize(self, state: ABCState, part: str):
        self.state, self.part = state, part

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(_value(getattr(self.state, self.part))))

    post = get  # bokeh's AjaxDataSource polls with POST by default


class _Page(web.RequestHandler):
    def initialize(self, state: ABCState, load: ClusterLoad):
        self.state, self.load = state, load

    def get(self):
        from .page import page_html

        self.write(page_html(self.state.marginals(), window=self.load.window,
                             slowest=self.load.slowest))


class ABCDashboardPlugin(SchedulerPlugin):
    """Serve the ABC page on the scheduler's dashboard; register it with
    ``client.register_plugin(ABCDashboardPlugin())`` (the Dask sampler does).

    The load of the workers (:class:`~dask_abc.dashboard.load.ClusterLoad`) follows
    the Dask sampler's range tasks in O(1) per transition; nothing walks the tasks.

    Examples
    --------
    >>> ABCDashboardPlugin().name
    'dask-abc-dashboard'
    """

    name = "dask-abc-dashboard"
    idempotent = True  # registered again by a second run: keep the page's state

    def __init__(self):
        self.state = ABCState()
        self.scheduler = None
        self.load = ClusterLoad(window=float(config.get("dashboard.rate-window")),
                                slowest=int(config.get("dashboard.slowest")),
                                bins=int(config.get("dashboard.bins")),
                                history=int(config.get("dashboard.history-seconds")))
        self._sampler: PeriodicCallback | None = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        for ws in list(scheduler.workers.values()):
            self.load.add_worker(ws.address, ws.host, ws.nthreads)
        self.state.workers = self.load.summary
        _register_metrics(self.state, self.load)
        self._sampler = PeriodicCallback(self.load.sample, 1000)
        self._sampler.start()
        application = getattr(scheduler, "http_application", None)
        if application is None:  # a scheduler without a dashboard
            return
        routes = [(rf"/{PAGE}", _Page, {"state": self.state, "load": self.load})]
        routes += [(rf"/{PAGE}/data/{part}", _JSON, {"state": self.state, "part": part})
                   for part in PARTS + ("all",)]
        application.add_handlers(".*$", routes)
        _add_to_menu(scheduler)

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def add_worker(self, scheduler, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.load.add_worker(worker, ws.host, ws.nthreads)

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        self.load.remove_worker(worker)

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if not RangeKey.matches(key):
            return
        if finish == "processing":
            task = self.scheduler.tasks.get(key) if self.scheduler is not None else None
            if task is not None and task.processing_on is not None:
                self.load.range_started(key, task.processing_on.address)
        elif start == "processing":
            self.load.range_stopped(key)
            if finish == "memory":  # kwargs: the worker's task-finished message
                self.load.range_finished(kwargs.get("worker"), RangeKey.parse(key).count,
                                         _compute_seconds(kwargs.get("startstops")))

    def log_event(self, topic: str, msg) -> None:
        if topic == TOPIC and isinstance(msg, dict):
            if msg.get("kind") == "start":
                self.load.reset()
            self.state.update(msg)


def _compute_seconds(startstops) -> float:
    return sum(s["stop"] - s["start"] for s in startstops or ()
               if s.get("action") == "compute")


def _add_to_menu(scheduler) -> bool:
    """List the page in the dashboard's menu (the bar atop Dask's own pages).

    distributed has no documented way to add a menu entry: its bokeh pages render
    ``template_variables(scheduler)["pages"]``, a list computed once per scheduler
    (memoised) and shared by every page, so the entry is appended there. If a future
    distributed renders its menu otherwise, the page is only reachable by address
    (tests/test_browser.py checks the entry).
    """
    module = sys.modules.get("distributed.dashboard.scheduler")
    variables = getattr(module, "template_variables", None)
    try:
        pages = variables(scheduler)["pages"] if variables is not None else None
    except Exception as error:  # not the distributed this was written for
        logger.debug("the ABC page is not in the dashboard's menu: %r", error)
        return False
    if not isinstance(pages, list):
        return False
    if PAGE not in pages:
        pages.append(PAGE)
    return True


_metrics: dict = {"state": None, "load": None}  # what the /metrics collector reports


def _register_metrics(state: ABCState, load: ClusterLoad) -> None:
    """Expose the run's counters and the slots busy on the scheduler's Prometheus
    ``/metrics`` route (when prometheus_client is installed, as distributed's route
    needs)."""
    try:
        from prometheus_client import REGISTRY
        from prometheus_client.core import GaugeMetricFamily
    except ImportError:
        return

    class Collector:
        def collect(self):
            status = {k: v[0] for k, v in _metrics["state"].status.items()}
            for field, help_text in [("generation", "the running generation"),
                                     ("accepted", "accepted particles of it"),
                                     ("evaluations", "evaluations of it"),
                                     ("epsilon", "its threshold")]:
                gauge = GaugeMetricFamily(f"dask_abc_{field}", f"dask-abc: {help_text}")
                if status[field] is not None:
                    gauge.add_metric([], float(status[field]))
                yield gauge
            load = _metrics["load"]
            for field, help_text in [("slots", "worker threads"),
                                     ("slots_busy", "worker threads running a range")]:
                gauge = GaugeMetricFamily(f"dask_abc_{field}", f"dask-abc: {help_text}")
                gauge.add_metric([], float(load.slots if field == "slots" else load.busy))
                yield gauge

    first = _metrics["state"] is None
    _metrics["state"], _metrics["load"] = state, load
    if first:  # once per scheduler process
        REGISTRY.register(Collector())
