"""Reading a shard: polling GetRecords or enhanced fan-out, into a bounded prefetch queue.

A fetcher runs ahead of the processor, but only so far: the queue holds at most
``max_pending_process_records_input`` batches and ``max_cache_byte_size`` bytes (the KCL's prefetch
bounds), so a slow processor means the fetcher waits rather than memory growing.  For fan-out that
wait is also the backpressure on the HTTP/2 event stream.

Failures are handled where they happen: an expired iterator is replaced from the last sequence number
fetched; throttling and transient errors back off (jittered, :func:`kpl.retry.retrying`) and retry, the
count starting afresh after each read that succeeds; a fan-out subscription that ends (every five
minutes) or fails is re-opened after the continuation sequence number.  Errors that will not go away
(the stream is gone, access denied) end the fetcher with :class:`kcl.errors.ShardReadError`, which the
shard consumer reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, stop_never
from tenacity.wait import wait_base

from kcl.config import MIN_IDLE_TIME_BETWEEN_READS_MS, WorkerConfig
from kcl.errors import ShardReadError
from kcl.metrics import KclMetrics
from kcl.sequence import AT_TIMESTAMP, LATEST, TRIM_HORIZON, ExtendedSequenceNumber
from kcl.stream import is_stream_arn, stream_api_args
from kpl.logs import get_logger
from kpl.retry import Backoff, error_code, error_message, is_retryable, last_error, retrying, stop_when

log = get_logger(__name__)


@dataclass(slots=True)
class FetchedBatch:
    """Service records as fetched; ``child_shards`` is not None once the shard's end was reached."""

    records: list[dict[str, Any]]
    millis_behind_latest: int
    child_shards: list[dict[str, Any]] | None = None
    size: int = 0

    @property
    def at_shard_end(self) -> bool:
        return self.child_shards is not None


class BatchQueue:
    """A FIFO bounded in batches and bytes.  A single batch larger than the byte bound still passes."""

    def __init__(self, max_batches: int, max_bytes: int) -> None:
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self._batches: deque[FetchedBatch] = deque()
        self._bytes = 0
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def bytes(self) -> int:
        return self._bytes

    async def put(self, batch: FetchedBatch) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._batches
                or (len(self._batches) < self.max_batches and self._bytes + batch.size <= self.max_bytes)
            )
            self._batches.append(batch)
            self._bytes += batch.size
            self._changed.notify_all()

    async def get(self) -> FetchedBatch:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._batches))
            batch = self._batches.popleft()
            self._bytes -= batch.size
            self._changed.notify_all()
            return batch


@dataclass(frozen=True)
class StartingPosition:
    """Where reading starts: ``AT_SEQUENCE_NUMBER`` of a checkpoint, or an initial position."""

    type: str
    sequence_number: str | None = None
    timestamp: datetime | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: ExtendedSequenceNumber, timestamp: datetime | None) -> StartingPosition:
        # AT (not AFTER) the checkpointed sequence number: the checkpoint may sit inside an aggregate,
        # whose remaining sub-records the consumer still has to deliver.
        seq = checkpoint.sequence_number
        if not checkpoint.is_sentinel:
            return cls("AT_SEQUENCE_NUMBER", sequence_number=seq)
        if seq == AT_TIMESTAMP:
            if timestamp is None:
                log.warning("lease says AT_TIMESTAMP but no initial timestamp is configured; reading from "
                            "TRIM_HORIZON so that nothing is skipped")
                return cls(TRIM_HORIZON)
            return cls(AT_TIMESTAMP, timestamp=timestamp)
        if seq in (TRIM_HORIZON, LATEST):
            return cls(seq)
        raise ValueError(f"no starting position for checkpoint {checkpoint}")

    def after(self, sequence_number: str | None) -> StartingPosition:
        return self if sequence_number is None else StartingPosition("AFTER_SEQUENCE_NUMBER", sequence_number)

    def get_shard_iterator_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"ShardIteratorType": self.type}
        if self.sequence_number is not None:
            args["StartingSequenceNumber"] = self.sequence_number
        if self.timestamp is not None:
            args["Timestamp"] = self.timestamp
        return args

    def subscribe_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"Type": self.type}
        if self.sequence_number is not None:
            args["SequenceNumber"] = self.sequence_number
        if self.timestamp is not None:
            args["Timestamp"] = self.timestamp
        return args


#: The wait between attempts of a read that fails (jittered, 0.2 s growing to 10 s).
READ_WAIT: wait_base = Backoff(initial=0.2, maximum=10.0).wait


def _batch_size(records: list[dict[str, Any]]) -> int:
    return sum(len(record["Data"]) for record in records)


