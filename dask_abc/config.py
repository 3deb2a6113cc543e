"""Defaults in ``dask.config`` under the ``abc`` key (see ``dask_abc.yaml``)."""

from __future__ import annotations

import os

import dask.config
import yaml

_fn = os.path.join(os.path.dirname(__file__), "dask_abc.yaml")
with open(_fn) as f:
    defaults = yaml.safe_load(f)

dask.config.update_defaults(defaults)


def get(key: str, default=None):
    """Read ``abc.<key>`` from ``dask.config``."""
    return dask.config.get(f"abc.{key}", default=default)
