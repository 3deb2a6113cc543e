"""The dask-abc command line."""

from __future__ import annotations

import re
import subprocess
import sys

import dask_abc as abc


def dask_abc(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dask_abc.cli", *args], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_prints_generations_summary_and_database(tmp_path):
    db = tmp_path / "demo.db"
    out = dask_abc("demo", "--population-size", "200", "--max-populations", "3",
                   "--processes", "2", "--db", str(db))
    lines = [line for line in out.splitlines() if line.startswith("t=")]
    assert len(lines) == 3
    line = r"t=0: eps=[\d.]+, accepted 200/\d+ \([\d.]+%\), ESS [\d.]+, [\d.]+ s"
    assert re.match(line, lines[0])
    assert "posterior (last generation)" in out
    assert f"database: {db}" in out
    assert "stopped: maximum number of generations reached (3)" in out
    history = abc.History(f"sqlite:///{db}")
    assert history.n_populations == 3
    assert history.get_model_probabilities().shape == (3, 2)


def test_info_lists_runs_and_generations(tmp_path):
    db = tmp_path / "demo.db"
    dask_abc("-q", "demo", "--population-size", "100", "--max-populations", "2",
             "--processes", "1", "--db", str(db))
    out = dask_abc("info", str(db))
    assert "acceptance_rate" in out
    assert len([line for line in out.splitlines() if re.match(r"\s*[01]\s+\d", line)]) >= 2
