"""Run the dask_abc vs pyABC benchmark matrix and print a summary.

Each case runs ``benchmarks/gaussian.py`` in its own subprocess: pyABC cases
with the pyABC virtualenv's interpreter, dask_abc cases with this one.
Results are printed as tables and written to ``benchmarks/results.json``.

Examples
--------
>>> # python benchmarks/run.py            # full matrix
>>> # python benchmarks/run.py --quick    # population 100
>>> # python benchmarks/run.py --only-library pyabc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "gaussian.py"
LIBRARIES = ("dask_abc", "pyabc")
DEFAULT_PYABC_PYTHON = "/work/pyabc-venv/bin/python"
QUICK_POPULATION = 100
SPEEDUP_TARGET = 5.0
EFFICIENCY_TARGET = 0.95


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    Attributes
    ----------
    library : str
        ``"dask_abc"`` or ``"pyabc"``.
    sampler : str
        ``"single"``, ``"multicore_eval"`` or ``"multicore_particle"``.
    model : str
        ``"micro"`` or ``"busy10ms"``.
    n_procs : int
        Worker processes (1 for ``"single"``).
    """

    library: str
    sampler: str
    model: str
    n_procs: int


def default_matrix(libraries: tuple[str, ...], n_procs: int) -> list[Case]:
    """Build the default matrix, libraries interleaved case by case.

    Parameters
    ----------
    libraries : tuple of str
        Libraries to include.
    n_procs : int
        Worker processes for the multicore samplers.

    Returns
    -------
    list of Case
        micro/single, busy10ms/single, busy10ms/multicore_eval,
        busy10ms/multicore_particle, for each library.
    """
    shapes = [
        ("single", "micro", 1),
        ("single", "busy10ms", 1),
        ("multicore_eval", "busy10ms", n_procs),
        ("multicore_particle", "busy10ms", n_procs),
    ]
    return [
        Case(lib, sampler, model, procs) for sampler, model, procs in shapes for lib in libraries
    ]


