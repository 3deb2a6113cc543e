#!/usr/bin/env bash
# Install dask-abc with its test dependencies and run the whole test suite.
# Usage (from the repository root): bash ci/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages that tests start themselves on loopback: a real redis-server
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "ci/test.sh: redis-server is missing: apt-get install redis-server (as root)" >&2
    exit 1
  fi
fi

python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test]"

ruff check dask_abc tests benchmarks
python3 -m pytest -p no:cacheprovider -ra "$@"
