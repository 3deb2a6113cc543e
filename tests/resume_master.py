"""A master process for the kill-and-resume tests: runs (or resumes) one inference and,
if told to, kills itself with SIGKILL at a chosen instant.

Usage: python resume_master.py DB SIMLOG SAMPLER [--scheduler ADDR] [--kill MODE DELAY DUMP]

- SIMLOG: every simulation appends its parameter (repr) as one line, from whichever
  process runs it, so the test counts the simulations executed by all attempts.
- SAMPLER: single, multicore, concurrent or dask (then --scheduler).
- MODE: "time" kills DELAY s after run() starts; "write" kills inside the first
  database write transaction (before its COMMIT) after DELAY s, "commit" inside the
  first one of the main thread (a generation or the calibration being stored, not a
  checkpoint of the journal's thread); "calibration" kills
  DELAY s after the calibration sample started. Just before the kill, the index
  ranges the master handed out in the running generation, and the parameters they
  propose, are written to DUMP, so the test knows what was in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time

import cloudpickle
import numpy as np
import resume_models

import dask_abc as abc
from dask_abc.sample import SampleCollector
from dask_abc.storage import journal, lock, schema, sqlite, writer

cloudpickle.register_pickle_by_value(resume_models)  # Dask workers need not import it

state = {"spec": None, "claimed": [], "claims": threading.Lock(),
         "calibrating": threading.Event(),
         "writing": threading.Event(), "armed": None}


def instrument() -> None:
    """Record the spec being sampled and every range handed out; signal writes."""
    fit_range = SampleCollector.fit_range

    def recording_fit_range(self, start, count):
        with state["claims"]:  # held for good by the killer: no range after the dump
            start, count = fit_range(self, start, count)
            if count:
                state["claimed"].append((start, count))
        return start, count

    SampleCollector.fit_range = recording_fit_range

    sample = abc.ABCSMC._sample

    def recording_sample(self, spec, *args, **kwargs):
        with state["claims"]:
            state["spec"], state["claimed"] = spec, []
        if spec.t == -1:
            state["calibrating"].set()
        return sample(self, spec, *args, **kwargs)

    abc.ABCSMC._sample = recording_sample

    transaction = sqlite.transaction

    @contextlib.contextmanager
    def slow_transaction(conn):
        with transaction(conn):
            yield conn
            main = threading.current_thread() is threading.main_thread()
            if state["armed"] == "write" or (state["armed"] == "commit" and main):
                state["writing"].set()
                time.sleep(5)  # killed here, inside the transaction

    for module in (journal, lock, schema, writer):  # every module that writes
        module.transaction = slow_transaction


def dump_and_kill(path: str) -> None:
    state["claims"].acquire()
    spec = state["spec"]
    claimed = list(state["claimed"])
    record = {"t": None, "claimed": [], "parameters": []}
    if spec is not None:
        idx = np.concatenate([np.arange(s, s + c) for s, c in claimed] or [np.zeros(0, int)])
        _, theta = spec.propose(idx.astype(np.int64))
        record = {"t": spec.t, "claimed": claimed,
                  "parameters": [resume_models.key(row) for row in theta]}
    with open(path, "w") as f:
        json.dump(record, f)
    os.kill(os.getpid(), signal.SIGKILL)


def killer(mode: str, delay: float, dump: str, started: threading.Event) -> None:
    if mode == "calibration":
        state["calibrating"].wait()
        time.sleep(delay)
    else:
        started.wait()
        time.sleep(delay)
        if mode in ("write", "commit"):
            state["armed"] = mode
            state["writing"].wait()
    dump_and_kill(dump)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("simlog")
    parser.add_argument("sampler", choices=["single", "multicore", "concurrent", "dask"])
    parser.add_argument("--scheduler")
    parser.add_argument("--kill", nargs=3, metavar=("MODE", "DELAY", "DUMP"))
    args = parser.parse_args()
    os.environ["RESUME_SIMLOG"] = args.simlog  # read by the model, also in forked workers
    instrument()
    client = None
    if args.sampler == "single":
        sampler = abc.sampler.SingleCoreSampler()
    elif args.sampler == "multicore":
        sampler = abc.sampler.MulticoreEvalParallelSampler(n_procs=2)
    elif args.sampler == "concurrent":  # a process pool of its own
        sampler = abc.sampler.ConcurrentFutureSampler(batch_size=20)
    else:
        from distributed import Client

        client = Client(args.scheduler)
        client.run(resume_models.log_simulations_to, args.simlog)
        sampler = abc.sampler.DaskDistributedSampler(client)
    smc = resume_models.make_abcsmc(sampler)
    started = threading.Event()
    if args.kill:
        mode, delay, dump = args.kill
        threading.Thread(target=killer, args=(mode, float(delay), dump, started),
                         daemon=True).start()
    if os.path.exists(args.db):
        smc.load(f"sqlite:///{args.db}", 1)
    else:
        smc.new(f"sqlite:///{args.db}", resume_models.OBSERVED)
    t0 = time.perf_counter()
    started.set()
    history = smc.run(**resume_models.RUN)
    print(f"RUN-SECONDS {time.perf_counter() - t0:.3f}", flush=True)
    history.close()
    if client is not None:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
