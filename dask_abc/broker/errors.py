"""The errors of the broker backends, in one tree.

Every error a coordinator handle or a standalone worker raises about the
coordination itself is a :class:`BrokerError`; callers that only report it
catch the base, callers that react to one case catch its class (never its
text)::

    BrokerError (RuntimeError)
    ├── BrokerBusy            another master holds the coordinator
    ├── CoordinatorNotFound   no coordinator published under the name
    ├── BrokerUnreachable     the scheduler, the actor or the Redis server cannot be reached
    ├── BrokerAuthError       Redis wants a password, or refused the one given
    └── SpecLoadError         a standalone worker cannot unpickle a generation's spec

Examples
--------
>>> issubclass(BrokerBusy, BrokerError)
True
>>> try:
...     raise CoordinatorNotFound("no dask-abc coordinator named 'abc'")
... except BrokerError as error:
...     type(error).__name__
'CoordinatorNotFound'
"""

from __future__ import annotations


class BrokerError(RuntimeError):
    """The coordinator cannot be reached or refused the request."""


class BrokerBusy(BrokerError):
    """Another master holds the coordinator."""


class CoordinatorNotFound(BrokerError):
    """No coordinator is published under the name asked for (no master has run yet)."""


class BrokerUnreachable(BrokerError):
    """The Dask scheduler, the coordinator actor or the Redis server cannot be reached."""


class BrokerAuthError(BrokerError):
    """The Redis server needs a password, or refused the one given."""


class SpecLoadError(BrokerError):
    """A standalone worker could not unpickle a generation's spec."""


__all__ = ["BrokerAuthError", "BrokerBusy", "BrokerError", "BrokerUnreachable",
           "CoordinatorNotFound", "SpecLoadError"]
