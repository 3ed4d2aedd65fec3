"""The public producers: :class:`AsyncProducer` for asyncio code, :class:`Producer` for threads.

Both are faces of one core (:mod:`kpl.core`) that runs on an asyncio event loop: ``AsyncProducer``
on the caller's loop, ``Producer`` on a loop in a background thread.  They use only the core's
public methods.  Bad input raises at the call, in both faces, before anything else happens.  The
sync face validates and admits records in the calling thread and hands them over in bursts: it
never makes a cross-thread call per record.

A producer is meant to be closed (``close()``, or ``async with`` / ``with``): that is when what it
holds is delivered.  One dropped without closing, or still open when the interpreter exits, with
records unresolved, says so (a ResourceWarning and a WARNING log naming the count); a dropped one
is then closed in the background, so its records are still delivered while its loop runs.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar, Unpack

from kpl.accumulator import ARRIVAL, SIZE, PendingRecord
from kpl.config import ProducerConfig, ProducerSettings, settings_config
from kpl.core import ProducerCore, check_stream_name
from kpl.errors import BackpressureTimeoutError, FlushTimeoutError, ProducerClosedError
from kpl.futures import ThreadFuture, ThreadFutures
from kpl.intake import pending_record, pending_records
from kpl.logs import get_logger
from kpl.records import RecordResult

log = get_logger(__name__)

_monotonic = time.monotonic

T = TypeVar("T")

#: Producers started and not closed, for the check at interpreter exit.
_OPEN: weakref.WeakSet[AsyncProducer | Producer] = weakref.WeakSet()


def _warn_unresolved(producer: AsyncProducer | Producer, unresolved: int, how: str) -> None:
    name = type(producer).__name__
    warnings.warn(f"kpl.{name} {how} with {unresolved} records unresolved (put, without a result yet): close it "
                  "(or use it with 'with' / 'async with') so that they are delivered or reported",
                  ResourceWarning, source=producer, stacklevel=2)
    log.warning("producer not closed while records are unresolved; close() it to deliver them",
                producer=f"kpl.{name}", how=how, unresolved=unresolved)


@atexit.register
def _check_open_producers() -> None:
    for producer in list(_OPEN):
        unresolved = producer.outstanding_records
        if unresolved:
            _warn_unresolved(producer, unresolved, "still open at interpreter exit")


async def _ready(future: T) -> T:
    """What ``AsyncProducer.put_record`` returns when the record went in at once: awaiting it gives
    the record's future without suspending.  (A coroutine: in CPython 3.11 creating and awaiting one
    costs about a quarter of an awaitable object whose iterator raises StopIteration.)"""
    return future


async def _after_a_loop_turn(future: T) -> T:
    """put_record's ready path once per handed-on burst: the loop runs once before the caller goes on.

    An application that awaits ``put_record`` in a tight loop never suspends while the producer
    has room, so without this the loop would not run, and nothing would be sent, until the
    outstanding-records bound is reached (100,000 futures alive, then a stall while they drain).
    One loop turn per 1024 records lets requests start and results come back as records arrive.
    """
    await asyncio.sleep(0)
    return future


class AsyncProducer:
    """A KPL-compatible Kinesis producer for asyncio applications.

    ::

        async with kpl.AsyncProducer(record_max_buffered_time_ms=50) as producer:
            future = await producer.put_record("clicks", b'{"page": "/"}', partition_key="user-1")
            result = await future          # a kpl.RecordResult; it never raises

    Takes a :class:`ProducerConfig`, keyword settings (its field names, see :class:`ProducerSettings`),
    or both (the keywords win).  One producer serves any number of streams.
    """

    def __init__(self, config: ProducerConfig | None = None, **settings: Unpack[ProducerSettings]) -> None:
        self.config = settings_config(config, settings, "AsyncProducer()")
        self._core = core = ProducerCore(self.config)
        self._put = core.put

    async def start(self) -> None:
        """Create the AWS clients and background tasks (``async with`` does this)."""
        await self._core.start()
        _OPEN.add(self)

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __del__(self) -> None:
        core: ProducerCore | None = self.__dict__.get("_core")
        if core is None or not core.started or core.closing:
            return
        unresolved = core.outstanding_records
        if unresolved:
            _warn_unresolved(self, unresolved, "garbage-collected")
        core.close_in_background()

    def put_record(
        self, stream_name: str, data: bytes | bytearray | memoryview, partition_key: str | None = None,
        explicit_hash_key: str | int | None = None,
    ) -> Awaitable[asyncio.Future[RecordResult]]:
        """Queue a record; ``await`` it for a future resolving to its :class:`RecordResult`.

        Bad input raises here, at the call (TypeError, ValueError), as do a producer that is not
        started or closed.  Awaiting waits while the outstanding-records or outstanding-bytes bound
        is reached (backpressure), while 4096 of the stream's records already wait for its shard map
        (being loaded: they cannot be sent before), or for the stream's limits for a record over 1 MiB,
        and lets the event loop run once every 1024 records (so that records are sent while the caller puts).
        The future never raises: a failure is a result with ``success`` False.
        """
        future = self._put(stream_name, data, partition_key, explicit_hash_key)
        if future is not None:
            core = self._core
            if core.yield_due:
                core.yield_due = False
                return _after_a_loop_turn(future)
            return _ready(future)
        return self._core.put_after_waiting(stream_name, data, partition_key, explicit_hash_key)

    def put_records(
        self, stream_name: str, records: Iterable[tuple[bytes | bytearray | memoryview, str | None]
                                                 | tuple[bytes | bytearray | memoryview, str | None, str | int | None]],
    ) -> Awaitable[list[asyncio.Future[RecordResult]]]:
        """Queue many records of one stream; ``await`` it for their futures, in order.

        Each record is ``(data, partition_key)`` or ``(data, partition_key, explicit_hash_key)``.
        All are validated at the call (the error names the first bad one, by index, and then none
        is queued).  Awaiting waits for room as :meth:`put_record` does, record by record.  The
        cheapest way in: no call, coroutine or admission check per record.
        """
        core = self._core
        batch = core.prepare(stream_name, records)
        futures = core.put_many(stream_name, batch)
        if len(futures) == len(batch):
            return _ready(futures)
        return core.put_many_after_waiting(stream_name, batch, futures)

    def put_record_nowait(
        self, stream_name: str, data: bytes | bytearray | memoryview, partition_key: str | None = None,
        explicit_hash_key: str | int | None = None,
    ) -> asyncio.Future[RecordResult]:
        """Like :meth:`put_record` without waiting: raises :class:`BufferFullError` when full.

        The cheapest way in, for callers that handle backpressure themselves.  A record over 1 MiB
        for a stream whose limits are not known yet raises ValueError: use ``put_record``, which
        waits for them.
        """
        future = self._put(stream_name, data, partition_key, explicit_hash_key)
        if future is None:
            future = self._core.put_or_refuse(stream_name, data, partition_key, explicit_hash_key)
        return future

    def flush(self, stream_name: str | None = None) -> None:
        """Send everything buffered now (for one stream, or all), without waiting for results."""
        self._core.flush(stream_name)

    async def flush_all(self) -> None:
        """Send everything now and return once every outstanding record has its result.

        Raises :class:`ProducerClosedError` once the producer is closed (or closing).
        """
        await self._core.flush_all()

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting records, deliver the outstanding ones, then release all resources.

        Every future is resolved when this returns.  When ``timeout`` runs out, records never
        written fail with ``ProducerClosed``, requests in flight are awaited up to RequestTimeout,
        and records that may have been written fail with ``OutcomeUnknown`` (docs/kpl.md, Closing).
        """
        try:
            await self._core.close(timeout)
        finally:
            _OPEN.discard(self)

    @property
    def outstanding_records(self) -> int:
        return self._core.outstanding_records

    @property
    def outstanding_bytes(self) -> int:
        return self._core.outstanding_bytes

    @property
    def oldest_record_age(self) -> float:
        """Seconds since the oldest outstanding record was put (0 when none is outstanding)."""
        return self._core.oldest_record_age()

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric since start, by name: statistics per dimension set (local; no CloudWatch call)."""
        return self._core.metrics_snapshot()


class Producer:
    """The same producer for plain-thread applications; calls return ``concurrent.futures.Future``.

    ::

        with kpl.Producer() as producer:
            future = producer.put_record("clicks", b"...", partition_key="user-1")
            producer.flush_all(timeout=30)

    It runs the async core on an event loop in a daemon thread.  Methods are thread-safe.  Takes a
    :class:`ProducerConfig`, keyword settings (:class:`ProducerSettings`), or both.
    """

    def __init__(self, config: ProducerConfig | None = None, **settings: Unpack[ProducerSettings]) -> None:
        self.config = settings_config(config, settings, "Producer()")
        self._futures = ThreadFutures()
        self._core = ProducerCore(self.config, self._futures.resolve_all)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        #: Records put since the loop last took them, by stream: (records, their futures).
        self._handoff: dict[str, tuple[list[PendingRecord], list[ThreadFuture[RecordResult]]]] = {}
        #: Stream names that passed the check at the call.
        self._stream_names: set[str] = set()
        #: Records larger than this need a look at the stream's own limit.
        self._checked_size = self._core.checked_size
        self._wake_scheduled = False
        self._room_waiters = 0
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kpl-producer", daemon=True)
        self._thread.start()
        # Weakly: the core (alive while its loop runs) must not keep a dropped face alive.
        released = weakref.WeakMethod(self._released)

        def on_release() -> None:
            method = released()
            if method is not None:
                method()

        self._core.budget.on_release = on_release
        try:
            self._call(self._core.start())
        except BaseException:
            self._stop_loop()
            raise
        _OPEN.add(self)

    def __del__(self) -> None:
        core: ProducerCore | None = self.__dict__.get("_core")
        if core is None or self.__dict__.get("_closed", True) or not core.started:
            return
        unresolved = core.outstanding_records
        if unresolved:
            _warn_unresolved(self, unresolved, "garbage-collected")
        loop: asyncio.AbstractEventLoop = self._loop
        core.close_in_background(then=loop.stop)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def put_record(
        self, stream_name: str, data: bytes | bytearray | memoryview, partition_key: str | None = None,
        explicit_hash_key: str | int | None = None, *, timeout: float | None = None,
    ) -> concurrent.futures.Future[RecordResult]:
        """Queue a record; returns a future resolving to its :class:`RecordResult` (it never raises).

        Blocks while the outstanding bounds are reached; after ``timeout`` seconds of that it
        raises :class:`BackpressureTimeoutError` (``timeout=0``: do not wait at all).
        """
        record = pending_record(data, partition_key, explicit_hash_key, _monotonic())
        if type(stream_name) is not str or stream_name not in self._stream_names:
            self._stream_names.add(check_stream_name(stream_name))
        size = record[SIZE]
        if size > self._checked_size:
            self._check_size(stream_name, size)
        future: ThreadFuture[RecordResult] = self._futures.new()
        budget = self._core.budget
        with self._lock:
            if self._closed:
                raise ProducerClosedError("the producer is closed (or closing) and accepts no more records")
            if not budget.try_admit(size):
                self._wait_for_room(size, timeout)
                budget.admit(size)
            burst = self._handoff.get(stream_name)
            if burst is None:
                burst = self._handoff[stream_name] = ([], [])
            burst[0].append(record)
            burst[1].append(future)
            wake = not self._wake_scheduled
            self._wake_scheduled = True
        if wake:
            self._loop.call_soon_threadsafe(self._take_handoff)
        return future

    def put_records(
        self, stream_name: str, records: Iterable[tuple[bytes | bytearray | memoryview, str | None]
                                                 | tuple[bytes | bytearray | memoryview, str | None, str | int | None]],
        *, timeout: float | None = None,
    ) -> list[concurrent.futures.Future[RecordResult]]:
        """Queue many records of one stream; their futures, in order.

        Each record is ``(data, partition_key)`` or ``(data, partition_key, explicit_hash_key)``;
        all are validated first (none is queued when one is bad).  Blocks while the bounds are
        reached; after ``timeout`` seconds of waiting raises :class:`BackpressureTimeoutError`, whose
        ``queued`` holds the futures of the records queued before it.
        """
        batch = pending_records(records, _monotonic())
        if type(stream_name) is not str or stream_name not in self._stream_names:
            self._stream_names.add(check_stream_name(stream_name))
        for record in batch:
            if record[SIZE] > self._checked_size:
                self._check_size(stream_name, record[SIZE])
        futures: list[ThreadFuture[RecordResult]] = [self._futures.new() for _ in batch]
        budget = self._core.budget
        deadline = None if timeout is None else _monotonic() + timeout
        queued = 0
        try:
            while queued < len(batch):
                with self._lock:
                    if self._closed:
                        raise ProducerClosedError("the producer is closed (or closing) and accepts no more records")
                    admitted = budget.try_admit_many([record[SIZE] for record in batch[queued:]])
                    if not admitted:
                        remaining = None if deadline is None else max(0.0, deadline - _monotonic())
                        self._wait_for_room(batch[queued][SIZE], remaining)
                        budget.admit(batch[queued][SIZE])
                        admitted = 1
                    burst = self._handoff.get(stream_name)
                    if burst is None:
                        burst = self._handoff[stream_name] = ([], [])
                    burst[0].extend(batch[queued:queued + admitted])
                    burst[1].extend(futures[queued:queued + admitted])
                    queued += admitted
                    wake = not self._wake_scheduled
                    self._wake_scheduled = True
                if wake:
                    self._loop.call_soon_threadsafe(self._take_handoff)
        except BackpressureTimeoutError as exc:
            exc.queued = futures[:queued]
            raise
        return list(futures)

    def _check_size(self, stream_name: str, size: int) -> None:
        """A record over the default limit: check it against the stream's own (waiting for it if need be)."""
        limit, final = self._core.size_limit(stream_name)
        if size > limit:
            if final:
                raise self._core.too_large(stream_name, size)
            self._call(self._core.check_size(stream_name, size))

    def _wait_for_room(self, size: int, timeout: float | None) -> None:
        """With the lock held: wait until ``size`` fits or ``timeout`` passes."""
        budget = self._core.budget
        deadline = None if timeout is None else time.monotonic() + timeout
        self._room_waiters += 1
        try:
            while not budget.has_room(size):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise BackpressureTimeoutError(
                        f"no room for the record within {timeout:g} s: {budget.outstanding_records} records / "
                        f"{budget.outstanding_bytes} bytes outstanding"
                    )
                self._room.wait(remaining)
                if self._closed:
                    raise ProducerClosedError("the producer closed while put_record waited for room")
        finally:
            self._room_waiters -= 1

    def _released(self) -> None:
        """On the loop, after results released budget: wake callers blocked in put_record."""
        if self._room_waiters:
            with self._room:
                self._room.notify_all()

    def _take_handoff(self) -> None:
        """On the loop: move every handed-off record into the core."""
        with self._lock:
            handoff, self._handoff = self._handoff, {}
            self._wake_scheduled = False
        add_burst = self._core.add_burst
        for stream_name, (records, futures) in handoff.items():
            add_burst(stream_name, records, futures)

    def _check_not_closed(self, call: str) -> None:
        if self._closed:
            raise ProducerClosedError(f"{call} on a closed (or closing) producer: close() has sent what it held")

    def flush(self, stream_name: str | None = None) -> None:
        """Send everything buffered now, without waiting for results."""
        self._check_not_closed("flush()")

        def flush_now() -> None:
            self._take_handoff()
            self._core.flush(stream_name)

        self._loop.call_soon_threadsafe(flush_now)

    def flush_all(self, timeout: float | None = None) -> None:
        """Send everything now and block until every outstanding record has its result.

        Raises :class:`FlushTimeoutError` after ``timeout`` seconds (records stay in flight), and
        :class:`ProducerClosedError` once the producer is closed (or closing).
        """
        self._check_not_closed("flush_all()")

        async def flush_all() -> None:
            self._take_handoff()
            await self._core.flush_all()

        future = asyncio.run_coroutine_threadsafe(flush_all(), self._loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FlushTimeoutError(
                f"{self.outstanding_records} records still outstanding after {timeout:g} s") from None

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting records, deliver the outstanding ones and stop the background thread.

        Every future is resolved when this returns.  When ``timeout`` runs out, records never
        written fail with ``ProducerClosed``, requests in flight are awaited up to RequestTimeout,
        and records that may have been written fail with ``OutcomeUnknown`` (docs/kpl.md, Closing).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._room.notify_all()
        _OPEN.discard(self)
        if not self._thread.is_alive():
            return

        async def close() -> None:
            self._take_handoff()
            await self._core.close(timeout)

        try:
            self._call(close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def outstanding_records(self) -> int:
        return self._core.outstanding_records

    @property
    def outstanding_bytes(self) -> int:
        return self._core.outstanding_bytes

    @property
    def oldest_record_age(self) -> float:
        """Seconds since the oldest outstanding record was put (0 when none is outstanding)."""
        with self._lock:
            handed_off = min((records[0][ARRIVAL] for records, _ in self._handoff.values()), default=None)
        if self._closed or not self._thread.is_alive():
            return 0.0 if handed_off is None else time.monotonic() - handed_off

        async def age() -> float:
            return self._core.oldest_record_age()

        in_core = self._call(age())
        return max(in_core, 0.0 if handed_off is None else time.monotonic() - handed_off)

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric since start, by name (local; no CloudWatch call)."""
        return self._core.metrics_snapshot()
