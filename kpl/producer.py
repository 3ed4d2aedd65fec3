"""The public producers: :class:`AsyncProducer` for asyncio code, :class:`Producer` for threads.

Both are faces of one core that runs on an asyncio event loop: ``AsyncProducer`` on the caller's
loop, ``Producer`` on a loop in a background thread.  The sync face never makes a cross-thread call
per record: callers append validated records to a hand-off list and the first of a burst schedules
one wake-up of the loop, which moves the whole list into the core.

Input is validated in the calling thread, at the call, so a bad record raises where it was made:
``TypeError`` for data that is not bytes-like, ``ValueError`` naming the problem for a bad partition
key, explicit hash key or size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import threading
import time
from collections.abc import Coroutine
from hashlib import md5
from typing import Any, TypeVar

import structlog

from kpl.accumulator import ARRIVAL, NO_LOG, PendingRecord
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
from kpl.hashing import MAX_PARTITION_KEY_LENGTH, parse_explicit_hash_key
from kpl.metrics import ProducerMetrics
from kpl.pipeline import Shared, StreamPipeline
from kpl.records import PRODUCER_CLOSED, RecordResult
from kpl.retry import Backoff
from kpl.sender import Sender, install_put_records_codec
from kpl.shard_map import DEFAULT_MAX_RECORD_SIZE

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: The largest record Kinesis accepts on any stream (MaxRecordSizeInKiB tops out at 10 MiB).
ABSOLUTE_MAX_RECORD_SIZE = 10 * 1024 * 1024

_getrandbits = random.getrandbits

#: MD5 hash keys of recently seen partition keys.  Applications reuse keys (a user id, a device id),
#: and MD5 is the largest single cost of accepting a record; the cache is dropped when it fills up.
_HASH_KEYS: dict[str, int] = {}
_HASH_KEYS_LIMIT = 1 << 14


def validate_record(
    data: object, partition_key: object, explicit_hash_key: object
) -> tuple[bytes, str, str | None, int, int]:
    """Check one record's input; (data, partition key, explicit hash key, hash key, size).

    A missing partition key becomes a random one (records spread evenly over the shards).  An
    explicit hash key is normalised to its decimal form.  ``size`` is what Kinesis counts:
    UTF-8 partition key + data.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like (bytes, bytearray or memoryview), not {type(data).__name__}")
        data = bytes(data)  # a private copy: the caller may reuse its buffer
    if partition_key is None:
        random_key = f"{_getrandbits(128):032x}"  # used once: not worth a place in the cache
        if explicit_hash_key is None:
            return data, random_key, None, int.from_bytes(md5(random_key.encode()).digest(), "big"), 32 + len(data)
        partition_key = random_key
    elif type(partition_key) is not str:
        if not isinstance(partition_key, str):
            raise TypeError(f"partition_key must be str, not {type(partition_key).__name__}")
        partition_key = str(partition_key)
    length = len(partition_key)
    if length == 0 or length > MAX_PARTITION_KEY_LENGTH:
        raise ValueError(f"partition_key must have 1 to {MAX_PARTITION_KEY_LENGTH} characters, got {length}")
    if explicit_hash_key is None:
        hash_key = _HASH_KEYS.get(partition_key)
        if hash_key is not None:
            # Cached keys were encoded before: only the UTF-8 length is left to find.
            key_bytes = length if partition_key.isascii() else len(partition_key.encode())
            return data, partition_key, None, hash_key, key_bytes + len(data)
        raw_key = _encode_partition_key(partition_key)
        hash_key = int.from_bytes(md5(raw_key).digest(), "big")
        if len(_HASH_KEYS) >= _HASH_KEYS_LIMIT:
            _HASH_KEYS.clear()
        _HASH_KEYS[partition_key] = hash_key
        return data, partition_key, None, hash_key, len(raw_key) + len(data)
    raw_key = _encode_partition_key(partition_key)
    hash_key = parse_explicit_hash_key(explicit_hash_key)  # type: ignore[arg-type]
    return data, partition_key, str(hash_key), hash_key, len(raw_key) + len(data)


