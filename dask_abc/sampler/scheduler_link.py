"""The Dask sampler's link to its scheduler: a bounded wait when the client loses it.

When the scheduler's connection closes (its process died, its host went
away), ``distributed.Client`` cancels every future it holds (reason
``scheduler-connection-lost``), sets its status to ``"connecting"`` and tries to
reconnect to the same address for its ``timeout`` (``distributed.comm.timeouts.connect``
unless given to ``Client``); then it closes itself. Messages sent meanwhile
(new tasks) wait in the client and go out once it is connected again. So a
scheduler that comes back at the same address (with workers: Dask workers close
when their scheduler dies) within that time gets the ranges that the sampler
hands out again, and the generation goes on with identical results (the index
rule). The sampler waits at most ``abc.dask.scheduler-reconnect-seconds`` (and
no longer than the client tries), then stops the run with a
:class:`~dask_abc.sampler.SamplerError` that says how to resume it.
"""

from __future__ import annotations

import logging
import re
import shlex
import time

from .base import SamplerError

logger = logging.getLogger("dask_abc")

#: How :class:`~dask_abc.ABCSMC` names a run to its sampler's observers.
_RUN_NAME = re.compile(r"run (?P<id>\d+) of (?P<db>.+)")


def resume_command(run: str | None, scheduler: str) -> str:
    """The ``dask-abc resume`` command line that finishes the run called ``run``
    (``"run ID of DB"``) on ``scheduler``; a placeholder names the database when the run
    is unknown (the sampler used without :class:`~dask_abc.ABCSMC`).

    Examples
    --------
    >>> resume_command("run 3 of sqlite:///my run.db", "tcp://10.0.0.1:8786")
    "dask-abc resume 'sqlite:///my run.db' --abc-id 3 --scheduler tcp://10.0.0.1:8786"
    >>> resume_command(None, "tcp://10.0.0.1:8786")
    'dask-abc resume <database> --scheduler tcp://10.0.0.1:8786'
    """
    match = _RUN_NAME.fullmatch(run) if run is not None else None
    where = (f"{shlex.quote(match['db'])} --abc-id {match['id']}" if match is not None
             else "<database>")
    return f"dask-abc resume {where} --scheduler {shlex.quote(scheduler)}"


class SchedulerLink:
    """Whether ``client`` is connected to its scheduler, and for how long it has not been.

    Parameters
    ----------
    client : distributed.Client
        The sampler's client.
    reconnect_seconds : float
        The longest wait for the client to reconnect.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") \\
    ...         as cluster, Client(cluster) as client:
    ...     SchedulerLink(client, reconnect_seconds=60).connected()
    True
    """

    def __init__(self, client, reconnect_seconds: float):
        self.client = client
        self.reconnect_seconds = reconnect_seconds
        self.address = (client.scheduler.address if client.scheduler is not None
                        else "(unknown: the client was closed before)")
        self._lost_at: float | None = None

    def connected(self) -> bool:
        """True while connected; False while the client reconnects, within the bound.

        Raises
        ------
        SchedulerLost
            After ``reconnect_seconds`` without a connection, or once the client gave
            up reconnecting (it closed).
        """
        status = self.client.status
        now = time.monotonic()
        if status == "running":
            if self._lost_at is not None:
                logger.warning("reconnected to the Dask scheduler %s after %.1f s; the ranges "
                               "that were in flight are evaluated again", self.address,
                               now - self._lost_at)
                self._lost_at = None
            return True
        if self._lost_at is None:
            self._lost_at = now
            logger.warning("lost the Dask scheduler %s (client %s); waiting up to %g s for "
                           "it to come back (abc.dask.scheduler-reconnect-seconds)",
                           self.address, status, self.reconnect_seconds)
        if now - self._lost_at >= self.reconnect_seconds or status in ("closing", "closed"):
            raise self.lost()
        return False

    def lost(self) -> SchedulerLost:
        """The scheduler lost for good now: how long the client has been without it."""
        waited = 0.0 if self._lost_at is None else time.monotonic() - self._lost_at
        return SchedulerLost(self.address, waited, gave_up=self.client.status != "connecting")


class SchedulerLost(Exception):
    """The client lost its scheduler for good (see :class:`SchedulerLink`); the sampler
    turns this into a :class:`~dask_abc.sampler.SamplerError` that says how to resume."""

    def __init__(self, address: str, waited: float, gave_up: bool):
        super().__init__(address, waited, gave_up)
        self.address, self.waited, self.gave_up = address, waited, gave_up

    def sampler_error(self, t: int, run: str | None, n_accepted: int, n: int) -> SamplerError:
        """The error that ends the run in generation ``t`` of the run called ``run``."""
        why = ("the client stopped reconnecting (its timeout, distributed.comm.timeouts."
               "connect, is shorter)" if self.gave_up else
               "abc.dask.scheduler-reconnect-seconds")
        return SamplerError(
            f"DaskDistributedSampler: lost the Dask scheduler {self.address} in generation "
            f"{t} ({n_accepted}/{n} accepted) and waited {self.waited:.1f} s for it to come "
            f"back ({why}). The generations before {t} are stored, and so are the returned "
            f"results of generation {t} if abc.storage.stream-checkpoints. Start a scheduler "
            f"and workers again, then go on with `{resume_command(run, self.address)}` "
            f"(with the new scheduler's address)")
