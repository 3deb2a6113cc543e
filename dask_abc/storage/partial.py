"""Monitoring the running generation: what the journal has streamed of it so far.

While a generation runs, its evaluated index ranges are streamed to the
database (:mod:`~dask_abc.storage.journal`); any process can read them here,
e.g. a dashboard or a notebook watching a run on a cluster. The population
is built from the contiguous prefix of evaluations from index 0.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np
import pandas as pd

from ..particles import Particles
from ..ranges import consecutive_runs
from . import journal
from .reader import Reader, parameter_columns


class PartialGeneration:
    """The streamed results of a running generation of the current run of ``reader``.

    Examples
    --------
    >>> from dask_abc.storage.runs import Runs
    >>> from dask_abc.storage.schema import Database
    >>> partial = PartialGeneration(Reader(Runs(Database("sqlite://"))))
    >>> partial.get_partial_info()["t"]
    0
    """

    def __init__(self, reader: Reader):
        self.reader = reader
        self.runs = reader.runs

    def _t(self, t: int | None) -> int:
        return self.reader.max_t + 1 if t is None else int(t)

    def get_partial_info(self, t: int | None = None) -> dict:
        """What has been streamed of generation ``t`` (default: the running one, max_t + 1):
        ``ranges`` (evaluated ``(start, stop)`` index ranges, consecutive ones merged),
        ``evaluations``, ``accepted``, and ``prefix``/``prefix_accepted`` (the contiguous
        evaluations from index 0, which is what the population is built from).

        Examples
        --------
        >>> from dask_abc.storage import History
        >>> History("sqlite://").get_partial_info(0)["evaluations"]
        0
        """
        t = self._t(t)
        abc_id = self.runs.current
        rows = [] if abc_id is None else journal.read_ranges(self.runs.conn, abc_id, t)
        runs = consecutive_runs(rows, start=itemgetter(0), stop=itemgetter(1))
        prefix = runs[0] if runs and runs[0][0][0] == 0 else []
        return {"t": t, "ranges": [(run[0][0], run[-1][1]) for run in runs],
                "evaluations": sum(stop - start for start, stop, _ in rows),
                "accepted": sum(a for _, _, a in rows),
                "prefix": prefix[-1][1] if prefix else 0,
                "prefix_accepted": sum(a for _, _, a in prefix)}

    def get_partial_population(self, t: int | None = None) -> pd.DataFrame:
        """The accepted particles streamed so far of generation ``t`` (default: the running
        one), for monitoring: index ``id``; columns m, w (unnormalised weight), distance
        and ``par_<name>``. The population itself is the first n of them by index."""
        t = self._t(t)
        batches = journal.read_batches(self.runs.conn, self.runs.id, t)  # by start
        names = self.runs.parameter_names
        if batches:
            columns = Particles.concat_columns(batches)
        else:
            columns = {"index": np.zeros(0, int), "model": np.zeros(0, int),
                       "theta": np.zeros((0, max(len(n) for n in names))),
                       "weight": np.zeros(0), "distance": np.zeros(0)}
        frame = {"m": columns["model"], "w": columns["weight"], "distance": columns["distance"]}
        for name, col in parameter_columns(names, columns["model"], columns["theta"]).items():
            frame[f"par_{name}"] = col
        return pd.DataFrame(frame, index=pd.Index(columns["index"], name="id"))
