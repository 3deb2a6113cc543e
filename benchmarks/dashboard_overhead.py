"""Wall time of runs with the ABC dashboard page open in a browser and without it.

A 1 ms model on a 2-worker LocalCluster (the DaskDistributedSampler): runs with
``abc.dashboard.enabled`` off, and with it on while headless chromium shows the
page ``/abc`` (polling every second), alternating, several repeats; medians compared.

Usage: python benchmarks/dashboard_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import dask

sys.path.insert(0, str(Path(__file__).parent))
import suite_models  # noqa: E402

import dask_abc as abc  # noqa: E402

cloudpickle.register_pickle_by_value(suite_models)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def one_run(client, folder: str, dashboard: bool, population: int, generations: int) -> float:
    prior = abc.Distribution(theta=abc.RV("norm", 0, 3))
    smc = abc.ABCSMC(suite_models.GaussianModel(0.001), prior, population_size=population,
                     sampler=abc.sampler.DaskDistributedSampler(client), seed=1)
    with dask.config.set({"abc.dashboard.enabled": dashboard}):
        started = time.perf_counter()
        smc.new(f"sqlite:///{folder}/run-{time.monotonic_ns()}.db", {"y": 1.0})
        smc.run(max_nr_populations=generations).close()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--population", type=int, default=1000)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as folder, \
            LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        one_run(client, folder, True, args.population, 1)  # warm up; registers the page
        chrome = browser()
        try:
            chrome.get(client.dashboard_link.rsplit("/", 1)[0] + "/abc")
            for _ in range(args.repeats):
                for dashboard in (False, True):
                    times[dashboard].append(one_run(client, folder, dashboard,
                                                    args.population, 4))
        finally:
            chrome.quit()
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"1 ms model, population {args.population} x 4, 2 workers, {args.repeats} repeats")
    print(f"without the dashboard {off:.3f} s, with the page open {on:.3f} s: "
          f"{100 * (on / off - 1):+.1f} %")
    print("all without:", [round(x, 3) for x in times[False]])
    print("all with:   ", [round(x, 3) for x in times[True]])


if __name__ == "__main__":
    main()
