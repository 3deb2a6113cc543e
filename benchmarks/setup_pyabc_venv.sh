#!/usr/bin/env bash
# Create the pyABC 0.13.0 virtualenv used as the benchmark baseline.
#
# Usage: bash benchmarks/setup_pyabc_venv.sh [VENV_DIR] [PYTHON]
#   VENV_DIR  default /work/pyabc-venv
#   PYTHON    default python3 (3.11 was used)
#
# pyABC 0.13.0 runs unmodified with pandas 3 / numpy 2, so nothing is
# downgraded; the versions that were measured are pinned through
# pyabc-venv-constraints.txt for reproducibility. Set NO_CONSTRAINTS=1 to
# let pip pick the newest versions instead.
set -euo pipefail

venv="${1:-/work/pyabc-venv}"
python="${2:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

"$python" -m venv "$venv"
if [[ "${NO_CONSTRAINTS:-0}" == 1 ]]; then
    "$venv/bin/pip" install "pyabc==0.13.0"
else
    "$venv/bin/pip" install "pyabc==0.13.0" -c "$here/pyabc-venv-constraints.txt"
fi

# Smoke test: a tiny ABC-SMC run.
"$venv/bin/python" "$here/gaussian.py" --library pyabc --sampler single \
    --model micro --population 50 --generations 2 --json-out /dev/null
echo "pyABC venv ready: $venv/bin/python"
