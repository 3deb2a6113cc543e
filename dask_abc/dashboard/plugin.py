"""The scheduler side of the ABC page: run state from events, the page and its data.

The master publishes its progress as Dask events under :data:`TOPIC` (one small
message at most every ``abc.dashboard.interval`` seconds, plus one per
generation); :class:`ABCDashboardPlugin` keeps the latest state on the scheduler
and adds three routes to the dashboard's web server: the page ``/abc`` (bokeh,
BokehJS inline) and the JSON it polls every second, ``/abc/data/status``,
``/abc/data/generations`` and ``/abc/data/posterior``.
"""

from __future__ import annotations

import json

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado import web

from ..sampler.dask_distributed import RANGE_KEY

#: The Dask event topic of dask-abc's progress messages.
TOPIC = "dask-abc"
STATUS_FIELDS = ("run", "generation", "accepted", "population", "evaluations",
                 "acceptance_rate", "epsilon", "batch_size", "evaluations_per_second",
                 "seconds_left")
GENERATION_FIELDS = ("t", "epsilon", "acceptance_rate", "ess", "samples", "seconds")


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
        self.posterior: dict[str, list] = {"name": [], "left": [], "right": [], "density": []}

    def all(self) -> dict:
        """Every part of the page's data, for one request."""
        return {part: _value(getattr(self, part, None)) for part in PARTS}

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
            for field in GENERATION_FIELDS:
                self.generations[field].append(msg[field])
            for m, (name, p) in enumerate(msg.get("model_probabilities", {}).items()):
                for column, value in zip(("t", "model", "name", "p"), (msg["t"], m, name, p)):
                    self.model_probabilities[column].append(value)
            self.posterior = {"name": [], "left": [], "right": [], "density": []}
            for name, (edges, density) in msg.get("posterior", {}).items():
                self.posterior["name"] += [name] * len(density)
                self.posterior["left"] += edges[:-1]
                self.posterior["right"] += edges[1:]
                self.posterior["density"] += density


PARTS = ("status", "generations", "model_probabilities", "posterior", "workers")


class WorkerCounts:
    """Evaluations finished per worker and ranges running there, from the scheduler's
    transitions of the Dask sampler's range tasks."""

    def __init__(self, scheduler=None):
        self.scheduler = scheduler
        self.evaluations: dict[str, int] = {}

    def transition(self, key, finish: str) -> None:
        if finish != "memory" or not isinstance(key, str) or not key.startswith(RANGE_KEY):
            return
        task = self.scheduler.tasks.get(key)
        for worker in (task.who_has if task is not None else ()):
            count = int(key.rsplit("-", 2)[1])
            self.evaluations[worker.address] = self.evaluations.get(worker.address, 0) + count
            break

    def columns(self) -> dict[str, list]:
        workers = sorted(self.scheduler.workers) if self.scheduler else []
        running = [sum(isinstance(t.key, str) and t.key.startswith(RANGE_KEY)
                       for t in self.scheduler.workers[w].processing) for w in workers]
        return {"index": list(range(len(workers))), "worker": workers,
                "evaluations": [self.evaluations.get(w, 0) for w in workers],
                "running": running}


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
    def initialize(self, state: ABCState):
        self.state = state

    def get(self):
        from .page import page_html

        self.write(page_html(list(dict.fromkeys(self.state.posterior["name"]))))


class ABCDashboardPlugin(SchedulerPlugin):
    """Serve the ABC page on the scheduler's dashboard; register it with
    ``client.register_plugin(ABCDashboardPlugin())`` (the Dask sampler does).

    Examples
    --------
    >>> ABCDashboardPlugin().name
    'dask-abc-dashboard'
    """

    name = "dask-abc-dashboard"

    def __init__(self):
        self.state = ABCState()
        self.workers = WorkerCounts()

    async def start(self, scheduler) -> None:
        self.workers.scheduler = scheduler
        self.state.workers = self.workers.columns
        _register_metrics(self.state)
        application = getattr(scheduler, "http_application", None)
        if application is None:  # a scheduler without a dashboard
            return
        routes = [(r"/abc", _Page, {"state": self.state})]
        routes += [(rf"/abc/data/{part}", _JSON, {"state": self.state, "part": part})
                   for part in PARTS + ("all",)]
        application.add_handlers(".*$", routes)

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        self.workers.transition(key, finish)

    def log_event(self, topic: str, msg) -> None:
        if topic == TOPIC and isinstance(msg, dict):
            self.state.update(msg)


_metrics: dict = {"state": None}  # the state the /metrics collector reports


def _register_metrics(state: ABCState) -> None:
    """Expose the run's counters on the scheduler's Prometheus ``/metrics`` route (when
    prometheus_client is installed, as distributed's route needs)."""
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

    first = _metrics["state"] is None
    _metrics["state"] = state
    if first:  # once per scheduler process
        REGISTRY.register(Collector())
