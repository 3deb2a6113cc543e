"""Export a run's particles to a table file (pyABC's ``pyabc.storage.export``).

One row per particle, built from :meth:`History.get_population_extended`; see
:func:`export`. :func:`add_parser` registers the ``dask-abc export`` command.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from .errors import DatabaseError
from .history import History

FORMATS = ("csv", "parquet", "feather", "json", "html")
_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".feather": "feather",
               ".json": "json", ".html": "html", ".htm": "html"}


def export(db: str | os.PathLike | History, out: str | os.PathLike,
           out_format: str | None = None, generation: int | str = "last",
           model: int | str = "all", id: int | None = None,
           tidy: bool = True) -> pd.DataFrame:
    """Write the particles of a run to ``out`` and return the table written.

    Parameters
    ----------
    db : str, os.PathLike or History
        A ``sqlite:///`` URL, a file path, or an open :class:`History` (left open).
    out : str or os.PathLike
        The file to write.
    out_format : {"csv", "parquet", "feather", "json", "html"}, optional
        Default: from ``out``'s extension, else ``"csv"``. Parquet and feather
        need ``pyarrow``; json is a list of records; html is for viewing
        (floats at pandas' display precision).
    generation : "last", "all" or int
        The generation(s) to export.
    model : "all" or int
        Only the particles of this model index.
    id : int, optional
        The run (``abc_id``); default the latest, or the open History's run.
    tidy : bool
        Must be True. pyABC's ``tidy=False`` returns its SQL join unpivoted,
        one row per (particle, parameter, statistic) combination, which is an
        artefact of its storage schema; dask-abc's export is always tidy (use
        ``DataFrame.melt`` for a long table). False raises ValueError.

    Returns
    -------
    pandas.DataFrame
        One row per particle, columns ``t``, ``id`` (the particle's index in
        its generation), ``m``, ``model_name``, ``w``, ``distance``,
        ``par_<name>`` (NaN where the particle's model lacks the parameter)
        and ``sumstat_<key>`` (``<key>[i]`` for array entries). ``w`` is
        normalised over each whole generation, so with ``model`` set it is
        not renormalised.

    Raises
    ------
    ValueError
        For an unknown format, generation or model, ``tidy=False``, or ``id``
        differing from an open History's run; :class:`DatabaseError` (a
        ValueError) for a missing database, run or generation.
    ImportError
        For parquet or feather without ``pyarrow``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, dask_abc as abc
    >>> def model(p): return {"y": p["theta"] + np.random.normal()}
    >>> smc = abc.ABCSMC(model, abc.Distribution(theta=abc.RV("norm", 0, 3)),
    ...                  population_size=50, seed=1, sampler=abc.sampler.SingleCoreSampler())
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = smc.new("sqlite:///" + os.path.join(tmp, "run.db"), {"y": 1.0})
    ...     smc.run(max_nr_populations=2).close()
    ...     df = export(os.path.join(tmp, "run.db"), os.path.join(tmp, "run.csv"),
    ...                 generation="all")
    ...     written = pd.read_csv(os.path.join(tmp, "run.csv"))
    >>> list(written.columns)
    ['t', 'id', 'm', 'model_name', 'w', 'distance', 'par_theta', 'sumstat_y']
    >>> len(written), written.groupby("t")["w"].sum().round(6).tolist()
    (100, [1.0, 1.0])
    """
    if not tidy:
        raise ValueError("tidy=False is not supported: dask-abc's export is always tidy (one "
                         "row per particle); use DataFrame.melt for a long table")
    fmt = _format(out, out_format)
    if isinstance(db, History):
        if id is not None and id != db.id:
            raise ValueError(f"id={id} differs from the open {db!r}; pass the database URL "
                             f"or open History({db.db!r}, abc_id={id})")
        df = _table(db, generation, model)
    else:
        with History(db, abc_id=id, create=False) as history:
            df = _table(history, generation, model)
    _write(df, out, fmt)
    return df


def _format(out, out_format: str | None) -> str:
    if out_format is None:
        out_format = _EXTENSIONS.get(os.path.splitext(os.fspath(out))[1].lower(), "csv")
    fmt = str(out_format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown out_format {out_format!r}; valid: {', '.join(FORMATS)}")
    if fmt in ("parquet", "feather"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(f"out_format={fmt!r} needs pyarrow: pip install pyarrow") from None
    return fmt


def _table(history: History, generation, model) -> pd.DataFrame:
    run = f"run {history.id} of {history.db!r}"
    if isinstance(generation, str) and generation not in ("last", "all"):
        try:
            generation = int(generation)
        except ValueError:
            raise ValueError(f"generation must be 'last', 'all' or an int, got "
                             f"{generation!r}") from None
    if history.max_t < 0:
        raise DatabaseError(f"{run} has no generation yet")
    ts = range(history.max_t + 1) if generation == "all" else [generation]
    names = history.model_names
    m = None
    if model != "all":
        try:
            m = int(model)
        except (TypeError, ValueError):
            raise ValueError(f"model must be 'all' or an int, got {model!r}") from None
        if not 0 <= m < len(names):
            raise ValueError(f"model {m} out of range: {run} has models "
                             f"0..{len(names) - 1} ({', '.join(names)})")
    df = pd.concat([history.get_population_extended(m=m, t=t) for t in ts]).reset_index()
    df.insert(3, "model_name", df["m"].map(dict(enumerate(names))))
    return df[["t", "id", *df.columns.drop(["t", "id"])]]


def _write(df: pd.DataFrame, out, fmt: str) -> None:
    if fmt == "csv":
        df.to_csv(out, index=False)
    elif fmt == "parquet":
        df.to_parquet(out, index=False)
    elif fmt == "feather":
        df.to_feather(out)
    elif fmt == "json":
        df.to_json(out, orient="records")
    else:
        df.to_html(out, index=False)


# -- command line --------------------------------------------------------------


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", help="a sqlite:/// URL or a file path")
    p.add_argument("out", help="the file to write")
    p.add_argument("--format", dest="out_format", default=None, choices=FORMATS,
                   help="default: from OUT's extension, else csv")
    p.add_argument("--generation", default="last", help="'last' (default), 'all' or a number")
    p.add_argument("--model", default="all", help="'all' (default) or a model index")
    p.add_argument("--abc-id", type=int, default=None, help="the run (default: the latest)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    try:
        df = export(args.db, args.out, args.out_format, generation=args.generation,
                    model=args.model, id=args.abc_id)
    except (ValueError, ImportError) as e:
        print(f"dask-abc export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(df)} particles to {args.out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``export`` command on an argparse ``add_subparsers()`` object."""
    p = subparsers.add_parser("export", help="write a run's particles to a csv, parquet, "
                              "feather, json or html table")
    _add_arguments(p)
    return p