class _Fetcher:
    def __init__(self, client: Any, stream_name: str, shard_id: str, start: StartingPosition, *,
                 config: WorkerConfig, metrics: KclMetrics, queue: BatchQueue, wait: wait_base = READ_WAIT) -> None:
        self.client = client
        self.stream_name = stream_name
        # A stream named by ARN (another account's, through a resource policy) is named in every call.
        self._get_records_args = {"StreamARN": stream_name} if is_stream_arn(stream_name) else {}
        self.shard_id = shard_id
        self.position = start
        self.config = config
        self.metrics = metrics
        self.queue = queue
        self.last_sequence_number: str | None = None
        self._wait = wait

    async def _publish(self, records: list[dict[str, Any]], millis_behind: int,
                       child_shards: list[dict[str, Any]] | None) -> None:
        if records:
            self.last_sequence_number = records[-1]["SequenceNumber"]
        elif child_shards is None and not self.config.call_process_records_even_for_empty_record_list:
            self.metrics.millis_behind_latest(self.shard_id, millis_behind)
            return
        await self.queue.put(FetchedBatch(records, millis_behind, child_shards, _batch_size(records)))

    def _retrying(self, what: str, *, wait: wait_base | None = None,
                  retry_on: Callable[[BaseException], bool] = is_retryable,
                  progressed: Callable[[], bool] | None = None) -> AsyncRetrying:
        """A read retried until it succeeds: a fetcher reads until its shard ends or the shard consumer cancels
        it (docs/troubleshooting.md, ``shard read failed; retrying``), hence ``stop_never`` unless the
        read made ``progressed`` (then the caller starts a fresh count)."""

        def log_retry(retry_state: RetryCallState) -> None:
            error = last_error(retry_state)
            if error is not None and error_code(error) == "ResourceInUseException":
                return  # subscribed again too soon: expected after a subscription fails, not worth a warning
            log.warning("shard read failed; retrying", call=what, shard=self.shard_id,
                        error=error_code(error) if error is not None else None, attempt=retry_state.attempt_number,
                        retry_in=round(retry_state.upcoming_sleep, 2))

        return retrying(wait=wait or self._wait, stop=stop_never if progressed is None else stop_when(progressed),
                        retry_on=retry_on, before_sleep=log_retry)

    def _failed(self, what: str, exc: Exception) -> ShardReadError:
        return ShardReadError(f"{what} on {self.shard_id} failed: {error_code(exc)}: {error_message(exc)}")


class PollingFetcher(_Fetcher):
    """GetRecords in a loop: max records per call, idle pause after an empty read."""

    async def run(self) -> None:
        iterator = await self._iterator(self.position)
        min_interval = MIN_IDLE_TIME_BETWEEN_READS_MS / 1000
        idle = self.config.idle_time_between_reads_ms / 1000
        while True:
            started = time.monotonic()
            response, iterator = await self._get_records(iterator)
            records = response.get("Records", [])
            next_iterator = response.get("NextShardIterator")
            child_shards = response.get("ChildShards", []) if next_iterator is None else None
            await self._publish(records, int(response.get("MillisBehindLatest", 0)), child_shards)
            if next_iterator is None:
                return
            iterator = next_iterator
            pause = min_interval - (time.monotonic() - started) if records else idle
            if pause > 0:
                await asyncio.sleep(pause)

    async def _get_records(self, iterator: str) -> tuple[dict[str, Any], str]:
        """One GetRecords that succeeded, and the iterator it used (renewed if the one given had expired)."""
        try:
            async for attempt in self._retrying("GetRecords"):
                with attempt:
                    while True:
                        started = time.monotonic()
                        try:
                            response = await self.client.get_records(
                                ShardIterator=iterator, Limit=self.config.max_records, **self._get_records_args)
                        except Exception as exc:
                            self.metrics.get_records(self.shard_id, False, time.monotonic() - started)
                            self.metrics.error("GetRecords", error_code(exc))
                            if error_code(exc) != "ExpiredIteratorException":
                                raise
                            self.metrics.expired_iterator(self.shard_id)
                            log.info("shard iterator expired; renewing it", shard=self.shard_id)
                            iterator = await self._iterator(self.position.after(self.last_sequence_number))
                            continue
                        self.metrics.get_records(self.shard_id, True, time.monotonic() - started)
                        return response, iterator
        except ShardReadError:
            raise  # the iterator could not be renewed
        except Exception as exc:
            raise self._failed("GetRecords", exc) from exc
        raise AssertionError("unreachable: the loop returns or raises")

    async def _iterator(self, position: StartingPosition) -> str:
        try:
            async for attempt in self._retrying("GetShardIterator"):
                with attempt:
                    try:
                        response = await self.client.get_shard_iterator(
                            **stream_api_args(self.stream_name), ShardId=self.shard_id,
                            **position.get_shard_iterator_args())
                    except Exception as exc:
                        self.metrics.error("GetShardIterator", error_code(exc))
                        raise
                    return str(response["ShardIterator"])
        except ShardReadError:
            raise
        except Exception as exc:
            raise self._failed("GetShardIterator", exc) from exc
        raise AssertionError("unreachable: the loop returns or raises")


