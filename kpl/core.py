"""The producer's core: one event loop's worth of streams, clients, bounds and background work.

The faces (:mod:`kpl.producer`) use only the public methods here.  A put does only what must
happen at the call: validation (:mod:`kpl.intake`), admission against the backpressure bounds, the
future, and an append to the stream's incoming burst.  The first put of a burst schedules one
wake-up of the loop, which hands the whole burst to the stream's intake, where the per-record work
is done in a few tight loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from kpl.accumulator import NO_LOG, SIZE, PendingRecord
from kpl.aws import async_client
from kpl.backpressure import Budget
from kpl.cloudwatch import CloudWatchPublisher
from kpl.config import ProducerConfig
from kpl.errors import (
    ArgumentTypeError,
    BufferFullError,
    ConfigurationError,
    InvalidArgumentError,
    ProducerClosedError,
    ProducerNotStartedError,
    RecordTooLargeError,
)
from kpl.futures import resolve_all
from kpl.intake import KNOWN_KEYS, Intake, pending_record, pending_records
from kpl.logs import get_logger
from kpl.metrics import ProducerMetrics
from kpl.records import RecordResult
from kpl.retry import Backoff
from kpl.sender import Sender
from kpl.setup_errors import client_setup_error
from kpl.shard_map import DEFAULT_MAX_RECORD_SIZE
from kpl.stream import Shared, StreamPipeline
from kpl.wire import install_put_records_codec

log = get_logger(__name__)

_known_key = KNOWN_KEYS.get
_record_size = itemgetter(SIZE)

#: The largest record Kinesis accepts on any stream (MaxRecordSizeInKiB tops out at 10 MiB).
ABSOLUTE_MAX_RECORD_SIZE = 10 * 1024 * 1024

#: A burst of puts that never yields to the event loop is routed every this many records, so that
#: aggregates fill and leave while the caller is still putting.
BURST = 1024


def clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The loop's clock, as a direct call when it is the standard one (time.monotonic)."""
    return time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time


def future_factory(loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.Future[Any]]:
    """``loop.create_future`` without its Python frame when the loop's is the standard one.

    The standard ``create_future`` is ``asyncio.Future(loop=loop)``; calling the C type through a
    ``partial`` skips a Python call.  ``asyncio.Future()`` (the running loop looked up) costs more
    than either: measured in CPython 3.11, ``Future()`` 260-430 ns, ``Future(loop=loop)`` 170-230 ns,
    the partial 165-280 ns (``python -m timeit``, a running loop set).
    """
    if type(loop).create_future is asyncio.BaseEventLoop.create_future:
        return functools.partial(asyncio.Future, loop=loop)
    return loop.create_future


def check_stream_name(stream_name: object) -> str:
    """A stream name (or ARN) as given; ArgumentTypeError when it is not a string, InvalidArgumentError when blank."""
    if not isinstance(stream_name, str):
        raise ArgumentTypeError(f"stream_name must be a str (a stream name or ARN), not {type(stream_name).__name__}")
    if not stream_name.strip():
        raise InvalidArgumentError(f"stream_name must be a non-empty string, got {stream_name!r}")
    return stream_name


#: Closes of producers dropped without close(), kept here so that the loop does not lose them.
_BACKGROUND: set[asyncio.Task[None]] = set()


def _not_started() -> asyncio.Future[RecordResult]:
    raise ProducerNotStartedError("the producer is not started")


