"""Coordinators for standalone workers: one protocol, a Dask Actor or a Redis backend."""

from .actor import ActorBroker, Coordinator
from .base import Broker, BrokerBusy, BrokerError, LocalBroker
from .redis_backend import RedisBroker
from .state import BrokerState
from .worker import BrokerWorker

__all__ = [
    "ActorBroker",
    "Broker",
    "BrokerBusy",
    "BrokerError",
    "BrokerState",
    "BrokerWorker",
    "Coordinator",
    "LocalBroker",
    "RedisBroker",
]