def library_env(library: str) -> dict[str, str]:
    """Environment for a worker subprocess.

    Parameters
    ----------
    library : str
        Library the worker will import.

    Returns
    -------
    dict
        A copy of ``os.environ``; for dask_abc the repository root is put
        first on ``PYTHONPATH`` so the working tree is what gets measured.
    """
    env = dict(os.environ)
    if library == "dask_abc":
        parts = [str(ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def importable(python: str, library: str) -> str | None:
    """Check that ``library`` imports with interpreter ``python``.

    Parameters
    ----------
    python : str
        Interpreter path.
    library : str
        Module name.

    Returns
    -------
    str or None
        None if it imports, else the reason it does not.
    """
    try:
        proc = subprocess.run(
            [python, "-c", f"import {library}"],
            capture_output=True,
            text=True,
            env=library_env(library),
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{python}: {err}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit code {proc.returncode}"
    return None


def run_one(
    case: Case,
    python: str,
    population: int,
    generations: int,
    seed: int,
    timeout: float,
) -> dict[str, Any]:
    """Run one case in a subprocess.

    Parameters
    ----------
    case : Case
        The case to run.
    python : str
        Interpreter to run the worker with.
    population, generations, seed : int
        Passed to the worker.
    timeout : float
        Seconds before the subprocess is killed.

    Returns
    -------
    dict
        The worker's JSON plus ``"status": "ok"``, or the case fields with
        ``"status": "failed"`` and an ``"error"``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        options = {
            "--library": case.library,
            "--sampler": case.sampler,
            "--n-procs": case.n_procs,
            "--model": case.model,
            "--population": population,
            "--generations": generations,
            "--seed": seed,
            "--json-out": out,
        }
        cmd = [python, str(WORKER)] + [str(x) for kv in options.items() for x in kv]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=library_env(case.library),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {**asdict(case), "status": "failed", "error": "timeout"}
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {**asdict(case), "status": "failed", "error": tail}
        return {**json.loads(out.read_text()), "status": "ok"}


def ok_results(results: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Index successful results by (library, sampler, model).

    Parameters
    ----------
    results : list of dict
        Results from :func:`run_one`.

    Returns
    -------
    dict
        ``{(library, sampler, model): result}``.
    """
    return {(r["library"], r["sampler"], r["model"]): r for r in results if r["status"] == "ok"}


def compute_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios dask_abc / pyabc of sims/s for each (sampler, model).

    Parameters
    ----------
    results : list of dict
        Results from :func:`run_one`.

    Returns
    -------
    list of dict
        One entry per (sampler, model) measured for both libraries.
    """
    ok = ok_results(results)
    ratios = []
    for (lib, sampler, model), dask in ok.items():
        base = ok.get(("pyabc", sampler, model))
        if lib != "dask_abc" or base is None:
            continue
        ratios.append(
            {
                "sampler": sampler,
                "model": model,
                "dask_abc_sims_per_s": dask["sims_per_s"],
                "pyabc_sims_per_s": base["sims_per_s"],
                "ratio": dask["sims_per_s"] / base["sims_per_s"],
            }
        )
    return ratios


def check_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the two project targets.

    Parameters
    ----------
    results : list of dict
        Results from :func:`run_one`.

    Returns
    -------
    list of dict
        Each with ``name``, ``value`` (None if not measured) and ``passed``
        (None if not measured).
    """
    ok = ok_results(results)
    dask = ok.get(("dask_abc", "single", "micro"))
    base = ok.get(("pyabc", "single", "micro"))
    speedup = dask["sims_per_s"] / base["sims_per_s"] if dask and base else None
    ev = ok.get(("dask_abc", "multicore_eval", "busy10ms"))
    eff = ev["efficiency"] if ev else None
    return [
        {
            "name": f"dask_abc/pyabc SingleCore sims/s on micro >= {SPEEDUP_TARGET}",
            "value": speedup,
            "passed": None if speedup is None else speedup >= SPEEDUP_TARGET,
        },
        {
            "name": f"dask_abc MulticoreEval efficiency on busy10ms >= {EFFICIENCY_TARGET}",
            "value": eff,
            "passed": None if eff is None else eff >= EFFICIENCY_TARGET,
        },
    ]


def _fmt(value: float | None, spec: str) -> str:
    """Format a number, or ``-`` for None."""
    return "-" if value is None else format(value, spec)


def format_report(
    results: list[dict[str, Any]],
    ratios: list[dict[str, Any]],
    targets: list[dict[str, Any]],
) -> str:
    """Render results, ratios and targets as plain-text tables.

    Parameters
    ----------
    results, ratios, targets : list of dict
        As returned by :func:`run_one`, :func:`compute_ratios` and
        :func:`check_targets`.

    Returns
    -------
    str
        The report.
    """
    head = (
        f"{'library':<9} {'sampler':<19} {'model':<9} {'n_procs':>7} "
        f"{'evaluations':>11} {'wall s':>8} {'sims/s':>9} {'efficiency':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        prefix = f"{r['library']:<9} {r['sampler']:<19} {r['model']:<9} "
        if r["status"] != "ok":
            err = r.get("error", "").strip().splitlines() or [""]
            lines.append(f"{prefix}{r['n_procs']:>7} {r['status']}: {err[-1]}")
            continue
        lines.append(
            f"{prefix}{r['n_procs']:>7} {r['evaluations']:>11} "
            f"{r['wall']:>8.2f} {r['sims_per_s']:>9.1f} "
            f"{_fmt(r['efficiency'], '.3f'):>10}"
        )
    lines += ["", "dask_abc / pyabc sims/s:"]
    if not ratios:
        lines.append("  (needs both libraries)")
    for q in ratios:
        lines.append(f"  {q['sampler']:<19} {q['model']:<9} {q['ratio']:>7.2f}x")
    lines += ["", "targets:"]
    for t in targets:
        verdict = {None: "n/a", True: "PASS", False: "FAIL"}[t["passed"]]
        lines.append(f"  {verdict:<4}  {t['name']}: {_fmt(t['value'], '.3f')}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` if None.

    Returns
    -------
    argparse.Namespace
        Parsed arguments.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help=f"population {QUICK_POPULATION} instead of 500"
    )
    p.add_argument("--only-library", choices=LIBRARIES)
    p.add_argument(
        "--pyabc-python",
        default=DEFAULT_PYABC_PYTHON,
        help="interpreter for pyABC cases (default: %(default)s)",
    )
    p.add_argument(
        "--dask-python",
        default=sys.executable,
        help="interpreter for dask_abc cases (default: this one)",
    )
    p.add_argument(
        "--population", type=int, default=None, help="population size (default 500, --quick 100)"
    )
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--n-procs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per case (default: %(default)s)"
    )
    p.add_argument("--results", type=Path, default=HERE / "results.json")
    p.add_argument("--check", action="store_true", help="exit 1 if a measured target is missed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the matrix, print the report and write the results file.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` if None.

    Returns
    -------
    int
        0 if every runnable case succeeded (and, with ``--check``, no
        measured target failed), else 1.
    """
    args = parse_args(argv)
    population = args.population or (QUICK_POPULATION if args.quick else 500)
    pythons = {"dask_abc": args.dask_python, "pyabc": args.pyabc_python}
    libraries = (args.only_library,) if args.only_library else LIBRARIES
    missing = {lib: importable(pythons[lib], lib) for lib in libraries}

    results = []
    for case in default_matrix(libraries, args.n_procs):
        label = f"{case.library} {case.sampler} {case.model} n={case.n_procs}"
        if missing[case.library]:
            reason = f"not importable: {missing[case.library]}"
            results.append({**asdict(case), "status": "skipped", "error": reason})
            print(f"skip {label} ({reason})", file=sys.stderr, flush=True)
            continue
        print(f"run  {label} ...", end=" ", file=sys.stderr, flush=True)
        result = run_one(
            case,
            pythons[case.library],
            population,
            args.generations,
            args.seed,
            args.timeout,
        )
        results.append(result)
        done = (
            f"{result['sims_per_s']:.1f} sims/s, {result['wall']:.1f} s"
            if result["status"] == "ok"
            else result["status"]
        )
        print(done, file=sys.stderr, flush=True)

    ratios = compute_ratios(results)
    targets = check_targets(results)
    print(format_report(results, ratios, targets))
    args.results.write_text(
        json.dumps(
            {
                "meta": {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "population": population,
                    "generations": args.generations,
                    "seed": args.seed,
                    "pythons": pythons,
                },
                "results": results,
                "ratios": ratios,
                "targets": targets,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.results}")

    failed = any(r["status"] == "failed" for r in results)
    missed = args.check and any(t["passed"] is False for t in targets)
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