class _wait_resource_in_use(wait_base):
    """One more second after ResourceInUseException: a shard accepts one subscription per consumer every five
    seconds."""

    def __call__(self, retry_state: RetryCallState) -> float:
        error = last_error(retry_state)
        return 1.0 if error is not None and error_code(error) == "ResourceInUseException" else 0.0


def _subscription_retried(error: BaseException) -> bool:
    # ResourceInUse is fatal elsewhere (kpl.retry), but here it means "subscribed too soon": wait and retry.
    return is_retryable(error) or error_code(error) == "ResourceInUseException"


class FanOutFetcher(_Fetcher):
    """SubscribeToShard (enhanced fan-out), re-subscribing after the continuation sequence number."""

    def __init__(self, *args: Any, consumer_arn: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumer_arn = consumer_arn
        self._progressed = False

    async def run(self) -> None:
        # One subscription after another (each lasts up to five minutes), until the shard ends.  The retries of
        # a failing one count from the last event delivered: a new count starts when one fails after events.
        while True:
            self._progressed = False
            try:
                async for attempt in self._retrying("SubscribeToShard", wait=self._wait + _wait_resource_in_use(),
                                                    retry_on=_subscription_retried,
                                                    progressed=lambda: self._progressed):
                    with attempt:
                        ended = await self._subscription()
            except Exception as exc:
                if not self._progressed or not _subscription_retried(exc):
                    raise self._failed("SubscribeToShard", exc) from exc
                log.warning("shard read failed; retrying", call="SubscribeToShard", shard=self.shard_id,
                            error=error_code(exc), attempt=1, retry_in=0.0)
                continue
            if ended:
                return

    async def _subscription(self) -> bool:
        """One subscription, read to its end; True when the shard ended."""
        stream = None
        try:
            response = await self.client.subscribe_to_shard(
                ConsumerARN=self.consumer_arn, ShardId=self.shard_id, StartingPosition=self.position.subscribe_args(),
            )
            stream = response["EventStream"]
            async for event in stream:
                shard_event = event.get("SubscribeToShardEvent")
                if shard_event is None:
                    continue
                self._progressed = True
                continuation = shard_event.get("ContinuationSequenceNumber")
                records = shard_event.get("Records", [])
                child_shards = shard_event.get("ChildShards", []) if continuation is None else None
                await self._publish(records, int(shard_event.get("MillisBehindLatest", 0)), child_shards)
                if continuation is None:
                    return True
                self.position = StartingPosition("AFTER_SEQUENCE_NUMBER", continuation)
            # Subscriptions last five minutes; then a new one continues where this one ended.
            return False
        except Exception as exc:
            self.metrics.error("SubscribeToShard", error_code(exc))
            raise
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()


async def register_stream_consumer(client: Any, stream_arn: str, consumer_name: str, timeout: float = 120.0) -> str:
    """The ARN of the enhanced fan-out consumer ``consumer_name``, registering it if needed; waits for ACTIVE."""
    try:
        response = await client.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=consumer_name)
        description = response["ConsumerDescription"]
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        try:
            description = (await client.register_stream_consumer(StreamARN=stream_arn,
                                                                 ConsumerName=consumer_name))["Consumer"]
            log.info("registered enhanced fan-out consumer", consumer=consumer_name)
        except Exception as register_error:
            if error_code(register_error) != "ResourceInUseException":
                raise
            # Another worker registered it at the same moment.
            description = (await client.describe_stream_consumer(StreamARN=stream_arn,
                                                                 ConsumerName=consumer_name))["ConsumerDescription"]
    arn = str(description["ConsumerARN"])
    # A poll, not a retry (an error of DescribeStreamConsumer ends it); it stops at the deadline.
    deadline = time.monotonic() + timeout
    while description.get("ConsumerStatus") != "ACTIVE":
        if time.monotonic() > deadline:
            raise ShardReadError(f"fan-out consumer {consumer_name} not ACTIVE within {timeout:.0f}s")
        await asyncio.sleep(0.5)
        description = (await client.describe_stream_consumer(ConsumerARN=arn))["ConsumerDescription"]
    return arn