class ProducerCore:
    """Everything the producer does, on one event loop.  Not thread-safe: the faces see to that."""

    def __init__(self, config: ProducerConfig, resolve: Callable[[list[Any], RecordResult], None] = resolve_all,
                 ) -> None:
        self.config = config
        self._resolve = resolve
        self.budget = Budget(config.max_outstanding_records, config.max_outstanding_bytes)
        self.metrics = ProducerMetrics(config.metrics_level, config.metrics_granularity)
        self._pipelines: dict[str, StreamPipeline] = {}
        #: The intakes of the pipelines, by stream name: what the hot path appends to.
        self._intakes: dict[str, Intake] = {}
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
        #: Records larger than this need a look at the stream's own limit.
        self.checked_size = min(DEFAULT_MAX_RECORD_SIZE, config.max_user_record_size or ABSOLUTE_MAX_RECORD_SIZE)
        self._clock: Callable[[], float] = time.monotonic
        self._create_future: Callable[[], asyncio.Future[RecordResult]] = _not_started
        #: A burst was handed on inside a put: the next awaited put lets the loop run once.
        self.yield_due = False

    async def start(self) -> None:
        """Build the clients and start the background work.

        A setup problem the clients show while being built (a missing profile, no or a malformed
        region) raises :class:`ConfigurationError` naming it and the fix (:mod:`kpl.setup_errors`);
        those that show only in the first calls (no credentials, an unknown region) fail records.
        """
        if self.started:
            return
        if self.closed:
            raise ProducerClosedError("a closed producer cannot be started again")
        loop = self._loop = asyncio.get_running_loop()
        config = self.config
        try:
            try:
                data_client = await self._stack.enter_async_context(
                    async_client("kinesis", config.kinesis_client_config()))
                control_client = await self._stack.enter_async_context(
                    async_client("kinesis", config.control_client_config()))
            except Exception as exc:
                problem = client_setup_error(exc)
                if problem is None:
                    raise
                raise ConfigurationError(f"{problem.code}: {problem.message}") from exc
            install_put_records_codec(data_client, cbor=config.cbor_protocol)
            self._sender = Sender(data_client, max_in_flight=config.max_connections,
                                  request_timeout=config.request_timeout_ms / 1000.0)
            self._shared = Shared(loop, config, control_client, self._sender, self.budget, self.metrics,
                                  Backoff(initial=0.1, maximum=max(1.0, min(10.0, config.record_ttl / 4))),
                                  self._resolve, region=control_client.meta.region_name,
                                  endpoint_url=control_client.meta.endpoint_url)
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
        self._clock = clock_of(loop)
        self._create_future = future_factory(loop)
        self.started = True

    def check_open(self) -> None:
        if self.closing:
            raise ProducerClosedError("the producer is closed (or closing) and accepts no more records")
        if not self.started:
            raise ProducerNotStartedError(
                "the producer is not started: use 'async with AsyncProducer(...)' or 'await producer.start()'")

    def _pipeline(self, stream_name: str) -> StreamPipeline:
        """The stream's pipeline, made on first use; raises when the producer does not take records."""
        pipeline = self._pipelines.get(stream_name)
        if pipeline is None:
            check_stream_name(stream_name)
        self.check_open()
        if pipeline is None:
            assert self._shared is not None
            pipeline = self._pipelines[stream_name] = StreamPipeline(stream_name, self._shared)
            self._intakes[stream_name] = pipeline.intake
        return pipeline

    # --- putting records ------------------------------------------------------------------------------

    def put(
        self, stream_name: str, data: object, partition_key: object, explicit_hash_key: object,
    ) -> asyncio.Future[RecordResult] | None:
        """Queue a record, on the loop's thread, if it can be admitted now; None when it must wait for
        room, or for the stream's limits to be known (the caller then takes a slow way, validating again).

        The hot path: everything a put needs, with no call that is not needed.
        """
        record: PendingRecord
        if type(data) is bytes and type(partition_key) is str and explicit_hash_key is None and \
                (key := _known_key(partition_key)) is not None:
            # The common put, already validated (see kpl.intake).
            record = (partition_key, None, data, key[0], key[1] + len(data), self._clock(), NO_LOG)
        else:
            record = pending_record(data, partition_key, explicit_hash_key, self._clock())
        intake = self._intakes.get(stream_name)
        if intake is None or self.closing:
            intake = self._pipeline(stream_name).intake
        size = record[SIZE]
        if size > self.checked_size or intake.held:
            return None
        budget = self.budget
        if budget.admitted_records < budget.records_limit and budget.admitted_bytes + size <= budget.bytes_limit:
            budget.admitted_records += 1  # Budget.try_admit's common case, without the call
            budget.admitted_bytes += size
        elif not budget.try_admit(size):
            return None
        incoming = intake.incoming
        future = self._create_future()
        if incoming:
            incoming.append(record)
            intake.incoming_futures.append(future)
            if len(incoming) >= BURST:
                intake.take_incoming()
                self.yield_due = True
        else:
            self._schedule_burst(intake)
            incoming.append(record)
            intake.incoming_futures.append(future)
        return future

    def _schedule_burst(self, intake: Intake) -> None:
        """The first put of a burst: its records are handed on when the loop next runs."""
        loop = self._loop
        assert loop is not None
        loop.call_soon(intake.take_incoming)

    async def put_after_waiting(
        self, stream_name: str, data: object, partition_key: object, explicit_hash_key: object,
    ) -> asyncio.Future[RecordResult]:
        """put's slow way: wait for the stream's limits when the record is large, then for room."""
        record = pending_record(data, partition_key, explicit_hash_key, self._clock())
        size = record[SIZE]
        if size > self.checked_size:
            await self.check_size(stream_name, size)
            self.check_open()
        await self._wait_for_map(stream_name)
        budget = self.budget
        if not budget.try_admit(size):
            await budget.wait_for_room(size)
            self.check_open()
            budget.admit(size)
        return self._enqueue(stream_name, record)

    async def _wait_for_map(self, stream_name: str) -> None:
        """While MAP_WAIT_RECORDS of the stream's records wait for its shard map, wait for it too."""
        intake = self._pipeline(stream_name).intake
        if intake.held:
            await intake.wait_until_released()
            self.check_open()

    def put_or_refuse(
        self, stream_name: str, data: object, partition_key: object, explicit_hash_key: object,
    ) -> asyncio.Future[RecordResult]:
        """put's other slow way: a large record against the stream's limit as far as known, and
        BufferFullError rather than waiting for room."""
        record = pending_record(data, partition_key, explicit_hash_key, self._clock())
        size = record[SIZE]
        limit, _ = self.size_limit(stream_name)
        if size > limit:
            raise self.too_large(stream_name, size)
        budget = self.budget
        if not budget.try_admit(size):
            raise BufferFullError(
                f"{budget.outstanding_records} records / {budget.outstanding_bytes} bytes outstanding "
                f"(bounds {budget.max_records} / {budget.max_bytes})"
            )
        return self._enqueue(stream_name, record)

    def _enqueue(self, stream_name: str, record: PendingRecord) -> asyncio.Future[RecordResult]:
        """The end of a slow put: the record joins the burst, which goes in at once."""
        intake = self._pipeline(stream_name).intake
        future: asyncio.Future[RecordResult] = self._create_future()
        intake.incoming.append(record)
        intake.incoming_futures.append(future)
        intake.take_incoming()
        return future

    def prepare(self, stream_name: str, records: Iterable[object]) -> list[PendingRecord]:
        """A batch of records validated at the call (and the stream name)."""
        batch = pending_records(records, self._clock())
        if stream_name not in self._intakes:
            check_stream_name(stream_name)
        return batch

    def put_many(self, stream_name: str, batch: list[PendingRecord]) -> list[asyncio.Future[RecordResult]]:
        """Queue, on the loop's thread, the leading records of ``batch`` that can be admitted now; their
        futures (fewer than the records when the rest must wait for room or for the stream's limits)."""
        intake = self._intakes.get(stream_name)
        if intake is None or self.closing:
            intake = self._pipeline(stream_name).intake
        if intake.held:
            return []
        sizes = list(map(_record_size, batch))
        if max(sizes, default=0) > self.checked_size:
            sizes = list(itertools.takewhile(lambda size: size <= self.checked_size, sizes))
        admitted = self.budget.try_admit_many(sizes)
        if not admitted:
            return []
        if not intake.incoming:
            self._schedule_burst(intake)
        make = self._create_future
        futures = [make() for _ in range(admitted)]
        intake.incoming += batch[:admitted] if admitted < len(batch) else batch
        intake.incoming_futures += futures
        if len(intake.incoming) >= BURST:
            intake.take_incoming()
        return futures

    async def put_many_after_waiting(
        self, stream_name: str, batch: list[PendingRecord], futures: list[asyncio.Future[RecordResult]],
    ) -> list[asyncio.Future[RecordResult]]:
        """put_many's slow way for the records it could not queue at once: the next one waiting as
        ``put_record`` does, then as many of the rest as go in at once, and so on."""
        budget = self.budget
        while len(futures) < len(batch):
            record = batch[len(futures)]
            size = record[SIZE]
            if size > self.checked_size:
                await self.check_size(stream_name, size)
                self.check_open()
            await self._wait_for_map(stream_name)
            if not budget.try_admit(size):
                await budget.wait_for_room(size)
                self.check_open()
                budget.admit(size)
            futures.append(self._enqueue(stream_name, record))
            futures += self.put_many(stream_name, batch[len(futures):])
        return futures

    def add_burst(self, stream_name: str, records: list[PendingRecord], futures: list[Any]) -> None:
        """Records validated and admitted elsewhere (the sync face), with their futures, oldest first."""
        intake = self._intakes.get(stream_name)
        if intake is None:
            intake = self._pipeline(stream_name).intake
        intake.add_burst(records, futures)

    def size_limit(self, stream_name: str) -> tuple[int, bool]:
        """(limit for the stream's records, whether it is final) — readable from any thread."""
        pipeline = self._pipelines.get(stream_name)
        if pipeline is not None and pipeline.limits_known:
            return pipeline.record_size_limit(), True
        cap = self.config.max_user_record_size
        default = DEFAULT_MAX_RECORD_SIZE if cap is None else min(cap, DEFAULT_MAX_RECORD_SIZE)
        return default, cap is not None and cap <= DEFAULT_MAX_RECORD_SIZE

    def too_large(self, stream_name: str, size: int) -> RecordTooLargeError:
        """The error for a record of ``size`` bytes over the limit that applies to it, named."""
        limit, final = self.size_limit(stream_name)
        pipeline = self._pipelines.get(stream_name)
        stream_limit = pipeline.discovery.max_record_size if pipeline is not None else None
        cap = self.config.max_user_record_size
        if cap is not None and cap == limit and (stream_limit is None or cap < stream_limit):
            which = f"the {limit}-byte maximum record size set by the producer's MaxUserRecordSize"
        elif final and stream_limit is not None:
            which = f"the {limit}-byte maximum record size of stream {stream_name}"
        else:
            which = (f"the {limit}-byte default maximum record size (stream {stream_name}'s own is not known "
                     "yet: put_record, unlike put_record_nowait, waits for it)")
        return RecordTooLargeError(f"record is {size} bytes (partition key + data), over {which}")

    async def check_size(self, stream_name: str, size: int) -> None:
        """Wait for the stream's limits when a record is over the default, then check against them."""
        limit, final = self.size_limit(stream_name)
        if size > limit and not final:
            await self._pipeline(stream_name).wait_for_limits()
            limit, _ = self.size_limit(stream_name)
        if size > limit:
            raise self.too_large(stream_name, size)

    # --- the producer as a whole ----------------------------------------------------------------------

    @property
    def outstanding_records(self) -> int:
        return self.budget.outstanding_records

    @property
    def outstanding_bytes(self) -> int:
        return self.budget.outstanding_bytes

    def check_not_closed(self, call: str) -> None:
        if self.closing:
            raise ProducerClosedError(f"{call} on a closed (or closing) producer: close() has sent what it held")

    def flush(self, stream_name: str | None = None) -> None:
        """Send everything buffered now (for one stream, or all)."""
        self.check_not_closed("flush()")
        self._flush(stream_name)

    def _flush(self, stream_name: str | None = None) -> None:
        for name, pipeline in list(self._pipelines.items()):
            if stream_name is None or name == stream_name:
                pipeline.flush()

    async def flush_all(self) -> None:
        """Send everything now; return once every outstanding record has its result."""
        self.check_not_closed("flush_all()")
        self._flush()
        await self.budget.wait_idle()

    def oldest_record_age(self) -> float:
        arrivals = [a for p in self._pipelines.values() if (a := p.oldest_arrival()) is not None]
        if not arrivals or self._loop is None:
            return 0.0
        return max(0.0, self._loop.time() - min(arrivals))

    def close_in_background(self, then: Callable[[], object] | None = None) -> None:
        """Close on the producer's loop without waiting (for a face dropped unclosed); then ``then()``.

        Callable from any thread; does nothing once the loop is closed.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def close() -> None:
            try:
                await self.close()
            finally:
                if then is not None:
                    then()

        def schedule() -> None:
            task = loop.create_task(close(), name="kpl-close-dropped-producer")
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(schedule)

    def metrics_snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return self.metrics.snapshot()

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
                for pipeline in list(self._pipelines.values()):
                    pipeline.expire(now)
                    received = pipeline.take_received()
                    if received and metrics.enabled:
                        metrics.received(pipeline.stream_name, received)
                if metrics.enabled:
                    metrics.pending(None, self.budget.outstanding_records)
            except Exception:
                log.exception("producer housekeeping failed")

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting records, deliver what is outstanding (up to ``timeout``), release everything.

        When ``timeout`` runs out, records not in a request fail at once (:meth:`StreamPipeline.give_up`);
        requests in flight are awaited to their own end (at most RequestTimeout), so that what they
        carried is reported as it happened.  The final CloudWatch upload shares the same deadline:
        with a timeout, close returns within ``timeout`` + RequestTimeout.
        """
        if self.closing:
            if self.started:
                await self._shut_down.wait()  # a close already under way
            return
        self.closing = True
        if not self.started:
            self.closed = True
            return
        assert self._loop is not None
        request_timeout = self.config.request_timeout_ms / 1000.0
        deadline = None if timeout is None else self._loop.time() + max(0.0, timeout)
        try:
            self._flush()
            try:
                async with asyncio.timeout_at(deadline):
                    await self.budget.wait_idle()
            except TimeoutError:
                await self._give_up(f"close(timeout={timeout:g}) ran out of time")
            except asyncio.CancelledError:
                await self._give_up("close() was cancelled", wait_for_requests=False)
                raise
        finally:
            await self._shutdown(None if deadline is None else deadline + request_timeout)
            self._shut_down.set()

    async def _give_up(self, reason: str, *, wait_for_requests: bool = True) -> None:
        """Resolve every record not in a request now; then wait for the requests in flight.

        Those end by their own RequestTimeout; should one not (a bug, or a stuck transport), it is
        cancelled, and its records' outcome is unknown.
        """
        assert self._sender is not None
        sender = self._sender
        sender.close_backlog()
        for pipeline in self._pipelines.values():
            pipeline.give_up(reason)
        if wait_for_requests:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sender.request_timeout + 1.0):
                    await sender.wait_idle()
        await sender.cancel_all()

    async def _shutdown(self, final_upload_until: float | None) -> None:
        """Stop the background work and release the clients; the last metrics upload ends by
        ``final_upload_until`` (loop time; None: within RequestTimeout), or is dropped."""
        assert self._loop is not None
        if final_upload_until is None:
            final_upload_until = self._loop.time() + self.config.request_timeout_ms / 1000.0
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        if self.budget.outstanding_records:
            # Every path resolves its records; this would be a bug, and it must not pass silently.
            log.error("records still outstanding at shutdown", outstanding=self.budget.outstanding_records)
            await self._give_up("the producer shut down with the record outstanding", wait_for_requests=False)
        for pipeline in self._pipelines.values():
            await pipeline.close()
        if self._publisher is not None:
            await self._publisher.close(timeout=max(0.0, final_upload_until - self._loop.time()))
        await self._stack.aclose()
        self.closed = True
