"""Time writing and reading one generation of 10,000 particles in the SQLite History.

Usage: ``python benchmarks/history_write.py [--particles 10000] [--stats 10]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from dask_abc.population import Population
from dask_abc.storage import History
from dask_abc.sumstat import SumStatLayout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--particles", type=int, default=10_000)
    parser.add_argument("--parameters", type=int, default=3)
    parser.add_argument("--stats", type=int, default=10)
    parser.add_argument("--generations", type=int, default=5)
    args = parser.parse_args()

    n, d, k = args.particles, args.parameters, args.stats
    rng = np.random.default_rng(0)
    layout = SumStatLayout([f"s{i}" for i in range(k)], [()] * k)
    with tempfile.TemporaryDirectory() as tmp:
        history = History(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
        history.create_run(seed=0, model_names=["m"], parameter_names=[[f"p{i}" for i in range(d)]],
                           layout=layout, observed={f"s{i}": 0.0 for i in range(k)},
                           observed_flat=np.zeros(k))
        writes, reads = [], []
        for t in range(args.generations):
            w = rng.uniform(size=n)
            population = Population(
                t=t, index=np.arange(n) * 3, model=np.zeros(n, int),
                theta=rng.normal(size=(n, d)), weight=w / w.sum(), distance=rng.uniform(size=n),
                sum_stats=rng.normal(size=(n, k)), model_probabilities=np.ones(1),
                samples=3 * n)
            start = time.perf_counter()
            history.append_population(t, population, epsilon=1.0, seconds=1.0)
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            history.get_distribution(0, t)
            reads.append(time.perf_counter() - start)
        history.close()
    print(f"{n} particles, {d} parameters, {k} statistics, {args.generations} generations")
    print(f"write one generation: median {np.median(writes) * 1e3:.1f} ms, "
          f"max {max(writes) * 1e3:.1f} ms")
    print(f"get_distribution:     median {np.median(reads) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
