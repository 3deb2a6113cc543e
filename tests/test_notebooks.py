"""The example notebooks run top to bottom and show the posterior they promise.

Each notebook in ``notebooks/`` (except ``laptop_to_slurm.ipynb``, which needs a SLURM
cluster and has a test of its own) is executed with nbclient in a fresh ``python3``
kernel, in a temporary working directory. The test asserts that no cell fails, that
the kernel wrote nothing to stderr (no warnings), that no process the notebook started
(clusters, workers, redis-server, masters) outlives it, that at least one plot was drawn
(an ``image/png`` output), and that the printed summary lines

    posterior mean <name>: <estimate> (exact <value>)
    model probability <name>: <estimate> (exact <value>)

are within :data:`TOLERANCES` of the analytic answers they state. The executed
notebooks are saved to ``test-artifacts/notebooks/`` for inspection.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
#: notebooks with a test of their own
EXCLUDED = {"laptop_to_slurm.ipynb"}
CELL_TIMEOUT = 300  # seconds per cell

#: largest allowed |estimate - exact| of each kind of summary line
TOLERANCES = {"posterior mean": 0.15, "model probability": 0.1}
NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
SUMMARY = re.compile(rf"^(?P<kind>{'|'.join(TOLERANCES)})\b[^:\n]*:\s*(?P<estimate>{NUMBER})"
                     rf"\s*\(exact\s+(?P<exact>{NUMBER})\)", re.MULTILINE)


def execute_notebook(path, cwd, timeout: float = CELL_TIMEOUT,
                     env: dict | None = None) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` top to bottom in a new ``python3`` kernel whose working
    directory is ``cwd``; ``timeout`` is the limit per cell in seconds; ``env`` (default:
    this process's) is the kernel's environment.

    Returns the executed notebook (outputs filled in). A failing cell raises
    :class:`nbclient.exceptions.CellExecutionError` naming the cell and its traceback.
    """
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(**({} if env is None else {"env": env}))
    return nb


def processes_with(variable: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment has ``variable=value`` (inherited from a kernel)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get(variable) == value):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def leftover_processes(variable: str, value: str, wait: float = 15.0) -> list[str]:
    """The processes of a finished kernel (marked by ``variable=value``) still alive after
    ``wait`` seconds, as "PID command line"."""
    deadline = time.monotonic() + wait
    while True:
        left = processes_with(variable, value)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = []
    for proc in left:
        try:
            names.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.Error:
            pass
    return names


def save_artifact(nb: nbformat.NotebookNode, name: str) -> Path:
    """Write an executed notebook to ``test-artifacts/notebooks/`` (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    nbformat.write(nb, str(path))
    return path


def outputs(nb: nbformat.NotebookNode):
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            yield index, output


def text_of(output) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    return ""


def notebook_paths() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb") if p.name not in EXCLUDED)


def run_notebook(path: Path, cwd: Path) -> nbformat.NotebookNode:
    """Execute ``path`` in ``cwd``, save it to the artifacts, and fail if it left a
    process running, failed, or wrote to stderr."""
    # every process the kernel starts inherits this mark, so none can be missed below
    marker = ("DASK_ABC_NOTEBOOK_TEST", uuid.uuid4().hex)
    started = time.perf_counter()
    try:
        nb = execute_notebook(path, cwd, env={**os.environ, marker[0]: marker[1]})
    finally:
        print(f"{path.name}: {time.perf_counter() - started:.1f} s")
        left = leftover_processes(*marker)
        for pid in [int(name.split()[0]) for name in left]:
            try:
                psutil.Process(pid).kill()  # do not leave them to the next tests
            except psutil.Error:
                pass
    save_artifact(nb, path.name)
    assert not left, f"{path.name} left processes running: {left}"
    errors = [(i, o) for i, o in outputs(nb) if o.output_type == "error"]
    assert not errors, errors
    stderr = [(i, o.text) for i, o in outputs(nb)
              if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"{path.name} wrote to stderr (warnings?): {stderr}"
    return nb


def assert_shows_posterior(nb: nbformat.NotebookNode, name: str) -> None:
    """A plot, and summary lines within :data:`TOLERANCES` of their exact values."""
    images = [i for i, o in outputs(nb) if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no plot"
    text = "\n".join(text_of(o) for _, o in outputs(nb))
    found = [m.groupdict() for m in SUMMARY.finditer(text)]
    assert any(f["kind"] == "posterior mean" for f in found), (
        f"{name} printed no 'posterior mean NAME: ESTIMATE (exact VALUE)' line")
    for f in found:
        estimate, exact = float(f["estimate"]), float(f["exact"])
        assert abs(estimate - exact) <= TOLERANCES[f["kind"]], (name, f)


def test_the_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path.name}: clear the outputs before committing")


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_and_shows_the_posterior(path, tmp_path):
    assert_shows_posterior(run_notebook(path, tmp_path), path.name)
