"""The public producers: :class:`AsyncProducer` for asyncio code, :class:`Producer` for threads.

Both are faces of one core that runs on an asyncio event loop: ``AsyncProducer`` on the caller's
loop, ``Producer`` on a loop in a background thread.  A put does only what must happen at the call:
validation (:mod:`kpl.intake`), admission against the backpressure bounds, the future, and an
append to a list.  The first put of a burst schedules one wake-up of the loop, which hands the whole
burst to the stream's pipeline (:meth:`StreamPipeline.add_burst`), where the per-record work is done
in a few tight loops.  The sync face never makes a cross-thread call per record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kpl.accumulator import ARRIVAL, NO_LOG, SIZE, PendingRecord
from kpl.aws import async_client
from kpl.backpressure import Budget
from kpl.cloudwatch import CloudWatchPublisher
from kpl.config import ProducerConfig
from kpl.errors import (
    BackpressureTimeoutError,
    BufferFullError,
    FlushTimeoutError,
    ProducerClosedError,
    ProducerNotStartedError,
)
from kpl.futures import ThreadFuture, ThreadFutures, resolve_all
from kpl.intake import KNOWN_KEYS, pending_record
from kpl.logs import get_logger
from kpl.metrics import ProducerMetrics
from kpl.pipeline import Shared, StreamPipeline, clock_of
from kpl.records import PRODUCER_CLOSED, RecordResult
from kpl.retry import Backoff
from kpl.sender import Sender, install_put_records_codec
from kpl.shard_map import DEFAULT_MAX_RECORD_SIZE

log = get_logger(__name__)

_monotonic = time.monotonic
_known_key = KNOWN_KEYS.get

T = TypeVar("T")

#: The largest record Kinesis accepts on any stream (MaxRecordSizeInKiB tops out at 10 MiB).
ABSOLUTE_MAX_RECORD_SIZE = 10 * 1024 * 1024

#: A burst of puts that never yields to the event loop is routed every this many records, so that
#: aggregates fill and leave while the caller is still putting.
BURST = 1024


def _not_started() -> asyncio.Future[RecordResult]:
    raise ProducerNotStartedError("the producer is not started")


def _check_stream_name(stream_name: object) -> str:
    if not isinstance(stream_name, str) or not stream_name.strip():
        raise ValueError(f"stream_name must be a non-empty string, got {stream_name!r}")
    return stream_name


def _too_large(stream_name: str, size: int, limit: int) -> ValueError:
    return ValueError(
        f"record is {size} bytes (partition key + data), over the {limit}-byte maximum record size "
        f"of stream {stream_name}"
    )


class _ProducerCore:
    """Everything the producer does, on one event loop.  Not thread-safe: the faces see to that."""

    def __init__(self, config: ProducerConfig, resolve: Callable[[list[Any], RecordResult], None] = resolve_all,
                 ) -> None:
        self.config = config
        self._resolve = resolve
        self.budget = Budget(config.max_outstanding_records, config.max_outstanding_bytes)
        self.metrics = ProducerMetrics(config.metrics_level, config.metrics_granularity)
        self.pipelines: dict[str, StreamPipeline] = {}
        self.started = False
        self.closing = False
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shared: Shared | None = None
        self._sender: Sender | None = None
        self._stack = contextlib.AsyncExitStack()
        self._publisher: CloudWatchPublisher | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._shut_down = asyncio.Event()

    async def start(self) -> None:
        if self.started:
            return
        if self.closed:
            raise ProducerClosedError("a closed producer cannot be started again")
        loop = self._loop = asyncio.get_running_loop()
        config = self.config
        try:
            data_client = await self._stack.enter_async_context(
                async_client("kinesis", config.kinesis_client_config()))
            control_client = await self._stack.enter_async_context(
                async_client("kinesis", config.control_client_config()))
            install_put_records_codec(data_client)
            self._sender = Sender(data_client, max_in_flight=config.max_connections,
                                  request_timeout=config.request_timeout_ms / 1000.0)
            self._shared = Shared(loop, config, control_client, self._sender, self.budget, self.metrics,
                                  Backoff(initial=0.1, maximum=max(1.0, min(10.0, config.record_ttl / 4))),
                                  self._resolve)
            if self.metrics.enabled:
                self._publisher = CloudWatchPublisher(
                    self.metrics.registry, config.metrics_namespace,
                    interval=config.metrics_upload_delay_ms / 1000.0,
                    client_config=config.cloudwatch_client_config(),
                )
                await self._publisher.start()
        except BaseException:
            await self._stack.aclose()
            raise
        self._housekeeping = loop.create_task(self._housekeep(), name="kpl-housekeeping")
        self.started = True

    def check_open(self) -> None:
        if self.closing:
            raise ProducerClosedError("the producer is closed (or closing) and accepts no more records")
        if not self.started:
            raise ProducerNotStartedError(
                "the producer is not started: use 'async with AsyncProducer(...)' or 'await producer.start()'")

    def pipeline(self, stream_name: str) -> StreamPipeline:
        """The stream's pipeline, made on first use; raises when the producer does not take records."""
        self.check_open()
        pipeline = self.pipelines.get(stream_name)
        if pipeline is None:
            assert self._shared is not None
            pipeline = self.pipelines[_check_stream_name(stream_name)] = StreamPipeline(stream_name, self._shared)
        return pipeline

    def size_limit(self, stream_name: str) -> tuple[int, bool]:
        """(limit for the stream's records, whether it is final) — readable from any thread."""
        pipeline = self.pipelines.get(stream_name)
        if pipeline is not None and pipeline.limits_known:
            return pipeline.record_size_limit(), True
        cap = self.config.max_user_record_size
        default = DEFAULT_MAX_RECORD_SIZE if cap is None else min(cap, DEFAULT_MAX_RECORD_SIZE)
        return default, cap is not None and cap <= DEFAULT_MAX_RECORD_SIZE

    async def check_size(self, stream_name: str, size: int) -> None:
        """Wait for the stream's limits when a record is over the default, then check against them."""
        if size > ABSOLUTE_MAX_RECORD_SIZE:
            raise _too_large(stream_name, size, ABSOLUTE_MAX_RECORD_SIZE)
        limit, final = self.size_limit(stream_name)
        if size > limit and not final:
            await self.pipeline(stream_name).wait_for_limits()
            limit, _ = self.size_limit(stream_name)
        if size > limit:
            raise _too_large(stream_name, size, limit)

    def flush(self, stream_name: str | None = None) -> None:
        for name, pipeline in list(self.pipelines.items()):
            if stream_name is None or name == stream_name:
                pipeline.flush()

    async def flush_all(self) -> None:
        self.flush()
        await self.budget.wait_idle()

    def oldest_record_age(self) -> float:
        assert self._loop is not None or not self.pipelines
        arrivals = [a for p in self.pipelines.values() if (a := p.oldest_arrival()) is not None]
        if not arrivals or self._loop is None:
            return 0.0
        return max(0.0, self._loop.time() - min(arrivals))

    async def _housekeep(self) -> None:
        """Expiry of waiting records, UserRecordsPending / UserRecordsReceived samples, map cleanup."""
        assert self._loop is not None and self._sender is not None
        interval = min(0.5, max(0.05, self.config.record_ttl / 20))
        loop, sender, metrics = self._loop, self._sender, self.metrics
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            try:
                sender.expire_backlog(now)
                for pipeline in list(self.pipelines.values()):
                    pipeline.expire(now)
                    if pipeline.received and metrics.enabled:
                        metrics.received(pipeline.stream_name, pipeline.received)
                    pipeline.received = 0
                if metrics.enabled:
                    metrics.pending(None, self.budget.outstanding_records)
            except Exception:
                log.exception("producer housekeeping failed")

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting records, deliver what is outstanding (up to ``timeout``), release everything."""
        if self.closing:
            if self.started:
                await self._shut_down.wait()  # a close already under way
            return
        self.closing = True
        if not self.started:
            self.closed = True
            return
        try:
            self.flush()
            try:
                async with asyncio.timeout(timeout):
                    await self.budget.wait_idle()
            except TimeoutError:
                await self._abort(f"the producer closed with the record still outstanding after {timeout:g} s")
            except asyncio.CancelledError:
                await self._abort("close() was cancelled with the record still outstanding")
                raise
        finally:
            await self._shutdown()
            self._shut_down.set()

    async def _abort(self, message: str) -> None:
        assert self._sender is not None
        for handler, batch in self._sender.take_backlog():
            if isinstance(handler, StreamPipeline):
                handler.abort_batches([batch], PRODUCER_CLOSED, message)
        await self._sender.cancel_all()
        for pipeline in self.pipelines.values():
            pipeline.abort(PRODUCER_CLOSED, message)

    async def _shutdown(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        if self.budget.outstanding_records:
            # Every path resolves its records; this would be a bug, and it must not pass silently.
            log.error("records still outstanding at shutdown", outstanding=self.budget.outstanding_records)
            await self._abort("the producer shut down with the record outstanding")
        for pipeline in self.pipelines.values():
            await pipeline.close()
        if self._publisher is not None:
            try:
                # The final upload must not hold up close() on a dead network.
                async with asyncio.timeout(2 * self.config.request_timeout_ms / 1000.0):
                    await self._publisher.close()
            except TimeoutError:
                log.warning("final CloudWatch metrics upload did not finish in time; dropped")
        await self._stack.aclose()
        self.closed = True


class AsyncProducer:
    """A KPL-compatible Kinesis producer for asyncio applications.

    ::

        async with kpl.AsyncProducer(kpl.ProducerConfig(record_max_buffered_time_ms=50)) as producer:
            future = await producer.put_record("clicks", b'{"page": "/"}', partition_key="user-1")
            result = await future          # a kpl.RecordResult; it never raises

    One producer serves any number of streams.
    """

    def __init__(self, config: ProducerConfig | None = None, **settings: Any) -> None:
        base = config if config is not None else ProducerConfig()
        self.config = base.with_(**settings) if settings else base
        self._core = _ProducerCore(self.config)
        self._pipelines = self._core.pipelines
        self._budget = self._core.budget
        #: Records larger than this need a look at the stream's own limit.
        self._checked_size = min(DEFAULT_MAX_RECORD_SIZE, self.config.max_user_record_size or ABSOLUTE_MAX_RECORD_SIZE)
        self._clock = time.monotonic
        self._create_future: Callable[[], asyncio.Future[RecordResult]] = _not_started
        #: How the futures of the current burst are made (see _start_burst).
        self._burst_future: Callable[[], asyncio.Future[RecordResult]] = _not_started
        self._plain_futures = False

    async def start(self) -> None:
        """Create the AWS clients and background tasks (``async with`` does this)."""
        await self._core.start()
        loop = asyncio.get_running_loop()
        self._clock = clock_of(loop)
        self._create_future = loop.create_future
        self._plain_futures = type(loop).create_future is asyncio.BaseEventLoop.create_future

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def put_record(
        self, stream_name: str, data: bytes | bytearray | memoryview, partition_key: str | None = None,
        explicit_hash_key: str | int | None = None,
    ) -> asyncio.Future[RecordResult]:
        """Queue a record; returns a future resolving to its :class:`RecordResult`.

        Waits while the outstanding-records or outstanding-bytes bound is reached (backpressure).
        The returned future never raises: a failure is a result with ``success`` False.
        """
        future = self._put(stream_name, data, partition_key, explicit_hash_key)
        if future is None:
            future = await self._put_after_waiting(stream_name, data, partition_key, explicit_hash_key)
        return future

    def put_record_nowait(
        self, stream_name: str, data: bytes | bytearray | memoryview, partition_key: str | None = None,
        explicit_hash_key: str | int | None = None,
    ) -> asyncio.Future[RecordResult]:
        """Like :meth:`put_record` without waiting: raises :class:`BufferFullError` when full.

        The cheapest way in (no coroutine per record), for callers that handle backpressure
        themselves.  A record over 1 MiB for a stream whose limits are not known yet raises
        ValueError: use ``put_record``, which waits for them.
        """
        future = self._put(stream_name, data, partition_key, explicit_hash_key)
        if future is None:
            future = self._put_or_refuse(stream_name, data, partition_key, explicit_hash_key)
        return future

    def _put(
        self, stream_name: str, data: object, partition_key: object, explicit_hash_key: object,
    ) -> asyncio.Future[RecordResult] | None:
        """Queue a record if it can be admitted now; None when it must wait for room, or for the
        stream's limits to be known (the callers then take the slow way, validating again).

        The hot path: everything a put needs, with no call that is not needed.
        """
        record: PendingRecord
        if type(data) is bytes and type(partition_key) is str and explicit_hash_key is None and \
                (key := _known_key(partition_key)) is not None:
            # The common put, already validated (see kpl.intake).
            record = (partition_key, None, data, key[0], key[1] + len(data), self._clock(), NO_LOG)
        else:
            record = pending_record(data, partition_key, explicit_hash_key, self._clock())
        pipeline = self._pipelines.get(stream_name)
        if pipeline is None or self._core.closing:
            pipeline = self._core.pipeline(stream_name)
        size = record[SIZE]
        if size > self._checked_size or not self._budget.try_admit(size):
            return None
        incoming = pipeline.incoming
        future: asyncio.Future[RecordResult]
        if incoming:
            future = self._burst_future()
            incoming.append(record)
            pipeline.incoming_futures.append(future)
            if len(incoming) >= BURST:
                pipeline.take_incoming()
        else:
            future = self._start_burst(pipeline)
            incoming.append(record)
            pipeline.incoming_futures.append(future)
        return future

    def _start_burst(self, pipeline: StreamPipeline) -> asyncio.Future[RecordResult]:
        """The first put of a burst: schedule the burst's hand-off, and choose how its futures are made.

        ``loop.create_future()`` of the standard loop is ``asyncio.Future(loop=loop)``, and passing
        ``loop`` by keyword costs a dict per future; ``asyncio.Future()`` takes the running loop
        instead, at half the cost.  That is the same future when the producer's loop is running
        here, and it still is for the rest of the burst, because the loop has not run since.
        """
        loop = pipeline.loop
        loop.call_soon(pipeline.take_incoming)
        if self._plain_futures and asyncio.events._get_running_loop() is loop:
            self._burst_future = asyncio.Future
        else:
            self._burst_future = self._create_future
        return self._create_future()

    async def _put_after_waiting(
        self, stream_name: str, data: object, partition_key: object, explicit_hash_key: object,
    ) -> asyncio.Future[RecordResult]:
        """put_record's slow way: wait for the stream's limits when the record is large, then for room."""
        core = self._core
        record = pending_record(data, partition_key, explicit_hash_key, self._clock())
        size = record[SIZE]
        if size > self._checked_size:
            await core.check_size(stream_name, size)
            core.check_open()
        budget = self._budget
        if not budget.try_admit(size):
            await budget.wait_for_room(size)
            core.check_open()
            budget.admit(size)
        return self._enqueue(core.pipeline(stream_name), record)

    def _put_or_refuse(
        self, stream_name: str, data: object, partition_key: object, explicit_hash_key: object,
    ) -> asyncio.Future[RecordResult]:
        """put_record_nowait's slow way: a large record against the stream's limit as far as known, and
        BufferFullError rather than waiting for room."""
        core = self._core
        record = pending_record(data, partition_key, explicit_hash_key, self._clock())
        size = record[SIZE]
        limit, _ = core.size_limit(stream_name)
        if size > limit:
            raise _too_large(stream_name, size, limit)
        budget = self._budget
        if not budget.try_admit(size):
            raise BufferFullError(
                f"{budget.outstanding_records} records / {budget.outstanding_bytes} bytes outstanding "
                f"(bounds {budget.max_records} / {budget.max_bytes})"
            )
        return self._enqueue(core.pipeline(stream_name), record)

    def _enqueue(self, pipeline: StreamPipeline, record: PendingRecord) -> asyncio.Future[RecordResult]:
        """The end of a slow put: the record joins the burst, which goes in at once."""
        future: asyncio.Future[RecordResult] = self._create_future()
        pipeline.incoming.append(record)
        pipeline.incoming_futures.append(future)
        pipeline.take_incoming()
        return future

    def flush(self, stream_name: str | None = None) -> None:
        """Send everything buffered now (for one stream, or all), without waiting for results."""
        self._core.flush(stream_name)

    async def flush_all(self) -> None:
        """Send everything now and return once every outstanding record has its result."""
        await self._core.flush_all()

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting records and deliver the outstanding ones, then release all resources.

        Records still outstanding after ``timeout`` seconds fail with ``ProducerClosed``; without a
        timeout the wait is bounded by RecordTtl.  Every future is resolved when this returns.
        """
        await self._core.close(timeout)

    @property
    def outstanding_records(self) -> int:
        return self._core.budget.outstanding_records

    @property
    def outstanding_bytes(self) -> int:
        return self._core.budget.outstanding_bytes

    @property
    def oldest_record_age(self) -> float:
        """Seconds since the oldest outstanding record was put (0 when none is outstanding)."""
        return self._core.oldest_record_age()

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric since start, by name: statistics per dimension set (local; no CloudWatch call)."""
        return self._core.metrics.snapshot()


class Producer:
    """The same producer for plain-thread applications; calls return ``concurrent.futures.Future``.

    ::

        with kpl.Producer() as producer:
            future = producer.put_record("clicks", b"...", partition_key="user-1")
            producer.flush_all(timeout=30)

    It runs the async core on an event loop in a daemon thread.  Methods are thread-safe.
    """

    def __init__(self, config: ProducerConfig | None = None, **settings: Any) -> None:
        base = config if config is not None else ProducerConfig()
        self.config = base.with_(**settings) if settings else base
        self._futures = ThreadFutures()
        self._core = _ProducerCore(self.config, self._futures.resolve_all)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        #: Records put since the loop last took them, by stream: (records, their futures).
        self._handoff: dict[str, tuple[list[PendingRecord], list[ThreadFuture[RecordResult]]]] = {}
        #: Stream names that passed the check at the call.
        self._stream_names: set[str] = set()
        #: Records larger than this need a look at the stream's own limit.
        self._checked_size = min(DEFAULT_MAX_RECORD_SIZE, self.config.max_user_record_size or ABSOLUTE_MAX_RECORD_SIZE)
        self._wake_scheduled = False
        self._room_waiters = 0
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kpl-producer", daemon=True)
        self._thread.start()
        self._core.budget.on_release = self._released
        try:
            self._call(self._core.start())
        except BaseException:
            self._stop_loop()
            raise

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
            self._stream_names.add(_check_stream_name(stream_name))
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

    def _check_size(self, stream_name: str, size: int) -> None:
        """A record over the default limit: check it against the stream's own (waiting for it if need be)."""
        limit, final = self._core.size_limit(stream_name)
        if size > limit:
            if final or size > ABSOLUTE_MAX_RECORD_SIZE:
                raise _too_large(stream_name, size, limit)
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
        core = self._core
        for stream_name, (records, futures) in handoff.items():
            pipeline = core.pipelines.get(stream_name) or core.pipeline(stream_name)
            pipeline.add_burst(records, futures)

    def flush(self, stream_name: str | None = None) -> None:
        """Send everything buffered now, without waiting for results."""
        def flush_now() -> None:
            self._take_handoff()
            self._core.flush(stream_name)

        self._loop.call_soon_threadsafe(flush_now)

    def flush_all(self, timeout: float | None = None) -> None:
        """Send everything now and block until every outstanding record has its result.

        Raises :class:`FlushTimeoutError` after ``timeout`` seconds (records stay in flight).
        """
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

        Records still outstanding after ``timeout`` seconds fail with ``ProducerClosed``.  Every
        future is resolved when this returns.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._room.notify_all()
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
        return self._core.budget.outstanding_records

    @property
    def outstanding_bytes(self) -> int:
        return self._core.budget.outstanding_bytes

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
        return self._core.metrics.snapshot()
