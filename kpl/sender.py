"""The sender: PutRecords requests with bounded parallelism, and nothing else (transport only).

:class:`Sender` owns the connection budget (``MaxConnections`` requests in flight; further batches
wait in a FIFO backlog) and the whole-request timeout.  botocore's own retries are off for this
client, so every attempt is one HTTP request and the producer's retry layer is the only one.

What a response means is not the sender's business: every request ends in exactly one call of its
receiver (the stream's response classifier, :mod:`kpl.responses`) with the response or the error,
and the times it started and ended.  Batches that never left the backlog end the same way, with a
:class:`NotSent` reason instead of an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from kpl.accumulator import KinesisRecord
from kpl.logs import get_logger

log = get_logger(__name__)


class NotSent(enum.Enum):
    """Why a batch ends without a request having been made for (some of) its records."""

    #: Its records reached their expiry while the batch waited for a connection.
    EXPIRED = "expired"
    #: The producer closed while it waited for a connection.
    CLOSED = "closed"


class Receiver(Protocol):
    """Where a request's outcome goes: exactly one call per request (or per part of a backlog batch)."""

    def receive(self, batch: list[KinesisRecord], response: dict[str, Any] | None,
                error: BaseException | NotSent | None, start: float, end: float) -> None: ...


class _Request:
    __slots__ = ("batch", "receiver", "target")

    def __init__(self, batch: list[KinesisRecord], target: dict[str, str], receiver: Receiver) -> None:
        self.batch = batch
        self.target = target
        self.receiver = receiver


class Sender:
    """Runs PutRecords for batches, at most ``max_in_flight`` at a time, in submission order."""

    def __init__(self, client: Any, *, max_in_flight: int, request_timeout: float) -> None:
        self._client = client
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self._backlog: deque[_Request] = deque()
        self._in_flight: dict[asyncio.Task[None], _Request] = {}
        self._idle: list[asyncio.Future[None]] = []
        #: After :meth:`close_backlog`: no request is started any more.
        self._closed = False

    def submit(self, batch: list[KinesisRecord], target: dict[str, str], receiver: Receiver) -> None:
        """Send ``batch`` (to the stream ``target`` names) when a connection is free."""
        if self._closed:
            receiver.receive(batch, None, NotSent.CLOSED, 0.0, 0.0)
            return
        request = _Request(batch, target, receiver)
        if len(self._in_flight) < self.max_in_flight:
            self._start(request)
        else:
            self._backlog.append(request)

    def _start(self, request: _Request) -> None:
        task = asyncio.get_running_loop().create_task(self._send(request))
        self._in_flight[task] = request
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            # A bug in handling a response: the batch's records may never be resolved.  Say so loudly.
            log.error("PutRecords outcome handling failed", exc_info=task.exception())
        backlog = self._backlog
        while backlog and len(self._in_flight) < self.max_in_flight:
            self._start(backlog.popleft())
        if not self._in_flight and not backlog and self._idle:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _send(self, request: _Request) -> None:
        loop = asyncio.get_running_loop()
        batch, receiver = request.batch, request.receiver
        start = loop.time()
        try:
            async with asyncio.timeout(self.request_timeout):
                response = await self._client.put_records(Records=[kr.entry for kr in batch], **request.target)
        except asyncio.CancelledError as cancelled:
            receiver.receive(batch, None, cancelled, start, loop.time())
            raise
        except Exception as exc:
            receiver.receive(batch, None, exc, start, loop.time())
        else:
            receiver.receive(batch, response, None, start, loop.time())

    def expire_backlog(self, now: float) -> None:
        """Kinesis records waiting for a connection past their expiry leave their batches."""
        kept: deque[_Request] = deque()
        for request in self._backlog:
            expired = [kr for kr in request.batch if kr.expiry <= now]
            if expired:
                request.batch = [kr for kr in request.batch if kr.expiry > now]
                request.receiver.receive(expired, None, NotSent.EXPIRED, now, now)
            if request.batch:
                kept.append(request)
        self._backlog = kept

    def close_backlog(self) -> None:
        """Start no more requests: batches waiting for a connection (or submitted from now on) are not
        sent, each ends as :attr:`NotSent.CLOSED`.  Requests in flight go on to their outcomes."""
        self._closed = True
        backlog, self._backlog = self._backlog, deque()
        for request in backlog:
            request.receiver.receive(request.batch, None, NotSent.CLOSED, 0.0, 0.0)

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._in_flight)

    def outstanding(self, receiver: Receiver) -> Iterator[KinesisRecord]:
        """The Kinesis records of ``receiver`` in the backlog or in flight."""
        for request in (*self._backlog, *self._in_flight.values()):
            if request.receiver is receiver:
                yield from request.batch

    async def wait_idle(self) -> None:
        """Return when no request is in flight or waiting."""
        if not self._in_flight and not self._backlog:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        await waiter

    async def cancel_all(self) -> None:
        """Cancel requests in flight; each ends in its receiver with a CancelledError."""
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
