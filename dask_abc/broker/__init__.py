"""Coordinators for standalone workers: one protocol, a Dask Actor or a Redis backend."""

from .actor import ActorBroker, Coordinator
from .base import Broker, LocalBroker
from .errors import (
    BrokerAuthError,
    BrokerBusy,
    BrokerError,
    BrokerUnreachable,
    CoordinatorNotFound,
    SpecLoadError,
)
from .redis_backend import RedisBroker
from .state import BrokerState
from .worker import BrokerWorker

__all__ = [
    "ActorBroker",
    "Broker",
    "BrokerAuthError",
    "BrokerBusy",
    "BrokerError",
    "BrokerState",
    "BrokerUnreachable",
    "BrokerWorker",
    "Coordinator",
    "CoordinatorNotFound",
    "LocalBroker",
    "RedisBroker",
    "SpecLoadError",
]
