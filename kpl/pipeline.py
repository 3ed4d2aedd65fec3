"""One stream's path through the producer, and the decisions taken on every PutRecords outcome.

    put -> [waiting for the shard map] -> Aggregator (per predicted shard)
        -> shard queue + ShardLimiter -> Collector (PutRecords batch) -> Sender
        -> delivered (resolve) | wrong shard (re-send those records) | retry | fail

Every user record is in exactly one place at a time, and leaves the pipeline only through
``_deliver`` or ``_fail``, which resolve its future and release its share of the backpressure
budget.  Retries go back to the *front* of their shard's queue, so a retried record is never sent
after a younger record of its shard that was queued behind it; with ``ordered_per_shard`` a shard
also has at most one Kinesis record in flight, which makes the order per shard strict.

A Kinesis record retried under an unchanged shard map is re-sent as it is.  When the map changed,
or some of its records expired, its live records are predicted again and re-aggregated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from kpl.accumulator import (
    ARRIVAL,
    DATA,
    EXPLICIT_HASH_KEY,
    HASH_KEY,
    LOG,
    PARTITION_KEY,
    SIZE,
    Aggregator,
    Collector,
    KinesisRecord,
    PendingRecord,
    regroup,
    seal,
    split,
    with_log,
)
from kpl.backpressure import Budget
from kpl.config import ProducerConfig
from kpl.futures import INVALID_STATE, resolve_all
from kpl.hashing import ShardRanges
from kpl.limiter import ShardLimiter
from kpl.logs import get_logger
from kpl.metrics import ProducerMetrics
from kpl.records import (
    EXPIRED,
    PRODUCER_CLOSED,
    WRONG_SHARD,
    AttemptLog,
    RecordError,
    RecordResult,
    UserRecord,
)
from kpl.retry import Backoff, ErrorKind, classify, error_code, error_message
from kpl.sender import ResponseOutcome, Sender, read_response
from kpl.shard_map import DEFAULT_MAX_RECORD_SIZE, ShardMap, ShardMapRefresher, describe_stream_limits

log = get_logger(__name__)

_arrival = itemgetter(ARRIVAL)
_size = itemgetter(SIZE)
_hash_key = itemgetter(HASH_KEY)
_RESOURCE_NOT_FOUND = "ResourceNotFoundException"


def clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The loop's clock, as a direct call when it is the standard one (time.monotonic)."""
    return time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time


@dataclass(slots=True)
class Shared:
    """What the stream pipelines of one producer share."""

    loop: asyncio.AbstractEventLoop
    config: ProducerConfig
    control_client: Any
    sender: Sender
    budget: Budget
    metrics: ProducerMetrics
    backoff: Backoff
    #: Sets one result on many futures of the producer's face (skipping cancelled ones).
    resolve: Callable[[list[Any], RecordResult], None] = resolve_all


class _ShardState:
    """The queue of sealed Kinesis records of one predicted shard, waiting for its rate limiter."""

    __slots__ = ("busy", "limiter", "queue", "timer")

    def __init__(self, limiter: ShardLimiter | None) -> None:
        self.queue: deque[KinesisRecord] = deque()
        #: None for records without a predicted shard: the KPL does not limit those either.
        self.limiter = limiter
        #: Ordered mode: a Kinesis record of this shard is between the queue and its outcome.
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None


