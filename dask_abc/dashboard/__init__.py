"""The ABC page of the Dask dashboard: a scheduler plugin that serves it, and the
reporter that sends a run's progress to it."""

from .plugin import TOPIC, ABCDashboardPlugin
from .reporter import DashboardReporter

__all__ = ["TOPIC", "ABCDashboardPlugin", "DashboardReporter"]
