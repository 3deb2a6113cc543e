"""The History: runs, generations and particles in a SQLite database (pyABC's API).

One file holds any number of runs (``abc_id``). :class:`History` is the public
face; each of its jobs is done by one collaborator, and its methods delegate
to them:

- :class:`~dask_abc.storage.schema.Database`: the URL, the connection, the
  tables and their migration;
- :class:`~dask_abc.storage.runs.Runs`: the runs, which one is current, its
  setup and the ``run()`` call in progress;
- :class:`~dask_abc.storage.lock.RunLock`: the master's lock on the run;
- :class:`~dask_abc.storage.writer.Writer`: one transaction per generation;
- :class:`~dask_abc.storage.reader.Reader`: the completed generations;
- :class:`~dask_abc.storage.partial.PartialGeneration`: the running
  generation, as streamed by the :class:`~dask_abc.storage.journal.Journal`.
"""

from __future__ import annotations

import os

import pandas as pd

from .errors import DatabaseError, RunLockedError
from .journal import Journal
from .lock import RunLock
from .partial import PartialGeneration
from .reader import Reader
from .runs import Runs
from .schema import PRE_TIME, Database
from .writer import Writer


class _Delegated:
    """A History attribute that is the attribute ``name`` of its collaborator ``to``.

    On the class it is the collaborator's own function or property, so that help(),
    signatures and documentation show what is called.
    """

    def __init__(self, to: str, cls: type, name: str | None = None):
        self.to, self.cls, self.name = to, cls, name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, history, owner: type | None = None):
        if history is None:
            return getattr(self.cls, self.name)
        return getattr(getattr(history, self.to), self.name)


class History:
    """Read and write runs in a SQLite database (pyABC's read API).

    Parameters
    ----------
    db : str
        ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://``
        (in memory) or a file path.
    stores_sum_stats : bool
        Accepted for pyABC; statistics are always stored.
    _id : int, optional
        pyABC's name for ``abc_id``.
    create : bool
        Create the file and tables if they do not exist.
    abc_id : int, optional
        The run to read; default the latest.

    Examples
    --------
    >>> h = History("sqlite://")
    >>> h.n_populations
    0
    """

    PRE_TIME = PRE_TIME

    def __init__(self, db: str, stores_sum_stats: bool = True, _id: int | None = None,
                 create: bool = True, *, abc_id: int | None = None):
        self.db = db
        self._database = Database(db, create)
        self.path = self._database.path
        self._runs = Runs(self._database, abc_id if abc_id is not None else _id)
        self._lock = RunLock(self._runs)
        self._reader = Reader(self._runs)
        self._writer = Writer(self._runs, self._lock)
        self._partial = PartialGeneration(self._reader)

    # -- the connection (Database) ---------------------------------------------------

    conn = _Delegated("_database", Database)
    close = _Delegated("_database", Database)
    closed = _Delegated("_database", Database)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        raise TypeError("a History holds a database connection and is not sent to workers")

    def __repr__(self) -> str:
        return (f"<History {self.db!r} abc_id={self._runs.current}"
                f"{' closed' if self.closed else ''}>")

    # -- runs, setup and the run() call (Runs) ----------------------------------------

    id = _Delegated("_runs", Runs)
    all_runs = _Delegated("_runs", Runs)
    create_run = _Delegated("_runs", Runs)
    seed = _Delegated("_runs", Runs)
    model_names = _Delegated("_runs", Runs)
    parameter_names = _Delegated("_runs", Runs)
    sum_stat_layout = _Delegated("_runs", Runs)
    observed_sum_stat = _Delegated("_runs", Runs)
    get_ground_truth_parameter = _Delegated("_runs", Runs)
    meta_info = _Delegated("_runs", Runs)
    stop_reason = _Delegated("_runs", Runs)
    done = _Delegated("_runs", Runs)
    store_setup = _Delegated("_runs", Runs)
    setup_description = _Delegated("_runs", Runs)
    setup_hash = _Delegated("_runs", Runs)
    load_setup = _Delegated("_runs", Runs)
    run_call = _Delegated("_runs", Runs)
    store_run_call = _Delegated("_runs", Runs)

    # -- the master's lock (RunLock) ---------------------------------------------------

    acquire_lock = _Delegated("_lock", RunLock, "acquire")
    refresh_lock = _Delegated("_lock", RunLock, "refresh")
    release_lock = _Delegated("_lock", RunLock, "release")
    lock_owner = _Delegated("_lock", RunLock, "owner")

    def journal(self) -> Journal | None:
        """A :class:`~dask_abc.storage.journal.Journal` of this run's running generation
        (None for an in-memory database, which cannot outlive its process)."""
        if self.path == ":memory:":
            return None
        return Journal(self.path, self.id, on_write=self.refresh_lock)

    # -- writing generations (Writer) --------------------------------------------------

    store_calibration = _Delegated("_writer", Writer)
    append_population = _Delegated("_writer", Writer)

    # -- reading generations (Reader) --------------------------------------------------

    max_t = _Delegated("_reader", Reader)
    n_populations = _Delegated("_reader", Reader)
    total_nr_simulations = _Delegated("_reader", Reader)
    get_all_populations = _Delegated("_reader", Reader)
    get_generation_info = _Delegated("_reader", Reader)
    get_nr_particles_per_population = _Delegated("_reader", Reader)
    get_state = _Delegated("_reader", Reader)
    get_calibration_arrays = _Delegated("_reader", Reader)
    get_population_arrays = _Delegated("_reader", Reader)
    population = _Delegated("_reader", Reader)
    get_distribution = _Delegated("_reader", Reader)
    get_model_probabilities = _Delegated("_reader", Reader)
    alive_models = _Delegated("_reader", Reader)
    get_weighted_distances = _Delegated("_reader", Reader)
    get_weighted_sum_stats = _Delegated("_reader", Reader)
    get_weighted_sum_stats_for_model = _Delegated("_reader", Reader)
    get_population_extended = _Delegated("_reader", Reader)

    def export(self, out: str | os.PathLike, out_format: str | None = None,
               generation="all", model="all") -> pd.DataFrame:
        """Write this run's particles (all generations by default) to a csv, parquet,
        feather, json or html table; see :func:`dask_abc.storage.export.export`."""
        from .export import export

        return export(self, out, out_format, generation=generation, model=model, id=self.id)

    # -- the running generation (PartialGeneration) ------------------------------------

    get_partial_info = _Delegated("_partial", PartialGeneration)
    get_partial_population = _Delegated("_partial", PartialGeneration)


# the errors are defined in .errors and still importable from here
__all__ = ["DatabaseError", "History", "RunLockedError"]