class StreamPipeline:
    """Everything the producer does for one stream."""

    def __init__(self, stream_name: str, shared: Shared) -> None:
        self.stream_name = stream_name
        self.request_target = {"StreamARN": stream_name} if stream_name.startswith("arn:") else {
            "StreamName": stream_name}
        self._shared = shared
        self.loop = loop = shared.loop
        config = shared.config
        self._ordered = config.ordered_per_shard
        self._rate_limit = float(config.rate_limit)
        self._max_buffered = config.record_max_buffered_time
        self._ttl = config.record_ttl
        self._aggregate = config.aggregation_enabled
        #: Aggregates get a little extra time in the collector to share a request (KPL PR #280).
        self._collect_extra = min(0.05, 0.2 * self._max_buffered) if self._aggregate else 0.0
        self.map = ShardMap(stream_name)
        self._refresher = ShardMapRefresher(self.map, shared.control_client, self._map_refreshed, self._map_failed)
        self._aggregator = Aggregator(
            loop, self._sealed, max_size=config.aggregation_max_size, max_count=config.aggregation_max_count,
            ttl=self._ttl, max_buffered=self._max_buffered,
        )
        self._collector = Collector(
            loop, self._batch_ready, max_count=config.collection_max_count, max_size=config.collection_max_size,
        )
        self._shards: dict[str | None, _ShardState] = {}
        #: Records (and their futures) put since the last :meth:`take_incoming`.  The async face
        #: appends to these lists and schedules one ``take_incoming`` per burst.
        self.incoming: list[PendingRecord] = []
        self.incoming_futures: list[Any] = []
        #: Records (and their futures) that arrived before the shard map and the stream's limits.
        self._waiting: list[PendingRecord] = []
        self._waiting_futures: list[Any] = []
        #: Records that reached the wrong shard, waiting for the refreshed map to be sent again.
        self._misrouted: list[PendingRecord] = []
        self._misrouted_futures: list[Any] = []
        #: Entries delivered to a shard the map does not know yet: (record, shard, sequence number).
        self._unverified: list[tuple[KinesisRecord, str, str]] = []
        #: Batches handed to the sender and not answered yet, by id.
        self._in_flight: dict[int, list[KinesisRecord]] = {}
        #: Kinesis records waiting out a retry backoff, by timer.
        self._held: dict[asyncio.TimerHandle, list[KinesisRecord]] = {}
        self._cap = config.max_user_record_size
        self.max_record_size: int | None = None
        self._limits_known: asyncio.Future[None] = loop.create_future()
        self._describe_task: asyncio.Task[None] | None = None
        #: After ResourceNotFound: (error, until) during which new records fail at once.
        self._missing: tuple[RecordError, float] | None = None
        self._last_map_error: str | None = None
        #: The map and the stream's limits are known: records are routed as they arrive.
        self._ready = False
        self._ranges = ShardRanges(())
        self.received = 0
        self._start_discovery()

    # --- discovering the stream -------------------------------------------------------------------

    def _start_discovery(self) -> None:
        now = self.loop.time()
        if self._limits_known.done():
            self._limits_known = self.loop.create_future()
        self._describe_task = self.loop.create_task(self._describe(), name=f"kpl-describe:{self.stream_name}")
        self._refresher.request(now)

    async def _describe(self) -> None:
        try:
            max_size, service_assigns_keys = await describe_stream_limits(self._shared.control_client,
                                                                          self.stream_name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if error_code(exc) == _RESOURCE_NOT_FOUND:
                self._stream_missing(exc)
                return
            # Narrow IAM policies may allow PutRecords but not DescribeStreamSummary.
            log.warning("DescribeStreamSummary failed; assuming the default 1 MiB record limit",
                        stream=self.stream_name, error=error_code(exc), detail=error_message(exc))
            max_size, service_assigns_keys = DEFAULT_MAX_RECORD_SIZE, False
        self.max_record_size = max_size
        if service_assigns_keys and self._aggregate:
            # Kinesis places records itself on such streams, so an aggregate's sub-records could
            # land anywhere: the KPL 1.1 does not aggregate for them either.
            log.info("stream assigns partition keys itself; aggregation is off for it", stream=self.stream_name)
            self._aggregate = False
            self._collect_extra = 0.0
        if not self._limits_known.done():
            self._limits_known.set_result(None)
        self._route_waiting()

    @property
    def limits_known(self) -> bool:
        return self._limits_known.done()

    async def wait_for_limits(self) -> None:
        await asyncio.shield(self._limits_known)

    def record_size_limit(self) -> int:
        """Partition key + data bytes a record may have (the stream's limit, capped by the config)."""
        limit = self.max_record_size or DEFAULT_MAX_RECORD_SIZE
        return limit if self._cap is None else min(limit, self._cap)

    def _stream_missing(self, error: BaseException) -> None:
        code, message = error_code(error), error_message(error)
        delay = self.map.refresh_failed()
        self._missing = (RecordError(code, message), self.loop.time() + delay)
        self._ready = False
        waiting, futures = self._take_waiting()
        self._fail(waiting, futures, (), code, message, retryable=False, shard_id=None)
        if not self._limits_known.done():
            self._limits_known.set_result(None)

    def _map_refreshed(self, changed: bool) -> None:
        self._missing = None
        self._last_map_error = None
        if changed:
            self._aggregator.generation = self.map.generation
            if self.map.ranges is not None:
                self._ranges = self.map.ranges
            self._reroute_closed_shards()
        self._route_waiting()
        self._resend_parked()

    def _resend_parked(self) -> None:
        """Records that waited for a map refresh go out again, with the map there is now."""
        if self._misrouted:
            misrouted, futures = self._misrouted, self._misrouted_futures
            self._misrouted, self._misrouted_futures = [], []
            self._requeue_records(misrouted, futures, self.loop.time())
        if self._unverified:
            unverified, self._unverified = self._unverified, []
            for kr, shard_id, sequence_number in unverified:
                self._verify(kr, shard_id, sequence_number)

    def _map_failed(self, error: BaseException) -> None:
        code = error_code(error)
        self._last_map_error = f"{code}: {error_message(error)}"
        if code == _RESOURCE_NOT_FOUND:
            self._stream_missing(error)
        elif self._waiting:
            self._refresher.retry_later(self.loop.time())
        self._resend_parked()

    def _take_waiting(self) -> tuple[list[PendingRecord], list[Any]]:
        waiting, futures = self._waiting, self._waiting_futures
        self._waiting, self._waiting_futures = [], []
        return waiting, futures

    def _route_waiting(self) -> None:
        ranges = self.map.ranges
        if ranges is None or not self._limits_known.done() or self._missing is not None:
            return
        self._ranges = ranges
        self._ready = True
        if not self._waiting:
            return
        limit = self.record_size_limit()
        waiting, futures = self._take_waiting()
        if max(map(_size, waiting)) <= limit:  # the common case, checked without a Python call per record
            self._route_ready(waiting, futures)
            return
        (fitting, fitting_futures), too_large = split(waiting, futures, lambda record: record[SIZE] <= limit)
        self._route_ready(fitting, fitting_futures)
        self._fail(*too_large, (), "ValidationException",
                   f"record is larger than the stream's maximum record size of {limit} bytes",
                   retryable=False, shard_id=None)

    # --- the way in ---------------------------------------------------------------------------------

    def take_incoming(self) -> None:
        """Take the records the async face appended to :attr:`incoming` since the last call."""
        records = self.incoming
        if records:
            futures = self.incoming_futures
            self.incoming, self.incoming_futures = [], []
            self.add_burst(records, futures)

    def add_burst(self, records: list[PendingRecord], futures: list[Any]) -> None:
        """Take validated, admitted records and their futures, oldest first: the hot path."""
        self.received += len(records)
        if self._ready:
            self._route_ready(records, futures)
        else:
            self._add_before_map(records, futures)

    def _route_ready(self, records: list[PendingRecord], futures: list[Any]) -> None:
        """Predict each record's shard and pass it on: into its shard's aggregate, or alone."""
        shard_ids = self._ranges.shards_for(map(_hash_key, records))
        if not self._aggregate:
            for record, future, shard_id in zip(records, futures, shard_ids, strict=True):
                self._route(record, future, shard_id)
            return
        # Grouped by shard first (order kept within each), so that each shard's aggregate takes its
        # records in one call and the loop here is the only per-record Python work besides the encoder's.
        groups: dict[str | None, tuple[list[PendingRecord], list[Any]]] = {}
        group_of = groups.get
        for record, future, shard_id in zip(records, futures, shard_ids, strict=True):
            group = group_of(shard_id)
            if group is None:
                group = groups[shard_id] = ([], [])
            group[0].append(record)
            group[1].append(future)
        add_group = self._aggregator.add_group
        for shard_id, (group_records, group_futures) in groups.items():
            if shard_id is None:
                for record, future in zip(group_records, group_futures, strict=True):
                    self._route(record, future, None)
            else:
                add_group(shard_id, group_records, group_futures)

    def _route(self, record: PendingRecord, future: Any, shard_id: str | None) -> None:
        if shard_id is None:
            # A hole in the map (a reshard in progress): send it alone, routed by its own hash key.
            self._refresher.request(self.loop.time())
        elif self._aggregate:
            self._aggregator.add(record, future, shard_id)
            return
        self._sealed(seal([record], [future], None, shard_id, self.map.generation,
                          record[ARRIVAL] + self._max_buffered, self._ttl, record[SIZE]))

    def _add_before_map(self, records: list[PendingRecord], futures: list[Any]) -> None:
        missing = self._missing
        if missing is not None:
            error, until = missing
            if self.loop.time() < until:
                self._fail(records, futures, (), error.code, error.message, retryable=False, shard_id=None)
                return
            self._missing = None
            self._start_discovery()
        self._waiting += records
        self._waiting_futures += futures

    # --- limiter stage ----------------------------------------------------------------------------------

    def _state(self, shard_id: str | None) -> _ShardState:
        state = self._shards.get(shard_id)
        if state is None:
            limiter = None if shard_id is None else ShardLimiter(self._rate_limit, self.loop.time())
            state = self._shards[shard_id] = _ShardState(limiter)
        return state

    def _sealed(self, kr: KinesisRecord) -> None:
        state = self._shards.get(kr.shard_id) or self._state(kr.shard_id)
        if state.queue or state.busy:
            state.queue.append(kr)
            self._drain(state)
        elif state.limiter is None or state.limiter.try_take(kr.size, self.loop.time()):
            self._release(state, kr)
        else:
            state.queue.append(kr)
            self._schedule_drain(state)

    def _release(self, state: _ShardState, kr: KinesisRecord) -> None:
        if self._ordered:
            state.busy = True
        self._collector.add(kr, kr.deadline + self._collect_extra)

    def _drain(self, state: _ShardState) -> None:
        queue = state.queue
        limiter = state.limiter
        now = self.loop.time()
        while queue and not state.busy:
            kr = queue[0]
            if limiter is not None and not limiter.try_take(kr.size, now):
                self._schedule_drain(state)
                return
            queue.popleft()
            self._release(state, kr)

    def _schedule_drain(self, state: _ShardState) -> None:
        if state.timer is not None or not state.queue:
            return
        assert state.limiter is not None
        delay = state.limiter.delay(state.queue[0].size, self.loop.time())
        state.timer = self.loop.call_later(max(delay, 0.001), self._drain_timer, state)

    def _drain_timer(self, state: _ShardState) -> None:
        state.timer = None
        self._drain(state)

    # --- collector -> sender ----------------------------------------------------------------------------

    def _batch_ready(self, batch: list[KinesisRecord]) -> None:
        self._in_flight[id(batch)] = batch
        self._shared.sender.submit(self, batch)

    def _finish_batch(self, batch: list[KinesisRecord]) -> bool:
        """Forget an answered batch; False when it was already accounted for (aborted)."""
        return self._in_flight.pop(id(batch), None) is not None

    # --- outcomes -----------------------------------------------------------------------------------------

    def on_response(self, batch: list[KinesisRecord], response: dict[str, Any], start: float, end: float) -> None:
        if not self._finish_batch(batch):
            return
        try:
            outcome = read_response(batch, response, self.map, start, end)
        except ValueError as exc:
            self._request_failed(batch, exc, start, end)
            return
        self._report_request(batch, outcome, start, end)
        if outcome.stale_map:
            stale = next((kr for kr, *_ in outcome.misrouted), None) or next(
                (kr for kr, *_ in outcome.unverified), None) or batch[0]
            self._refresher.request(start, stale.shard_id)
        for kr, shard_id, sequence_number in outcome.delivered:
            self._deliver(kr, kr.records, kr.futures, shard_id, sequence_number)
        for kr, shard_id, sequence_number in outcome.misrouted:
            self._verify(kr, shard_id, sequence_number)
        for entry in outcome.unverified:
            if self.map.generation != entry[0].generation or not self._refresher.running:
                self._verify(*entry)
            else:
                self._unverified.append(entry)
        now = self.loop.time()
        retry_now: list[KinesisRecord] = []
        retry_later: list[KinesisRecord] = []
        for kr, code, message, kind in outcome.failed:
            if kind is ErrorKind.THROTTLED:
                state = self._shards.get(kr.shard_id)
                if state is not None and state.limiter is not None:
                    state.limiter.throttled(now)
                if self._shared.config.fail_if_throttled:
                    self._fail_kinesis_record(kr, code, message, retryable=True)
                else:
                    retry_now.append(kr)
            elif kind is ErrorKind.FATAL:
                self._fail_kinesis_record(kr, code, message, retryable=False)
            else:
                kr.request_failures += 1
                retry_later.append(kr)
        if retry_now:
            self._requeue(retry_now)
        if retry_later:
            self._hold(retry_later)
        self._free_shards(batch, retry_later)

    def on_request_error(self, batch: list[KinesisRecord], error: BaseException, start: float, end: float) -> None:
        if self._finish_batch(batch):
            self._request_failed(batch, error, start, end)

    def _request_failed(self, batch: list[KinesisRecord], error: BaseException, start: float, end: float) -> None:
        code = error_code(error)
        message = error_message(error)
        if isinstance(error, TimeoutError) and not str(error):
            code, message = "RequestTimeout", f"no response within {self._shared.sender.request_timeout:g} s"
        kind = classify(error)
        for kr in batch:
            kr.log.append((start, end, code, message))
        metrics = self._shared.metrics
        if metrics.enabled:
            metrics.request(self.stream_name, (end - start) * 1000.0, len(batch), sum(len(kr.records) for kr in batch))
            for shard_id, krs in _by_shard(batch).items():
                metrics.errors(self.stream_name, shard_id, code, len(krs))
        held: list[KinesisRecord] = []
        if kind is ErrorKind.FATAL or (kind is ErrorKind.THROTTLED and self._shared.config.fail_if_throttled):
            for kr in batch:
                self._fail_kinesis_record(kr, code, message, retryable=kind is not ErrorKind.FATAL)
            if code == _RESOURCE_NOT_FOUND:
                self._refresher.request(start)
        else:
            if kind is ErrorKind.THROTTLED:
                now = self.loop.time()
                for kr in batch:
                    state = self._shards.get(kr.shard_id)
                    if state is not None and state.limiter is not None:
                        state.limiter.throttled(now)
            for kr in batch:
                kr.request_failures += 1
            held = batch
            self._hold(batch)
            log.debug("PutRecords failed; retrying after backoff", stream=self.stream_name, error=code,
                      detail=message, records=len(batch))
        self._free_shards(batch, held)

    def on_cancelled(self, batch: list[KinesisRecord]) -> None:
        if not self._finish_batch(batch):
            return
        for kr in batch:
            self._fail_kinesis_record(kr, PRODUCER_CLOSED, "the producer closed before the record was sent",
                                      retryable=True)

    def on_expired_in_backlog(self, batch: list[KinesisRecord], expired: list[KinesisRecord]) -> None:
        """Kinesis records that expired while their batch waited for a connection (and left it)."""
        if not batch:
            self._finish_batch(batch)
        self._requeue(expired)
        self._free_shards(expired, ())

    def _free_shards(self, batch: Iterable[KinesisRecord], held: Iterable[KinesisRecord]) -> None:
        """Ordered mode: a shard whose Kinesis record has an outcome may send its next one."""
        if not self._ordered:
            return
        held_shards = {kr.shard_id for kr in held}
        for shard_id in {kr.shard_id for kr in batch} - held_shards:
            state = self._shards.get(shard_id)
            if state is not None:
                state.busy = False
                self._drain(state)

    def _report_request(self, batch: list[KinesisRecord], outcome: ResponseOutcome, start: float, end: float) -> None:
        """The KPL's per-request metrics, summarised per shard (never one metric call per record)."""
        metrics = self._shared.metrics
        if not metrics.enabled:
            return
        stream = self.stream_name
        metrics.request(stream, (end - start) * 1000.0, len(batch), sum(len(kr.records) for kr in batch))
        reports: dict[str | None, _ShardReport] = {}
        for kr, _, _ in outcome.delivered:
            report = reports.get(kr.shard_id) or reports.setdefault(kr.shard_id, _ShardReport())
            report.put(kr, start)
            report.delivered(kr)
        for kr, _, _ in (*outcome.misrouted, *outcome.unverified):  # users reported once verified
            report = reports.get(kr.shard_id) or reports.setdefault(kr.shard_id, _ShardReport())
            report.put(kr, start)
        for kr, code, _, _ in outcome.failed:
            report = reports.get(kr.shard_id) or reports.setdefault(kr.shard_id, _ShardReport())
            report.kinesis_failed += 1
            report.errors[code] = report.errors.get(code, 0) + 1
        for shard_id, report in reports.items():
            report.emit(metrics, stream, shard_id)

    def _report_delivered(self, kr: KinesisRecord, records: list[PendingRecord], shard_id: str | None) -> None:
        """User-record metrics for records delivered outside the per-request summary (after a check)."""
        metrics = self._shared.metrics
        if metrics.enabled:
            metrics.user_records(self.stream_name, shard_id, len(records), 0, sum(map(_size, records)))

    # --- resolving --------------------------------------------------------------------------------------

    def _deliver(
        self, kr: KinesisRecord, records: list[PendingRecord], futures: list[Any], shard_id: str,
        sequence_number: str,
    ) -> None:
        kr_log = tuple(kr.log)
        if not kr.regrouped:
            # The common case: one result for all, resolved in one call.
            self._shared.resolve(futures, RecordResult(True, shard_id, sequence_number, kr_log, records[0][ARRIVAL]))
            size = kr.user_bytes if records is kr.records else sum(map(_size, records))
        else:
            shared: RecordResult | None = None
            size = 0
            for record, future in zip(records, futures, strict=True):
                size += record[SIZE]
                if record[LOG]:  # regrouped on a retry: it has attempts of its own
                    result = RecordResult(True, shard_id, sequence_number, record[LOG] + kr_log, record[ARRIVAL])
                else:
                    if shared is None:
                        shared = RecordResult(True, shard_id, sequence_number, kr_log, record[ARRIVAL])
                    result = shared
                with contextlib.suppress(*INVALID_STATE):  # the caller cancelled its future
                    future.set_result(result)
        self._shared.budget.release(len(records), size)

    def _fail_kinesis_record(self, kr: KinesisRecord, code: str, message: str, *, retryable: bool) -> None:
        self._fail(kr.records, kr.futures, tuple(kr.log), code, message, retryable=retryable, shard_id=kr.shard_id)

    def _fail(
        self, records: list[PendingRecord], futures: list[Any], kr_log: AttemptLog, code: str, message: str, *,
        retryable: bool, shard_id: str | None,
    ) -> None:
        if not records:
            return
        error = RecordError(code, message)
        stream = self.stream_name
        size = 0
        for record, future in zip(records, futures, strict=True):
            size += record[SIZE]
            result = RecordResult(
                False, None, None, record[LOG] + kr_log, record[ARRIVAL], error,
                UserRecord(stream, record[PARTITION_KEY], record[EXPLICIT_HASH_KEY], record[DATA]), retryable,
            )
            try:  # noqa: SIM105
                future.set_result(result)
            except INVALID_STATE:
                pass
        self._shared.budget.release(len(records), size)
        metrics = self._shared.metrics
        if metrics.enabled:
            metrics.user_records(stream, shard_id, 0, len(records), 0)
            if code == EXPIRED:
                metrics.expired(stream, len(records))

    # --- retries -----------------------------------------------------------------------------------------

    def _hold(self, krs: list[KinesisRecord]) -> None:
        """Retry after a jittered exponential backoff, never past the records' expiry."""
        now = self.loop.time()
        failures = max(kr.request_failures for kr in krs)
        delay = self._shared.backoff.delay(failures)
        delay = max(0.0, min(delay, min(kr.expiry for kr in krs) - now))
        timer = self.loop.call_later(delay, self._release_held, krs)
        self._held[timer] = krs

    def _release_held(self, krs: list[KinesisRecord]) -> None:
        for timer, held in list(self._held.items()):
            if held is krs:
                del self._held[timer]
                break
        else:
            return
        self._requeue(krs)
        self._free_shards(krs, ())

    def _requeue(self, krs: list[KinesisRecord]) -> None:
        """Put failed Kinesis records back at the front of their shards' queues, oldest first.

        Expired user records fail here; records whose prediction is no longer valid (the map
        changed under them) are predicted again and re-aggregated.
        """
        now = self.loop.time()
        generation = self.map.generation
        deadline = now + self._max_buffered / 2
        ttl = self._ttl
        fronts: dict[str | None, list[KinesisRecord]] = {}
        loose: list[PendingRecord] = []
        loose_futures: list[Any] = []
        for kr in krs:
            kr_log = tuple(kr.log)
            if kr.expiry <= now:
                (alive, alive_futures), (expired, expired_futures) = split(
                    kr.records, kr.futures, lambda record: record[ARRIVAL] + ttl > now)
                self._fail(expired, expired_futures, kr_log, EXPIRED, _expiry_message(kr_log), retryable=True,
                           shard_id=kr.shard_id)
                loose.extend(with_log(record, kr_log) for record in alive)
                loose_futures.extend(alive_futures)
            elif kr.generation != generation and (kr.shard_id is None or not self.map.is_open(kr.shard_id)):
                loose.extend(with_log(record, kr_log) for record in kr.records)
                loose_futures.extend(kr.futures)
            else:
                kr.deadline = deadline
                fronts.setdefault(kr.shard_id, []).append(kr)
        if loose:
            self._regroup_into(fronts, loose, loose_futures, deadline)
        self._push_front(fronts)

    def _requeue_records(self, records: list[PendingRecord], futures: list[Any], now: float) -> None:
        """Send user records again (their logs already hold their attempts), ahead of younger ones."""
        ttl = self._ttl
        (alive, alive_futures), (expired, expired_futures) = split(
            records, futures, lambda record: record[ARRIVAL] + ttl > now)
        self._fail(expired, expired_futures, (), EXPIRED, "record reached its RecordTtl before it was delivered",
                   retryable=True, shard_id=None)
        if not self.map.ready:
            self._waiting[:0] = alive
            self._waiting_futures[:0] = alive_futures
            return
        fronts: dict[str | None, list[KinesisRecord]] = {}
        self._regroup_into(fronts, alive, alive_futures, now + self._max_buffered / 2)
        self._push_front(fronts)

    def _regroup_into(
        self, fronts: dict[str | None, list[KinesisRecord]], records: list[PendingRecord], futures: list[Any],
        deadline: float,
    ) -> None:
        by_shard: dict[str | None, tuple[list[PendingRecord], list[Any]]] = {}
        for record, future in zip(records, futures, strict=True):
            group = by_shard.setdefault(self.map.shard_for(record[HASH_KEY]), ([], []))
            group[0].append(record)
            group[1].append(future)
        config = self._shared.config
        for shard_id, (group_records, group_futures) in by_shard.items():
            fronts.setdefault(shard_id, []).extend(regroup(
                group_records, group_futures, shard_id, self.map.generation,
                aggregate=self._aggregate and shard_id is not None, max_size=config.aggregation_max_size,
                max_count=config.aggregation_max_count, deadline=deadline, ttl=self._ttl,
            ))

    def _push_front(self, fronts: dict[str | None, list[KinesisRecord]]) -> None:
        for shard_id, krs in fronts.items():
            state = self._state(shard_id)
            state.queue.extendleft(reversed(krs))
            if state.timer is None:
                self._drain(state)

    def _verify(self, kr: KinesisRecord, shard_id: str, sequence_number: str) -> None:
        """Deliver the user records of an entry that lie in the range of the shard that took it.

        The others (the shard map was stale) go out again: at once when the map has already changed
        since their prediction, otherwise after the refresh that is under way.
        """
        hash_range = self.map.range_of(shard_id)
        if hash_range is None:
            inside: tuple[list[PendingRecord], list[Any]] = ([], [])
            outside = (kr.records, kr.futures)
        else:
            low, high = hash_range.start, hash_range.end
            inside, outside = split(kr.records, kr.futures, lambda record: low <= record[HASH_KEY] <= high)
        if inside[0]:
            self._deliver(kr, inside[0], inside[1], shard_id, sequence_number)
            self._report_delivered(kr, inside[0], shard_id)
        if not outside[0]:
            return
        start, end, _, _ = kr.log[-1]
        kr_log = (*kr.log[:-1], (start, end, WRONG_SHARD,
                                 f"delivered to {shard_id}, whose hash-key range does not contain the record"))
        records = [with_log(record, kr_log) for record in outside[0]]
        if self.map.generation == kr.generation and self._refresher.running:
            self._misrouted.extend(records)
            self._misrouted_futures.extend(outside[1])
        else:
            self._requeue_records(records, outside[1], self.loop.time())

    def _reroute_closed_shards(self) -> None:
        """After a map change, records queued or aggregating for shards that closed are predicted again."""
        closed: set[str | None] = {
            shard_id for shard_id in self._shards if shard_id is not None and not self.map.is_open(shard_id)}
        closed.update(s for s in self._aggregator.shards() if s is not None and not self.map.is_open(s))
        if not closed:
            return
        krs: list[KinesisRecord] = []
        for shard_id in closed:
            state = self._shards.get(shard_id)
            if state is None:
                continue
            krs.extend(state.queue)
            state.queue.clear()
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
            if not state.busy:
                del self._shards[shard_id]
        records, futures = self._aggregator.take(closed)
        if krs:
            self._requeue(krs)
        if records:
            self._requeue_records(records, futures, self.loop.time())

    # --- housekeeping, flushing, shutdown -------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Fail records that waited past their TTL before reaching a request."""
        ttl = self._ttl
        if self._waiting and self._waiting[0][ARRIVAL] + ttl <= now:
            (alive, alive_futures), (expired, expired_futures) = split(
                *self._take_waiting(), lambda record: record[ARRIVAL] + ttl > now)
            self._waiting, self._waiting_futures = alive, alive_futures
            reason = self._last_map_error or "the stream's shard map could not be loaded in time"
            self._fail(expired, expired_futures, (), EXPIRED,
                       f"record reached its RecordTtl waiting for the shard map ({reason})",
                       retryable=True, shard_id=None)
        for state in list(self._shards.values()):
            if state.queue and any(kr.expiry <= now for kr in state.queue):
                expired_krs = [kr for kr in state.queue if kr.expiry <= now]
                state.queue = deque(kr for kr in state.queue if kr.expiry > now)
                self._requeue(expired_krs)
        self.map.evict_closed(now)

    def flush(self) -> None:
        self.take_incoming()
        self._aggregator.flush()
        for state in list(self._shards.values()):
            self._drain(state)
        self._collector.flush()

    def oldest_arrival(self) -> float | None:
        candidates = [r[ARRIVAL] for r in (*self.incoming[:1], *self._waiting[:1])]
        candidates += [r[ARRIVAL] for r in self._misrouted]
        aggregating = self._aggregator.oldest_arrival()
        if aggregating is not None:
            candidates.append(aggregating)
        krs = [kr for state in self._shards.values() for kr in state.queue]
        krs += self._collector.pending()
        krs += [kr for batch in self._in_flight.values() for kr in batch]
        krs += [kr for held in self._held.values() for kr in held]
        krs += [kr for kr, _, _ in self._unverified]
        candidates += [kr.oldest_arrival for kr in krs]
        return min(candidates) if candidates else None

    def abort(self, code: str, message: str) -> None:
        """Fail every record this pipeline still holds (in-flight batches are the sender's to cancel)."""
        incoming, futures = self.incoming, self.incoming_futures
        self.incoming, self.incoming_futures = [], []
        self._fail(incoming, futures, (), code, message, retryable=True, shard_id=None)
        self._fail(*self._take_waiting(), (), code, message, retryable=True, shard_id=None)
        misrouted, futures = self._misrouted, self._misrouted_futures
        self._misrouted, self._misrouted_futures = [], []
        self._fail(misrouted, futures, (), code, message, retryable=True, shard_id=None)
        self._fail(*self._aggregator.take(), (), code, message, retryable=True, shard_id=None)
        krs: list[KinesisRecord] = list(self._collector.take())
        for state in self._shards.values():
            krs.extend(state.queue)
            state.queue.clear()
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
        for timer, held in self._held.items():
            timer.cancel()
            krs.extend(held)
        self._held.clear()
        unverified, self._unverified = self._unverified, []
        for kr, shard_id, sequence_number in unverified:
            # Delivered; only the range check is outstanding.  Report what Kinesis said.
            self._deliver(kr, kr.records, kr.futures, shard_id, sequence_number)
        for kr in krs:
            self._fail_kinesis_record(kr, code, message, retryable=True)

    def abort_batches(self, batches: list[list[KinesisRecord]], code: str, message: str) -> None:
        for batch in batches:
            if self._finish_batch(batch):
                for kr in batch:
                    self._fail_kinesis_record(kr, code, message, retryable=True)

    async def close(self) -> None:
        await self._refresher.close()
        if self._describe_task is not None and not self._describe_task.done():
            self._describe_task.cancel()
        if not self._limits_known.done():
            self._limits_known.cancel()


class _ShardReport:
    """What one response said about one shard, summed up for the metrics."""

    __slots__ = ("buffered", "errors", "kinesis_bytes", "kinesis_failed", "kinesis_put", "retries", "user_bytes",
                 "user_put", "users_per_record")

    def __init__(self) -> None:
        self.kinesis_put = 0
        self.kinesis_failed = 0
        self.kinesis_bytes = 0
        #: count, total, fewest, most user records per Kinesis record put.
        self.users_per_record = [0, 0, 1 << 62, 0]
        self.user_put = 0
        self.user_bytes = 0
        #: count, total, min, max: seconds from arrival to first send.
        self.buffered: list[float] = [0, 0.0, float("inf"), 0.0]
        #: count, total, min, max retries of the records delivered.
        self.retries = [0, 0, 1 << 62, 0]
        self.errors: dict[str, int] = {}

    def put(self, kr: KinesisRecord, start: float) -> None:
        users = len(kr.records)
        self.kinesis_put += 1
        self.kinesis_bytes += kr.size
        counts = self.users_per_record
        counts[0] += 1
        counts[1] += users
        counts[2] = min(counts[2], users)
        counts[3] = max(counts[3], users)
        if len(kr.log) == 1:  # first attempt: how long its records waited
            buffered = self.buffered
            buffered[0] += users
            buffered[1] += users * start - sum(map(_arrival, kr.records))
            buffered[2] = min(buffered[2], start - kr.records[-1][ARRIVAL])
            buffered[3] = max(buffered[3], start - kr.oldest_arrival)

    def delivered(self, kr: KinesisRecord) -> None:
        users = len(kr.records)
        self.user_put += users
        self.user_bytes += kr.user_bytes
        retries = len(kr.log) - 1
        counts = self.retries
        counts[0] += users
        counts[1] += users * retries
        counts[2] = min(counts[2], retries)
        counts[3] = max(counts[3], retries)

    def emit(self, metrics: ProducerMetrics, stream: str, shard_id: str | None) -> None:
        fewest = self.users_per_record[2] if self.kinesis_put else 0
        metrics.kinesis_records(stream, shard_id, succeeded=self.kinesis_put, failed=self.kinesis_failed,
                                data_bytes=self.kinesis_bytes,
                                user_per_record=(self.users_per_record[1], fewest, self.users_per_record[3]))
        if self.user_put:
            metrics.user_records(stream, shard_id, self.user_put, 0, self.user_bytes)
            count, total, least, most = self.retries
            metrics.retries(stream, shard_id, count=count, total=total, minimum=least, maximum=most)
        waited, seconds, shortest, longest = self.buffered
        if waited:
            metrics.buffering(stream, shard_id, count=int(waited), total_ms=seconds * 1000.0,
                              min_ms=shortest * 1000.0, max_ms=longest * 1000.0)
        for code, failures in self.errors.items():
            metrics.errors(stream, shard_id, code, failures)


def _by_shard(krs: Iterable[KinesisRecord]) -> dict[str | None, list[KinesisRecord]]:
    groups: dict[str | None, list[KinesisRecord]] = {}
    for kr in krs:
        groups.setdefault(kr.shard_id, []).append(kr)
    return groups


def _expiry_message(kr_log: AttemptLog) -> str:
    last_error = next((f"{code}: {message}" for _, _, code, message in reversed(kr_log) if code), None)
    if last_error is None:
        return "record reached its RecordTtl before it was delivered"
    return f"record reached its RecordTtl before it was delivered (last error {last_error})"
