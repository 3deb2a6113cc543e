#!/usr/bin/env bash
# Install dask-abc with its test dependencies and run the whole test suite.
# Usage (from the repository root): bash ci/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test]"

ruff check dask_abc tests benchmarks
python3 -m pytest -p no:cacheprovider -ra "$@"
