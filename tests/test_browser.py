"""The ABC dashboard page and the ``dask-abc report`` page in a real browser: Debian's
chromium, headless, driven by selenium, on loopback only."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

import dask_abc as abc
from dask_abc.report import report

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"

# a bokeh document's data, read in the page (Bokeh 3 renders into shadow roots)
COLUMN = """
if (!window.Bokeh || !Bokeh.documents.length) return [];
const model = Bokeh.documents[0].get_model_by_name(arguments[0]);
const source = model.source || model.renderers[0].data_source;
return source.data[arguments[1]] ? Array.from(source.data[arguments[1]]) : [];
"""
CANVASES = """
function count(root) {
  let n = root.querySelectorAll('canvas').length;
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) n += count(el.shadowRoot);
  return n;
}
return count(document);
"""
# the text of every table cell (bokeh's DataTables render into shadow roots)
CELLS = """
function cells(root, out) {
  for (const el of root.querySelectorAll('.slick-cell')) out.push(el.textContent.trim());
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) cells(el.shadowRoot, out);
  return out;
}
return cells(document, []);
"""
TITLES = """
if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.documents[0].roots().length) return null;
return Array.from(Bokeh.documents[0].all_models).filter(m => m.type === 'Title').map(m => m.text);
"""
# the legend items of a named figure, as their labels' specs
LEGEND = """
const p = Bokeh.documents[0].get_model_by_name(arguments[0]);
return [...p.center, ...p.right, ...p.left, ...p.above, ...p.below]
  .filter(m => m.type === 'Legend')
  .map(l => l.items.map(i => JSON.stringify(i.label)));
"""


def unformatted(cells: list[str]) -> list[str]:
    """The cells that show a float with more than 4 significant digits
    (1.5645795116456955 rather than 1.565)."""
    return [c for c in cells for number in re.findall(r"\d+\.\d+", c)
            if len(number.replace(".", "").lstrip("0")) > 4]


def slow_model(p):
    time.sleep(0.004)
    return {"y": p["theta"] + np.random.normal()}


@pytest.fixture(scope="module")
def browser():
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium and chromium-driver are missing (ci/test.sh installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(60)
    yield chrome
    chrome.quit()


def wait_for(condition, seconds=60.0, every=0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def severe_console_messages(chrome) -> list[str]:
    return [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]


def test_abc_page_in_a_browser_during_a_run(browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        base = client.dashboard_link.rsplit("/", 1)[0]
        smc = abc.ABCSMC(slow_model, abc.Distribution(theta=abc.RV("norm", 0, 3)),
                         population_size=400, seed=3,
                         sampler=abc.sampler.DaskDistributedSampler(client))
        smc.new(f"sqlite:///{tmp_path / 'run.db'}", {"y": 1.0})
        done, errors = threading.Event(), []

        def run():
            try:
                smc.run(max_nr_populations=4).close()
            except BaseException as e:  # reported below
                errors.append(e)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        # the page exists once the run has registered the plugin
        wait_for(lambda: client.run_on_scheduler(
            lambda dask_scheduler: "dask-abc-dashboard" in dask_scheduler.plugins))
        browser.get(base + "/abc")

        def accepted():
            """The counter line as shown: (generation, accepted)."""
            text = browser.execute_script(
                "if (!window.Bokeh || !Bokeh.documents.length) return '';"
                "return Bokeh.documents[0].get_model_by_name('abc-counter').text")
            found = re.search(r"(calibration|generation (\d+)): accepted <b>(\d+)</b>", text)
            return found and (int(found[2] or -1), int(found[3]))

        first = wait_for(accepted)
        second = wait_for(lambda: (a := accepted()) and a != first and a)
        assert second > first  # (generation, accepted) advanced
        points = len(browser.execute_script(COLUMN, "abc-epsilon", "t"))
        wait_for(lambda: len(browser.execute_script(COLUMN, "abc-epsilon", "t")) > points)
        browser.save_screenshot(str(ARTIFACTS / "abc-page.png"))
        assert done.wait(180) and not errors
        assert not severe_console_messages(browser)

        # the dashboard's menu leads to the page, which now names each posterior's model
        browser.get(base + "/status")
        link = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '.navbar a[href="abc"]'))
        link[0].click()
        titles = wait_for(lambda: browser.current_url.endswith("/abc")
                          and browser.execute_script(TITLES))
        assert "Posterior of theta (model slow_model)" in titles, titles
        with abc.History(f"sqlite:///{tmp_path / 'run.db'}", create=False) as h:
            info = h.get_generation_info()
        # the generations table: epsilon to 4 significant digits, rates in percent
        cells = wait_for(lambda: (c := browser.execute_script(CELLS)) and
                         format(float(f"{info.epsilon.iloc[-1]:.4g}"), "g") in c and c)
        assert cells and not unformatted(cells), cells
        assert format(float(f"{100 * info.acceptance_rate.iloc[0]:.3g}"), "g") + "%" in cells
        assert f"{info.samples.iloc[0]:,}" in cells
        # the model probabilities have a legend, by model name
        assert browser.execute_script(LEGEND, "abc-model-probabilities") == \
            [['{"field":"name"}']]
        assert set(browser.execute_script(COLUMN, "abc-model-probabilities", "name")) == \
            {"slow_model"}
        # the workers: one row per worker of this one-host cluster, slots busy of total
        assert sorted(browser.execute_script(COLUMN, "abc-slowest", "slots")) == [1, 1]
        assert "0/1" in cells

        def rate_shown():
            """The first worker's throughput, once the table shows its latest value."""
            rate = browser.execute_script(COLUMN, "abc-slowest", "rate")
            shown = rate and format(float(f"{rate[0]:.4g}"), "g")
            return shown in browser.execute_script(CELLS) and rate[0]

        # the throughput decays after the run, and the table follows it (bokeh redraws
        # a table whose number of rows is unchanged only when told)
        first_rate = wait_for(rate_shown)
        wait_for(lambda: (rate := rate_shown()) and rate != first_rate)
        browser.save_screenshot(str(ARTIFACTS / "abc-page-done.png"))
    assert (ARTIFACTS / "abc-page.png").stat().st_size > 10_000
    assert not severe_console_messages(browser)


def test_report_renders_in_a_browser(browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)

    def model_b(p):
        return {"y": p["mu"] + np.random.normal()}

    smc = abc.ABCSMC([slow_model, model_b], [abc.Distribution(theta=abc.RV("norm", 0, 3)),
                                             abc.Distribution(mu=abc.RV("norm", 0, 3))],
                     population_size=100, seed=5, sampler=abc.sampler.SingleCoreSampler())
    smc.new(f"sqlite:///{tmp_path / 'run.db'}", {"y": 1.0})
    smc.run(max_nr_populations=2).close()
    page = report(f"sqlite:///{tmp_path / 'run.db'}", tmp_path / "report.html")
    browser.get_log("browser")  # start with an empty console
    browser.get(page.as_uri())
    titles = wait_for(lambda: browser.execute_script(TITLES))
    assert "Epsilon" in titles
    assert any(t.startswith("slow_model: theta (mean") or t.startswith("model_b: mu (mean")
               for t in titles)
    figures = sum(1 for t in titles if t)
    assert wait_for(lambda: browser.execute_script(CANVASES) >= figures - 1)
    cells = wait_for(lambda: browser.execute_script(CELLS))
    assert cells and not unformatted(cells), cells
    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    assert not severe_console_messages(browser)
