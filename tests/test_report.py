"""``dask-abc report``: a self-contained HTML page of a run."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

import dask_abc as abc
from dask_abc.report import report
from dask_abc.sampler import SingleCoreSampler


def model_a(p):
    return {"y": p["theta"] + np.random.normal()}


def model_b(p):
    return {"y": p["mu"] + 0.5 * p["nu"] + np.random.normal()}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "run.db"
    priors = [abc.Distribution(theta=abc.RV("norm", 0, 3)),
              abc.Distribution(mu=abc.RV("norm", 0, 3), nu=abc.RV("uniform", 0, 1))]
    smc = abc.ABCSMC([model_a, model_b], priors, population_size=100, seed=4,
                     sampler=SingleCoreSampler())
    smc.new(f"sqlite:///{path}", {"y": 1.0})
    smc.run(max_nr_populations=3).close()
    return path


def bokeh_document(html: str) -> dict:
    """The bokeh document embedded in a page."""
    match = re.search(r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>', html,
                      re.S)
    return json.loads(match[1])


def titles(html: str) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("name") == "Title":
                text = node.get("attributes", {}).get("text")
                if text:
                    found.add(text)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bokeh_document(html))
    return found


def test_report_has_every_plot_and_needs_no_network(db, tmp_path):
    out = report(f"sqlite:///{db}", tmp_path / "r.html")
    html = out.read_text()
    assert "cdn.bokeh.org" not in html and "Bokeh" in html  # BokehJS is inline
    found = titles(html)
    for name in ["Epsilon", "Acceptance rate", "Effective sample size", "Evaluations",
                 "Wall time (s)", "Model probabilities"]:
        assert name in found
    posteriors = {t.split(" (")[0] for t in found if "(mean" in t}
    assert posteriors <= {"model_a: theta", "model_b: mu", "model_b: nu"}
    assert posteriors  # at least the model alive in the last generation
    assert "stopped: maximum number of generations reached" in html


def test_dask_abc_report_command(db, tmp_path):
    out = tmp_path / "cli.html"
    proc = subprocess.run(["dask-abc", "report", str(db), "-o", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and out.stat().st_size > 100_000
