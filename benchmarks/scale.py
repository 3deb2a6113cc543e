"""Scale: samplers on simulated clusters of 16 to 1000 slots, against pyABC 0.13.

A slot is a thread that can run one simulation. Each case starts a simulated
cluster on 127.0.0.1 (a few processes with many threads, see ``simcluster.py``),
runs ABC-SMC with a model that sleeps 0.1 s or 1 s (fixed, or log-normal with
the same mean), and reports: parallel efficiency, utilisation, excess
evaluations, the master's CPU seconds per 1,000 evaluations, the scheduler's
(or coordinator's) CPU, the Dask scheduler's task rate (in the bulk of each
generation and overall), the time from the end of one generation to the first
evaluation of the next, and pyABC 0.13's DaskDistributedSampler on the same
kind of cluster, with the ratio. Every dask_abc run must give the History of
the SingleCoreSampler on the same model without sleeping (the index rule).
Each case runs in its own process (pyABC's with its virtualenv's interpreter).

Usage: ``python benchmarks/scale.py [--quick] [--only PATTERNS] [--list]
[--json-out FILE] [--replot]``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import simcluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYABC_PYTHON = "/work/pyabc-venv/bin/python"
OBSERVED = {"y": 1.0}
SEED = 0
LOGNORMAL_SIGMA = 1.0  # coefficient of variation 1.31; the largest of 10,000 draws ~ 25x mean
SAMPLERS = {  # name -> library
    "dask": "dask_abc", "actor": "dask_abc", "redis": "dask_abc",
    "pyabc-b1": "pyabc", "pyabc-b5": "pyabc",
}


@dataclass(frozen=True)
class Case:
    """One run: a sampler on ``processes`` x ``threads`` slots, a model of ``seconds``
    (mean), ``generations`` after the calibration sample."""

    sampler: str
    processes: int
    threads: int
    seconds: float
    lognormal: bool
    population: int
    generations: int

    @property
    def slots(self) -> int:
        return self.processes * self.threads

    @property
    def library(self) -> str:
        return SAMPLERS[self.sampler]

    @property
    def name(self) -> str:
        return f"{self.sampler}/{self.slots}/{self.seconds:g}s" + (
            "-lognormal" if self.lognormal else "")

    def describe(self) -> dict:
        """The fields of a result that name the case."""
        return {**asdict(self), "name": self.name, "slots": self.slots,
                "library": self.library}


def matrix(quick: bool = False) -> list[Case]:
    """The default matrix (about 30 minutes, see the README), or the quick one."""
    if quick:  # about 3 minutes
        shapes = [((2, 8), 0.1, 200, 2, ("dask", "pyabc-b5")),
                  ((2, 100), 0.1, 1000, 2, ("dask", "actor", "redis", "pyabc-b5"))]
        return [Case(s, p, t, sec, False, pop, gens)
                for (p, t), sec, pop, gens, samplers in shapes for s in samplers]
    fixed = ("dask", "actor", "redis", "pyabc-b1", "pyabc-b5")
    cases = [Case(s, 2, 8, 0.1, False, 1000, 2) for s in ("dask", "pyabc-b1", "pyabc-b5")]
    for (p, t), sec, pop, gens in (((2, 100), 0.1, 1000, 4), ((2, 500), 1.0, 5000, 3)):
        cases += [Case(s, p, t, sec, False, pop, gens) for s in fixed]
        cases.append(Case("dask", p, t, sec, True, pop, gens))
    # pyABC at batch size 1 feeds about 60 tasks/s (one round trip per result): one
    # generation of the 1000-slot case already takes minutes
    return [replace(c, generations=1) if (c.sampler, c.slots) == ("pyabc-b1", 1000) else c
            for c in cases]


# -- one case, in its own process ------------------------------------------------------


def make_sampler(case: Case, lib, procs: simcluster.Processes):
    """Start the case's cluster; ``(sampler, client or None, coordinator process
    names)``, with every slot connected and warm."""

    from distributed import Client

    python = sys.executable
    P, T = case.processes, case.threads
    if case.sampler in ("dask", "pyabc-b1", "pyabc-b5"):
        address = simcluster.start_dask_cluster(procs, python, P, T)
        client = Client(address, set_as_default=False)
        client.wait_for_workers(P, timeout=180)
        threads = sum(client.nthreads().values())
        if threads != case.slots:
            raise RuntimeError(f"{threads} worker threads connected, expected {case.slots}")
        warm(client, case.library)
        client.run_on_scheduler(simcluster.install_task_probe)
        batch = "auto" if case.sampler == "dask" else int(case.sampler.split("-b")[1])
        return lib.sampler.DaskDistributedSampler(client, batch_size=batch), client, \
            ["scheduler"]
    if case.sampler == "actor":
        address = simcluster.start_dask_cluster(procs, python, 1, 1)  # hosts the coordinator
        client = Client(address, set_as_default=False)
        client.wait_for_workers(1, timeout=180)
        warm(client, case.library)
        sampler = lib.sampler.ActorEvalParallelSampler(client)
        connection, coordinator = ["--scheduler", address], ["scheduler", "worker-0"]
    else:
        host, port = simcluster.start_redis(procs)
        client = None
        sampler = lib.sampler.RedisEvalParallelSampler(host=host, port=port)
        connection, coordinator = ["--redis-host", host, "--redis-port", str(port)], ["redis"]
    broker = sampler.broker  # creates the coordinator; the workers wait for it
    simcluster.start_abc_workers(procs, python, connection, P, T)
    wait_for_broker_workers(broker, procs, P, T)
    return sampler, client, coordinator


def warm(client, library: str) -> None:
    """Import the library (and the model's module) on the workers and the scheduler
    before timing, for both libraries alike: a cold process spends a second or more
    importing it (the scheduler does when dask_abc's dashboard plugin arrives)."""
    import importlib

    for module in (library, "simcluster"):
        client.run(importlib.import_module, module)
    client.run_on_scheduler(importlib.import_module, library)


def wait_for_broker_workers(broker, procs, processes: int, threads: int,
                            timeout: float = 180) -> None:
    """Until every process and slot has registered with the coordinator (without a slot
    count in its status: every thread, or every process and no change for 3 s)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        procs.check_alive()
        status = broker.status()
        workers, slots = status["workers"], status.get("slots")
        if (workers, slots) != last:
            last, since = (workers, slots), time.monotonic()
        if slots is not None:
            if workers >= processes and slots >= processes * threads:
                return
        elif workers >= processes * threads or (workers >= processes
                                                and time.monotonic() - since > 3):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers} standalone workers ({slots} slots) registered "
                               f"after {timeout:g} s")
        time.sleep(0.2)


def timestamp_generations(sampler, model: simcluster.SleepModel) -> list[dict]:
    """Wrap ``sampler.sample``: the k-th call (0 is the calibration
    sample) is recorded with its start and return time, and the model is tagged ``k``
    before the sampler ships it, so that each logged simulation names its call."""
    calls: list[dict] = []
    original = sampler.sample

    def sample(*args, **kwargs):
        model.tag = str(len(calls))
        call = {"start": time.time(), "end": None}
        calls.append(call)
        try:
            return original(*args, **kwargs)
        finally:
            call["end"] = time.time()

    sampler.sample = sample
    return calls


def history_difference(h1, h2) -> str | None:
    """None if the histories are equal (generations, epsilons, evaluation counts,
    particles, weights, distances, model probabilities), else what differs."""
    if h1.max_t != h2.max_t:
        return f"max_t {h1.max_t} != {h2.max_t}"
    p1, p2 = h1.get_all_populations(), h2.get_all_populations()
    for column in ("t", "samples", "epsilon"):
        if p1[column].tolist() != p2[column].tolist():
            return f"populations' {column}: {p1[column].tolist()} != {p2[column].tolist()}"
    if h1.total_nr_simulations != h2.total_nr_simulations:
        return f"total_nr_simulations {h1.total_nr_simulations} != {h2.total_nr_simulations}"
    for t in range(h1.max_t + 1):
        a, b = h1.get_population_arrays(t), h2.get_population_arrays(t)
        for key in a:
            if not np.array_equal(a[key], b[key], equal_nan=True):
                return f"generation {t}: {key} differs"
    if not h1.get_model_probabilities().equals(h2.get_model_probabilities()):
        return "model probabilities differ"
    return None


def tail_seconds(slots: int) -> float:
    """The generation's tail for the task rate: the last ``task_seconds(slots)``, the
    longest range dask_abc hands out on ``slots`` slots. Before it, every slot has at
    least one longest range of needed work left; in it, ranges shrink so that the
    slots finish together, and tasks come up to five times faster (see
    ``dask_abc.sampler.policy.Auto``). The same tail is used for every library, so rates
    compare."""
    from dask_abc.sampler.policy import Auto

    return Auto().task_seconds(slots)


def run_case(case: Case, groups_file: str | None, tail: float) -> dict:
    """Start the cluster, run and measure one inference, stop everything."""
    import importlib

    lib = importlib.import_module(case.library)
    simcluster.adopt_orphans()
    with tempfile.TemporaryDirectory(prefix="abc-scale-") as tmp:
        tmp = Path(tmp)
        (tmp / "sim").mkdir()
        procs = simcluster.Processes(tmp, dict(os.environ), groups_file)
        client = None
        try:
            sampler, client, coordinator = make_sampler(case, lib, procs)
            return measure(case, lib, sampler, client, procs, coordinator, tmp, tail)
        except Exception:
            for name, _ in procs.started:  # what the cluster said, for the report
                print(f"--- {name}:\n{procs.log_tail(name, 8)}", file=sys.stderr)
            raise
        finally:
            if client is not None:
                client.close()
            procs.stop()


def measure(case: Case, lib, sampler, client, procs, coordinator, tmp: Path,
            tail: float) -> dict:
    np.random.seed(SEED)  # pyABC's master (it has no seed argument)
    sigma = LOGNORMAL_SIGMA if case.lognormal else None
    model = simcluster.SleepModel(case.seconds, sigma, str(tmp / "sim"))
    prior = lib.Distribution(theta=lib.RV("norm", 0, 3))
    seed = {"seed": SEED} if case.library == "dask_abc" else {}
    abc = lib.ABCSMC(model, prior, lib.PNormDistance(p=2), population_size=case.population,
                     sampler=sampler, **seed)
    abc.new("sqlite:///" + str(tmp / "abc.db"), OBSERVED)
    calls = timestamp_generations(sampler, model)
    cpu_before = procs.cpu_seconds()
    cpu, t0, start = time.process_time(), time.time(), time.perf_counter()
    history = abc.run(max_nr_populations=case.generations)
    wall = time.perf_counter() - start
    master_cpu, t1 = time.process_time() - cpu, t0 + wall
    cpu_after = procs.cpu_seconds()
    tasks = np.array(client.run_on_scheduler(simcluster.task_probe_times)
                     if case.sampler not in ("actor", "redis") else [])
    time.sleep(2 * case.seconds + 0.5)  # abandoned simulations finish and log themselves
    sims = simcluster.read_model_log(tmp / "sim")
    result = {
        **case.describe(),
        **metrics(case, history, calls, sims, tasks, t0, t1, tail),
        "wall": wall,
        "master_cpu_per_1k": 1000 * master_cpu / history.total_nr_simulations,
        "server_cpu_per_1k": 1000 * sum(cpu_after.get(n, 0) - cpu_before.get(n, 0)
                                        for n in coordinator)
        / history.total_nr_simulations,
        "server": "+".join(coordinator),
    }
    if case.library == "dask_abc":  # the index rule: SingleCore's History, no sleep
        reference = lib.ABCSMC(model.without_sleep(), prior, lib.PNormDistance(p=2),
                               population_size=case.population,
                               sampler=lib.sampler.SingleCoreSampler(), seed=SEED)
        reference.new("sqlite:///" + str(tmp / "reference.db"), OBSERVED)
        result["history_difference"] = history_difference(
            history, reference.run(max_nr_populations=case.generations))
        result["history_equal"] = result["history_difference"] is None
    return result


def metrics(case: Case, history, calls: list[dict], sims: dict, tasks: np.ndarray,
            t0: float, t1: float, tail: float) -> dict:
    """Efficiency, utilisation, excess, task rates and generation gaps of one run; the
    bulk task rate is taken before the generation's last ``tail`` seconds, in the
    generations at least two tails long."""
    wall = t1 - t0
    evaluations = int(history.total_nr_simulations)
    samples = history.get_all_populations().sort_values("t")["samples"].astype(int).tolist()
    ours = np.char.isdigit(sims["tag"])  # not the pre-flight check's call in the master
    tag = np.where(ours, sims["tag"], "-1").astype(int)
    start, end = sims["start"], sims["end"]
    busy = np.clip(np.minimum(end, t1) - np.maximum(start, t0), 0, None)[ours].sum()
    ran = int(ours.sum())
    generations = []
    for k, call in enumerate(calls):
        duration = call["end"] - call["start"]
        mine = start[ours & (tag == k)]
        first = float(mine.min()) if len(mine) else None
        gen = {"t": k - 1, "start": call["start"], "end": call["end"], "wall": duration,
               "evaluations": samples[k] if k < len(samples) else None, "ran": len(mine),
               "first_evaluation_after_start": None if first is None else first - call["start"]}
        if gen["evaluations"]:
            gen["efficiency"] = gen["evaluations"] * case.seconds / case.slots / duration
        if k:  # the end of the previous generation to this one's first evaluation
            previous = calls[k - 1]["end"]
            gen["master_between"] = call["start"] - previous
            gen["gap"] = None if first is None else first - previous
        # the tail: from the last instant with 90 % of the slots busy to the end; before
        # it, the utilisation says what scheduling (not waiting for stragglers) loses
        full = simcluster.last_full(start[ours], end[ours], call["start"], call["end"],
                                    0.9 * case.slots)
        if full is not None:
            gen["tail"] = call["end"] - full
            if full > call["start"]:
                gen["utilisation_before_tail"] = simcluster.busy_seconds(
                    start[ours], end[ours], call["start"], full) / case.slots / (
                    full - call["start"])
        if len(tasks):
            inside = tasks[(tasks >= call["start"]) & (tasks <= call["end"])]
            gen["tasks"] = len(inside)
            gen["tasks_per_s"] = len(inside) / duration
            if duration >= 2 * tail:
                bulk = duration - tail
                gen["bulk_tasks_per_s"] = (inside <= call["start"] + bulk).sum() / bulk
        generations.append(gen)
    gaps = [g["gap"] for g in generations if g.get("gap") is not None]
    tails = [g["tail"] for g in generations if "tail" in g]
    before = [g for g in generations if "utilisation_before_tail" in g]
    run_tasks = tasks[(tasks >= t0) & (tasks <= t1)] if len(tasks) else tasks
    out = {
        "evaluations": evaluations,
        "efficiency": evaluations * case.seconds / case.slots / wall,
        "utilisation": float(busy) / case.slots / wall,
        "simulations_run": ran,
        "excess": ran - evaluations,
        "excess_fraction": (ran - evaluations) / evaluations,
        "peak_running": simcluster.peak_concurrency(start[ours], end[ours]),
        # run() outside the sampler's calls: set-up, storing generations, the end
        "outside_sampler": wall - sum(c["end"] - c["start"] for c in calls),
        "before_first_call": calls[0]["start"] - t0 if calls else None,
        "after_last_call": t1 - calls[-1]["end"] if calls else None,
        "gap_median": float(np.median(gaps)) if gaps else None,
        "gap_max": max(gaps) if gaps else None,
        # the share of run() in generation tails, and the utilisation outside them
        "tail_fraction": sum(tails) / wall if tails else None,
        "utilisation_before_tail": (
            sum(g["utilisation_before_tail"] * (g["wall"] - g["tail"]) for g in before)
            / sum(g["wall"] - g["tail"] for g in before)) if before else None,
        "generations_run": generations,
    }
    if len(tasks):
        out["tasks"] = len(run_tasks)
        out["tasks_per_s"] = len(run_tasks) / wall
        out["tail_seconds"] = tail
        out["bulk_tasks_per_s_max"] = max(
            (g["bulk_tasks_per_s"] for g in generations if "bulk_tasks_per_s" in g),
            default=None)
    if case.library == "dask_abc":  # returned by the workers but not used
        info = history.get_generation_info()
        out["excess_returned"] = int((info.evaluations_performed - info.samples).sum())
    return out


# -- the driver ------------------------------------------------------------------------


def case_env(library: str) -> dict:
    """The case's environment (inherited by its cluster): benchmarks/ on the path for
    the model and the probe, and the working tree first for dask_abc."""
    parts = ([str(ROOT)] if library == "dask_abc" else []) + [str(HERE)]
    parts += [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return dict(os.environ, PYTHONPATH=os.pathsep.join(parts))


def skip_reasons(cases: list[Case], pyabc_python: str) -> dict[str, str]:
    """Why a sampler's cases cannot run here (none: all can)."""
    reasons = {}
    samplers = {c.sampler for c in cases}
    if any(SAMPLERS[s] == "pyabc" for s in samplers):
        done = subprocess.run([pyabc_python, "-c", "import pyabc, distributed"],
                              capture_output=True, text=True, env=case_env("pyabc"))
        if done.returncode:
            reasons["pyabc"] = f"pyABC does not import with {pyabc_python}"
    if "redis" in samplers and shutil.which("redis-server") is None:
        reasons["redis"] = "redis-server not found"
    return reasons


def skipped(case: Case, reasons: dict[str, str]) -> str | None:
    if case.library == "pyabc":
        return reasons.get("pyabc")
    return reasons.get(case.sampler)


def _case_preexec() -> None:
    """The case's own session (its process group is killed on a timeout), and SIGTERM,
    on which it stops its cluster, if this driver dies."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_subprocess(case: Case, args) -> dict:
    """Run one case in a process (and session) of its own; kill it, and whatever it
    started, if it overruns or the benchmark is interrupted."""
    python = args.pyabc_python if case.library == "pyabc" else sys.executable
    with tempfile.TemporaryDirectory(prefix="abc-scale-case-") as tmp:
        out, groups, log = Path(tmp, "result.json"), Path(tmp, "groups"), Path(tmp, "log")
        cmd = [python, str(Path(__file__).resolve()), "--case", json.dumps(asdict(case)),
               "--case-out", str(out), "--groups-file", str(groups),
               "--tail-seconds", str(tail_seconds(case.slots))]
        error = None
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, env=case_env(case.library), stdout=f,
                                    stderr=subprocess.STDOUT, preexec_fn=_case_preexec)
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            error = f"timeout after {args.timeout:g} s"
        finally:
            if proc.poll() is None:  # timeout, or Ctrl-C: the case stops its cluster
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            left = simcluster.kill_groups(groups)
            if left:
                print(f"  killed {len(left)} process groups the case left behind",
                      flush=True)
        if error is None and (proc.returncode or not out.exists()):
            lines = log.read_text(errors="replace").strip().splitlines()
            error = "\n".join(lines[-12:]) or f"exit code {proc.returncode}"
        if error is not None:
            return {**case.describe(), "status": "failed", "error": error}
        return {**json.loads(out.read_text()), "status": "ok"}


def fmt(value, spec: str = ".3f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def report(results: list[dict]) -> None:
    print(f"\n{'case':28} {'PxT':>7} {'pop':>5} {'g':>2} {'evals':>7} {'wall s':>7} "
          f"{'eff':>6} {'util':>6} {'excess':>7} {'mCPU/1k':>8} {'sCPU/1k':>8} "
          f"{'tasks/s':>7} {'bulk':>6} {'gap ms':>9} {'out s':>6} {'peak':>5}  History")
    for r in results:
        head = f"{r['name']:28} {str(r['processes']) + 'x' + str(r['threads']):>7} " \
               f"{r['population']:5d} {r['generations']:2d}"
        if r.get("status") != "ok":
            last = (r.get("error") or "").strip().splitlines()[-1:]
            print(f"{head}  {r.get('status')}{': ' + last[0] if last else ''}")
            continue
        gap = (f"{1e3 * r['gap_median']:.0f}/{1e3 * r['gap_max']:.0f}"
               if r["gap_median"] is not None else "-")
        equal = {True: "= single", False: "DIFFERS", None: "-"}[r.get("history_equal")]
        print(f"{head} {r['evaluations']:7d} {r['wall']:7.1f} {r['efficiency']:6.3f} "
              f"{r['utilisation']:6.3f} {100 * r['excess_fraction']:6.1f}% "
              f"{r['master_cpu_per_1k']:8.2f} {r['server_cpu_per_1k']:8.2f} "
              f"{fmt(r.get('tasks_per_s'), '.0f'):>7} "
              f"{fmt(r.get('bulk_tasks_per_s_max'), '.0f'):>6} {gap:>9} "
              f"{r['outside_sampler']:6.2f} "
              f"{r['peak_running']:5d}  {equal}")
        if r.get("history_difference"):
            print(f"    History differs from SingleCore's: {r['history_difference']}")
    ok = [r for r in results if r.get("status") == "ok"]
    print("\ngeneration tails (from the last instant with 90 % of the slots busy to the "
          "generation's end):")
    for r in ok:
        if r.get("tail_fraction") is not None:
            print(f"  {r['name']:28} {100 * r['tail_fraction']:5.1f}% of run() in tails, "
                  f"utilisation before them {fmt(r.get('utilisation_before_tail'))}")
    rows = []
    for r in ok:
        if SAMPLERS[r["sampler"]] == "pyabc":
            continue
        for other in ("pyabc-b1", "pyabc-b5"):
            theirs = next((x for x in ok if x["sampler"] == other and x["slots"] == r["slots"]
                           and x["seconds"] == r["seconds"]
                           and x["lognormal"] == r["lognormal"]), None)
            if theirs:
                rows.append(f"  {r['name']:28} / {other}: {r['efficiency']:.3f} / "
                            f"{theirs['efficiency']:.3f} = "
                            f"{r['efficiency'] / theirs['efficiency']:.1f}x")
    if rows:
        print("\nefficiency, ours / pyABC 0.13 DaskDistributedSampler:")
        print("\n".join(rows))
    print("\nissue 13 targets:")
    for name, value, target, below in targets(ok):
        passed = value < target if below else value >= target
        print(f"  {'PASS' if passed else 'FAIL'}  {name}: {value:.3f}")


def targets(results: list[dict]) -> list[tuple[str, float, float, bool]]:
    """(description, value, target, value must stay below) for the cases that ran."""
    def get(name):
        return next((r for r in results if r["name"] == name), None)

    out = []
    for name in ("dask/200/0.1s", "dask/1000/1s", "actor/200/0.1s", "redis/200/0.1s"):
        r = get(name)
        if r:
            out.append((f"{name} efficiency >= 0.90", r["efficiency"], 0.90, False))
    r = get("dask/1000/1s")
    if r and r.get("bulk_tasks_per_s_max") is not None:
        out.append(("dask/1000/1s scheduler tasks/s outside the tail < 300",
                    r["bulk_tasks_per_s_max"], 300, True))
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {("dask", False): ("o-", "dask_abc Dask (auto)"),
              ("dask", True): ("o:", "dask_abc Dask (auto), log-normal time"),
              ("actor", False): ("D-", "dask_abc Actor + dask-abc-worker --threads"),
              ("redis", False): ("P-", "dask_abc Redis + dask-abc-worker --threads"),
              ("pyabc-b1", False): ("s--", "pyABC 0.13 Dask, batch 1"),
              ("pyabc-b5", False): ("^--", "pyABC 0.13 Dask, batch 5")}
    for (sampler, lognormal), (style, label) in styles.items():
        points = sorted((r["slots"], r["efficiency"], r["seconds"]) for r in ok
                        if r["sampler"] == sampler and r["lognormal"] == lognormal)
        if points:
            x, y, seconds = zip(*points)
            ax.plot(x, y, style, label=label)
            for xi, yi, s in points:
                ax.annotate(f"{s:g} s", (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("slots (worker threads)")
    ax.set_ylabel("parallel efficiency")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.9, color="grey", lw=0.5, ls=":")
    ax.set_title("ABC-SMC on simulated clusters (sleeping model, 127.0.0.1)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="16 and 200 slots, 0.1 s, 2 generations (about 3 minutes)")
    p.add_argument("--only", default=None,
                   help="comma-separated patterns of case names, e.g. 'dask/200/*,pyabc-b5/*'")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--population", type=int, help="override every selected case's")
    p.add_argument("--generations", type=int, help="override every selected case's")
    p.add_argument("--layout", help="override the cluster layout, PROCESSESxTHREADS")
    p.add_argument("--json-out", default=str(HERE / "scale_results.json"),
                   help="results (default benchmarks/scale_results.json); the PNG goes "
                   "beside it")
    p.add_argument("--replot", action="store_true",
                   help="report and plot the --json-out file again, without running")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    p.add_argument("--pyabc-python", default=PYABC_PYTHON)
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, as JSON
    p.add_argument("--case-out", help=argparse.SUPPRESS)
    p.add_argument("--groups-file", help=argparse.SUPPRESS)
    p.add_argument("--tail-seconds", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # like Ctrl-C: the clusters are stopped
        signal.signal(sig, lambda *_: sys.exit(143))
    if args.case:
        result = run_case(Case(**json.loads(args.case)), args.groups_file, args.tail_seconds)
        Path(args.case_out).write_text(json.dumps(result))
        return
    out = Path(args.json_out)
    if args.replot:
        results = json.loads(out.read_text())
        report(results)
        plot(results, out.with_suffix(".png"))
        return
    cases = matrix(args.quick)
    if args.only:
        patterns = args.only.split(",")
        cases = [c for c in cases if any(fnmatch.fnmatch(c.name, pat) for pat in patterns)]
    overrides = {"population": args.population, "generations": args.generations}
    if args.layout:
        overrides["processes"], overrides["threads"] = map(int, args.layout.split("x"))
    cases = [replace(c, **{k: v for k, v in overrides.items() if v is not None})
             for c in cases]
    if args.list or not cases:
        for c in cases:
            print(f"{c.name:28} {c.processes}x{c.threads} pop {c.population} "
                  f"{c.generations} generations")
        sys.exit(0 if cases else "no case selected")
    reasons = skip_reasons(cases, args.pyabc_python)
    results = []
    try:
        for case in cases:
            print(f"run {case.name} ({case.processes}x{case.threads}, pop {case.population}, "
                  f"{case.generations} generations) ...", flush=True)
            why = skipped(case, reasons)
            if why:
                results.append({**case.describe(), "status": f"skipped: {why}"})
                print(f"  skipped: {why}", flush=True)
                continue
            result = run_subprocess(case, args)
            results.append(result)
            if result["status"] == "ok":
                print(f"  efficiency {result['efficiency']:.3f}, wall {result['wall']:.1f} s"
                      + ("" if result.get("history_equal") in (True, None)
                         else ", HISTORY DIFFERS"), flush=True)
            else:
                print(f"  failed: {result['error']}", flush=True)
    finally:
        out.write_text(json.dumps(results, indent=1))
    report(results)
    if any(r.get("status") == "ok" for r in results):
        plot(results, out.with_suffix(".png"))
        print(f"\nwrote {out} and {out.with_suffix('.png')}")
    if any(r.get("history_equal") is False for r in results):
        sys.exit("a History differs from SingleCore's: the index rule was broken")


if __name__ == "__main__":
    main()
