"""The ``dask-abc`` command: ``demo``, ``resume``, ``report``, ``info`` and ``export``."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import tempfile

import numpy as np

from . import demo
from .inference import ABCSMC
from .storage import History
from .storage.export import add_parser as add_export_parser


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("dask_abc")
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def _summary(history: History) -> str:
    lines = ["", "posterior (last generation):"]
    probs = history.get_model_probabilities(history.max_t).iloc[0].to_numpy()
    exact = demo.exact_model_probabilities()
    lines.append("  model  p(m) estimate  p(m) exact   theta mean (exact)   theta sd (exact)")
    for m in range(len(probs)):
        df, w = history.get_distribution(m)
        mean_ex, sd_ex = demo.exact_posterior(m)
        if len(w):
            mean = float(np.sum(w * df["theta"]))
            sd = float(np.sqrt(np.sum(w * (df["theta"] - mean) ** 2)))
            est = f"{mean:10.3f} ({mean_ex:.3f})   {sd:10.3f} ({sd_ex:.3f})"
        else:
            est = "   (model died out)"
        lines.append(f"  {m:5d}  {probs[m]:13.3f}  {exact[m]:10.3f}   {est}")
    lines.append(f"total simulations: {history.total_nr_simulations}")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    from . import sampler as samplers

    db = args.db or os.path.join(tempfile.mkdtemp(prefix="dask-abc-demo-"), "demo.db")
    db = os.path.abspath(db)
    models, priors = demo.models_and_priors()
    sampler = (samplers.SingleCoreSampler() if args.processes == 1
               else samplers.MulticoreEvalParallelSampler(n_procs=args.processes))
    smc = ABCSMC(models, priors, population_size=args.population_size, sampler=sampler,
                 seed=args.seed)
    print(f"dask-abc demo: two Gaussian models, y_obs = {demo.OBSERVED['y']}, "
          f"population {args.population_size}, {sampler!r}")
    smc.new(f"sqlite:///{db}", demo.OBSERVED)
    history = smc.run(minimum_epsilon=args.minimum_epsilon,
                      max_nr_populations=args.max_populations)
    print(_summary(history))
    print(f"database: {db}")
    return 0


def resume(db: str, abc_id: int | None = None, scheduler: str | None = None) -> History:
    """Finish the interrupted ``run()`` of a stored run from the database alone.

    The run's setup is unpickled from the database (its models' modules must
    be importable here) and sampled with a Dask client of ``scheduler``, else
    the default sampler; the stopping rules are those of the interrupted call.
    """
    history = History(db, abc_id=abc_id, create=False)
    call = history.run_call
    if call is None:
        reason = history.stop_reason
        history.close()
        if reason is not None:
            raise SystemExit(f"dask-abc resume: run {history.id} of {db!r} is finished "
                             f"({reason}); nothing to resume")
        raise SystemExit(f"dask-abc resume: run {history.id} of {db!r} was never run; run it "
                         "from your script")
    sampler = None
    if scheduler is not None:
        from distributed import Client

        from .sampler import DaskDistributedSampler

        sampler = DaskDistributedSampler(Client(scheduler))
    try:
        smc = ABCSMC.from_history(history, sampler=sampler)
        arguments = dict(call["arguments"])
        if arguments["max_walltime"] is not None:
            arguments["max_walltime"] = datetime.timedelta(seconds=arguments["max_walltime"])
        print(f"resuming run {history.id} of {db} at generation {history.max_t + 1} "
              f"with {smc.sampler!r}")
        return smc.run(**arguments)
    finally:
        if sampler is not None:
            sampler.client.close()


def cmd_resume(args) -> int:
    history = resume(args.db, args.abc_id, args.scheduler)
    print(history.get_generation_info().to_string(index=False))
    print(f"stopped: {history.stop_reason}")
    history.close()
    return 0


def cmd_report(args) -> int:
    from .report import report

    path = report(args.db, args.output, abc_id=args.abc_id)
    print(f"wrote {path}")
    return 0


def cmd_info(args) -> int:
    history = History(args.db, abc_id=args.abc_id, create=False)
    print(history.all_runs().to_string(index=False))
    print()
    print(history.get_generation_info().to_string(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dask-abc", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-generation lines")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run a two-model ABC-SMC inference with a known answer")
    p.add_argument("--db", help="SQLite file to write (default: a new temporary file)")
    p.add_argument("--population-size", type=int, default=1000)
    p.add_argument("--minimum-epsilon", type=float, default=0.05)
    p.add_argument("--max-populations", type=int, default=12)
    p.add_argument("--processes", type=int, default=None,
                   help="worker processes (default: one per core; 1 = in this process)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("resume", help="finish an interrupted run from its database alone")
    p.add_argument("db", help="a sqlite:/// URL or a file path")
    p.add_argument("--abc-id", type=int, default=None, help="the run (default: the latest)")
    p.add_argument("--scheduler", default=None,
                   help="sample on this Dask scheduler (default: the default sampler)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("report", help="write an HTML page of a run's plots (self-contained)")
    p.add_argument("db", help="a sqlite:/// URL or a file path")
    p.add_argument("-o", "--output", default=None, help="the HTML file (default: DB.html)")
    p.add_argument("--abc-id", type=int, default=None, help="the run (default: the latest)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("info", help="show the runs and generations stored in a database")
    p.add_argument("db", help="a sqlite:/// URL or a file path")
    p.add_argument("--abc-id", type=int, default=None)
    p.set_defaults(func=cmd_info)

    add_export_parser(sub)

    args = parser.parse_args(argv)
    _setup_logging(not args.quiet)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
