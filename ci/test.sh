#!/usr/bin/env bash
# Install dask-abc with its test dependencies and run the whole test suite.
# Usage (from the repository root): bash ci/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: a real redis-server (started on loopback by the
# tests), the sqlite3 shell (integrity checks of killed runs' databases), and
# chromium with its driver (the dashboard and report pages in a real browser)
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "ci/test.sh: missing ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
    exit 1
  fi
fi

python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test]"

ruff check dask_abc tests benchmarks
python3 -m pytest -p no:cacheprovider -ra "$@"