def _encode_partition_key(partition_key: str) -> bytes:
    try:
        return partition_key.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"partition_key is not encodable as UTF-8: {exc}") from exc


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

    def __init__(self, config: ProducerConfig) -> None:
        self.config = config
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
                                  Backoff(initial=0.1, maximum=max(1.0, min(10.0, config.record_ttl / 4))))
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
        pipeline = self.pipelines.get(stream_name)
        if pipeline is None:
            self.check_open()
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

    async def start(self) -> None:
        """Create the AWS clients and background tasks (``async with`` does this)."""
        await self._core.start()

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
        core = self._core
        data, partition_key, explicit_hash_key, hash_key, size = validate_record(
            data, partition_key, explicit_hash_key)
        pipeline = self._pipelines.get(stream_name)
        if pipeline is None or core.closing:
            core.check_open()
            pipeline = core.pipeline(stream_name)
        if size > self._checked_size:
            await core.check_size(stream_name, size)
            core.check_open()
        budget = self._budget
        if not budget.try_admit(size):
            await budget.wait_for_room(size)
            core.check_open()
            budget.admit(size)
        future: asyncio.Future[RecordResult] = pipeline.loop.create_future()
        pipeline.add((partition_key, explicit_hash_key, data, hash_key, size, pipeline.clock(), NO_LOG), future)
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
        core = self._core
        data, partition_key, explicit_hash_key, hash_key, size = validate_record(
            data, partition_key, explicit_hash_key)
        pipeline = self._pipelines.get(stream_name)
        if pipeline is None or core.closing:
            core.check_open()
            pipeline = core.pipeline(stream_name)
        if size > self._checked_size:
            limit, _ = core.size_limit(stream_name)
            if size > limit:
                raise _too_large(stream_name, size, limit)
        budget = self._budget
        if not budget.try_admit(size):
            raise BufferFullError(
                f"{budget.outstanding_records} records / {budget.outstanding_bytes} bytes outstanding "
                f"(bounds {budget.max_records} / {budget.max_bytes})"
            )
        future: asyncio.Future[RecordResult] = pipeline.loop.create_future()
        pipeline.add((partition_key, explicit_hash_key, data, hash_key, size, pipeline.clock(), NO_LOG), future)
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
        self._core = _ProducerCore(self.config)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._handoff: list[tuple[str, PendingRecord, concurrent.futures.Future[RecordResult]]] = []
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
        core = self._core
        data, partition_key, explicit_hash_key, hash_key, size = validate_record(
            data, partition_key, explicit_hash_key)
        _check_stream_name(stream_name)
        limit, final = core.size_limit(stream_name)
        if size > limit:
            if final or size > ABSOLUTE_MAX_RECORD_SIZE:
                raise _too_large(stream_name, size, limit)
            self._call(core.check_size(stream_name, size))
        future: concurrent.futures.Future[RecordResult] = concurrent.futures.Future()
        record = (partition_key, explicit_hash_key, data, hash_key, size, time.monotonic(), NO_LOG)
        budget = core.budget
        with self._lock:
            if self._closed:
                raise ProducerClosedError("the producer is closed (or closing) and accepts no more records")
            if not budget.has_room(size):
                self._wait_for_room(size, timeout)
            budget.admit(size)
            self._handoff.append((stream_name, record, future))
            wake = not self._wake_scheduled
            self._wake_scheduled = True
        if wake:
            self._loop.call_soon_threadsafe(self._take_handoff)
        return future

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
            handoff, self._handoff = self._handoff, []
            self._wake_scheduled = False
        core = self._core
        pipelines = core.pipelines
        for stream_name, record, future in handoff:
            pipeline = pipelines.get(stream_name)
            if pipeline is None:
                pipeline = core.pipeline(stream_name)
            pipeline.add(record, future)

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
            handed_off = self._handoff[0][1][ARRIVAL] if self._handoff else None
        if self._closed or not self._thread.is_alive():
            return 0.0 if handed_off is None else time.monotonic() - handed_off

        async def age() -> float:
            return self._core.oldest_record_age()

        in_core = self._call(age())
        return max(in_core, 0.0 if handed_off is None else time.monotonic() - handed_off)

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric since start, by name (local; no CloudWatch call)."""
        return self._core.metrics.snapshot()
