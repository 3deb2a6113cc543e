#!/usr/bin/env bash
# Install dask-abc with its test dependencies and run the whole test suite.
# Usage (from the repository root): bash ci/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: a real redis-server (started on loopback by the
# tests), the sqlite3 shell (integrity checks of killed runs' databases),
# chromium with its driver (the dashboard and report pages in a real browser),
# and SLURM with munge (a single-node cluster on 127.0.0.1 that the SLURM tests
# start with ci/slurm_up.sh and stop with ci/slurm_down.sh; they need root)
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "$(id -u)" = 0 ]; then
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
  command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
  command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
  command -v munged >/dev/null 2>&1 || missing+=(munge)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "ci/test.sh: missing ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
    exit 1
  fi
fi
select=()
if [ "$(id -u)" != 0 ]; then
  echo "ci/test.sh: not root: the SLURM tests are deselected (they start slurmctld)" >&2
  select=(-m "not slurm")
fi

python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e ".[test]"

ruff check dask_abc tests benchmarks
python3 -m pytest -p no:cacheprovider -ra "${select[@]}" "$@"
