"""``python -m dask_abc.broker`` is ``dask-abc-worker`` (job scripts run it with the
job's Python, so no PATH is needed)."""

import sys

from .cli import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
