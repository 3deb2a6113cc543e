"""The runs of a database: which one is current, their setup, and the ``run()`` call.

A row of ``abc_runs`` holds what a run was started with (seed, names, the
layout of the statistics, the observed data), its setup (a cloudpickle for
``dask-abc resume`` and a structural description with its hash, see
:mod:`~dask_abc.fingerprint`), the ``run()`` call in progress and why the
run stopped. :class:`Runs` reads and writes those rows for the current run.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

import cloudpickle
import numpy as np
import pandas as pd

from ..sumstat import SumStatLayout
from .errors import DatabaseError
from .schema import Database, now, to_blob


class Runs:
    """The runs stored in ``database``, one of them current.

    Parameters
    ----------
    database : Database
        The open database.
    abc_id : int, optional
        The current run; default the latest (None while the database holds none).

    Examples
    --------
    >>> runs = Runs(Database("sqlite://"))
    >>> runs.current is None, runs.ids()
    (True, [])
    """

    def __init__(self, database: Database, abc_id: int | None = None):
        self.database = database
        ids = self.ids()
        if abc_id is not None and abc_id not in ids:
            raise DatabaseError(f"database {database.db!r} has no run with abc_id={abc_id} "
                                f"(runs: {ids or 'none'})")
        self.current: int | None = abc_id if abc_id is not None else (ids[-1] if ids else None)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.database.conn

    @property
    def db(self):
        """The database as given (URL or path), for messages."""
        return self.database.db

    def ids(self) -> list[int]:
        """The ids of all runs, in order."""
        return [r[0] for r in self.conn.execute("SELECT id FROM abc_runs ORDER BY id")]

    @property
    def id(self) -> int:
        """The current run; :class:`DatabaseError` while there is none."""
        if self.current is None:
            raise DatabaseError(f"database {self.db!r} holds no run yet")
        return self.current

    def all_runs(self) -> pd.DataFrame:
        """One row per run in the database."""
        return pd.read_sql_query(
            "SELECT id, start_time, end_time, seed, model_names, stop_reason FROM abc_runs",
            self.conn)

    def column(self, name: str):
        """The current run's value in column ``name`` of ``abc_runs``."""
        row = self.conn.execute(f"SELECT {name} FROM abc_runs WHERE id=?", (self.id,)).fetchone()
        return row[0]

    def create_run(self, *, seed: int, model_names: list[str], parameter_names: list[list[str]],
                   layout: SumStatLayout, observed: Mapping, observed_flat: np.ndarray,
                   gt_model: int | None = None, gt_par: Mapping | None = None,
                   meta_info: Mapping | None = None) -> int:
        """Store a new run's setup and make it the current one."""
        cur = self.conn.execute(
            "INSERT INTO abc_runs (start_time, seed, model_names, parameter_names, "
            "sum_stat_layout, observed, observed_flat, gt_model, gt_par, meta_info) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now(), str(seed), json.dumps(model_names), json.dumps(parameter_names),
             json.dumps(layout.to_dict()), cloudpickle.dumps(dict(observed)),
             to_blob(observed_flat), gt_model,
             json.dumps(dict(gt_par)) if gt_par is not None else None,
             json.dumps(dict(meta_info or {}), default=str)))
        self.current = cur.lastrowid
        return self.current

    @property
    def seed(self) -> int:
        return int(self.column("seed"))

    @property
    def model_names(self) -> list[str]:
        return json.loads(self.column("model_names"))

    @property
    def parameter_names(self) -> list[list[str]]:
        return json.loads(self.column("parameter_names"))

    @property
    def sum_stat_layout(self) -> SumStatLayout:
        return SumStatLayout.from_dict(json.loads(self.column("sum_stat_layout")))

    def observed_sum_stat(self) -> dict:
        """The observed data of the run."""
        return cloudpickle.loads(self.column("observed"))

    def get_ground_truth_parameter(self) -> dict | None:
        gt = self.column("gt_par")
        return json.loads(gt) if gt else None

    @property
    def meta_info(self) -> dict:
        return json.loads(self.column("meta_info") or "{}")

    @property
    def stop_reason(self) -> str | None:
        return self.column("stop_reason")

    def done(self, stop_reason: str, failed: bool = False) -> None:
        """Mark the run as ended, and why. A run that ``failed`` keeps its ``run()``
        arguments, so that a resume finishes that call."""
        self.conn.execute(
            "UPDATE abc_runs SET end_time=?, stop_reason=?, run_call=CASE WHEN ? THEN run_call "
            "END WHERE id=?", (now(), stop_reason, failed, self.id))

    # -- setup and resume --------------------------------------------------------

    def store_setup(self, pickled: bytes | None, description: Mapping, digest: str) -> None:
        """Store the run's setup: its cloudpickle (for ``dask-abc resume``) and its
        structural description with a hash (to check a resumed setup)."""
        self.conn.execute(
            "UPDATE abc_runs SET setup=?, setup_description=?, setup_hash=? WHERE id=?",
            (pickled, json.dumps(description), digest, self.id))

    @property
    def setup_description(self) -> dict | None:
        """The stored description of the setup (None for a run stored without one)."""
        text = self.column("setup_description")
        return json.loads(text) if text else None

    @property
    def setup_hash(self) -> str | None:
        return self.column("setup_hash")

    def load_setup(self) -> dict:
        """The stored setup: the keyword arguments of :class:`~dask_abc.ABCSMC`."""
        data = self.column("setup")
        if data is None:
            raise DatabaseError(f"run {self.id} of {self.db!r} has no stored setup")
        try:
            return cloudpickle.loads(data)
        except Exception as e:
            raise DatabaseError(
                f"the setup of run {self.id} of {self.db!r} does not unpickle here "
                f"({type(e).__name__}: {e}); make the modules that define its models and "
                "functions importable, or resume from your script with ABCSMC.load()") from None

    @property
    def run_call(self) -> dict | None:
        """The ``run()`` call in progress (arguments and first generation), or None."""
        text = self.column("run_call")
        return json.loads(text) if text else None

    def store_run_call(self, call: Mapping | None) -> None:
        """Store the ``run()`` call in progress (None: no call), reopening the run."""
        self.conn.execute("UPDATE abc_runs SET run_call=?, end_time=NULL, stop_reason=NULL "
                          "WHERE id=?", (json.dumps(call) if call is not None else None, self.id))
