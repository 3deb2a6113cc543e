import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slurm: needs the single-node SLURM cluster that ci/slurm_up.sh starts "
        "(as root); deselect with -m 'not slurm'")


@pytest.fixture(scope="session")
def slurm():
    """A live single-node SLURM cluster on 127.0.0.1 (ci/slurm_up.sh, as root), stopped
    at the end of the session if this fixture started it."""
    ci = TESTS.parent / "ci"
    if os.geteuid() != 0:
        pytest.fail("the SLURM tests need root to start slurmctld/slurmd/munged "
                    "(ci/slurm_up.sh); run them as root or deselect with -m 'not slurm'")
    was_up = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                            check=False).stdout if _has("scontrol") else ""
    # nproc (the node's CPU count) obeys OMP_NUM_THREADS, which Dask sets in places
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    up = subprocess.run(["bash", str(ci / "slurm_up.sh")], capture_output=True, text=True,
                        env=env)
    if up.returncode:
        pytest.fail(f"ci/slurm_up.sh failed:\n{up.stdout}\n{up.stderr}")
    nodes = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True)
    assert nodes.stdout.split() == [str(os.cpu_count())], f"the node's CPUs: {nodes.stdout}"
    yield {"partition": os.environ.get("SLURM_CI_PARTITION", "debug")}
    if "is UP" not in was_up:
        down = subprocess.run(["bash", str(ci / "slurm_down.sh")], capture_output=True,
                              text=True)
        assert down.returncode == 0, down.stdout + down.stderr


def _has(command: str) -> bool:
    from shutil import which

    return which(command) is not None
