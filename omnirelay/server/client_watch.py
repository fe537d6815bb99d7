"""Stopping an upstream call nobody waits for: the request's task is cancelled once its client has gone, and the
usage record says so (status 499). Every endpoint that calls a model watches its call so::

    watch = ClientWatch.of_this_task(exchange.disconnected)
    try:
        result = await call
    except asyncio.CancelledError as cancelled:
        watch.client_left(record, cancelled)  # ClientGone if the client left, else the cancellation goes on
    finally:
        watch.stop()

(written out where it is used rather than wrapped in a helper coroutine: every await of a request passes through
each coroutine frame between the server and the upstream socket.)"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from omnirelay.core.records import UsageRecord
from omnirelay.pipeline.context import Disconnected
from omnirelay.web.exchange import ClientGone

log = logging.getLogger("omnirelay.relay")

# How long a call runs before its client's leaving is watched for (see ClientWatch).
WATCH_AFTER_S = 0.2

# What a usage record says of a request whose client left before its answer (status, error).
CLIENT_GONE = (499, "client closed the connection")


class ClientWatch:
    """Cancels the request's task once its client has gone, so that an upstream call nobody waits for stops.

    The watching starts only ``WATCH_AFTER_S`` after the call does: waiting on the server's disconnect signal
    is a task and, over RSGI, an awaited call into granian whose set-up and cancellation cost about a quarter of
    a fast request's CPU (bench/CHANGES.md). A request done sooner never pays it; a client that left in the
    meantime is seen as soon as the watching starts, since the signal is already set by then."""

    __slots__ = ("_disconnected", "_task", "_timer", "_watcher", "left")

    def __init__(self, disconnected: Disconnected | None, task: asyncio.Task[object]) -> None:
        self.left = False  # the client went away and the task was cancelled for it
        self._disconnected = disconnected
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(WATCH_AFTER_S, self._start) if disconnected is not None else None

    @classmethod
    def of_this_task(cls, disconnected: Disconnected | None) -> ClientWatch:
        task = asyncio.current_task()
        assert task is not None
        return cls(disconnected, task)

    def client_left(self, record: UsageRecord, cancelled: asyncio.CancelledError) -> NoReturn:
        """In the ``except CancelledError`` of the watched call: if the cancellation was this watch's (the
        client left), mark ``record`` 499 and raise ClientGone (nothing is answered); else re-raise it."""
        if not self.left:
            raise cancelled
        self.forgive()
        record.status, record.error = CLIENT_GONE
        raise ClientGone() from None

    def forgive(self) -> None:
        """The cancellation this watch made (the client left) is handled: the task goes on to clean up."""
        self._task.uncancel()

    def _start(self) -> None:
        self._timer = None
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        assert self._disconnected is not None
        try:
            await self._disconnected()
        except Exception:  # the server interface cannot tell: keep serving (an unread task error would be logged)
            log.debug("cannot watch the client connection", exc_info=True)
            return
        self.left = True
        self._task.cancel()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
