"""Where batches go: Kinesis Data Streams through the toolkit's producer, or Firehose PutRecordBatch.

Both sinks deliver a batch completely or keep trying: a record that failed is sent again after a
jittered backoff (kpl.retry), for as long as it takes, so that the file's checkpoint can move over the
batch.  Errors that will repeat until someone acts (a missing stream, denied access) are not hidden:
they are logged as errors (once a minute, not per record), counted, and retried every
``retryMaxBackoffMillis`` so the flow recovers by itself once the stream exists or the policy is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from hashlib import md5
from typing import Any

from tenacity import RetryCallState, stop_never, wait_fixed
from tenacity.wait import wait_base

from agent.batch import Batch
from agent.config_types import FlowConfig, PartitionKeyOption
from agent.metrics import SendMetrics
from kpl import AsyncProducer, BufferFullError, ProducerConfig, RecordResult
from kpl.aws import ClientConfig, async_client
from kpl.logs import get_logger
from kpl.retry import (
    Backoff,
    ErrorKind,
    any_error,
    classify,
    classify_code,
    error_code,
    error_message,
    last_error,
    retrying,
)

log = get_logger(__name__)

#: Seconds between two log lines about the same failing destination and error code.
LOG_INTERVAL = 60.0


def _is_undelivered(error: BaseException) -> bool:
    return isinstance(error, _Undelivered)


class _Undelivered(Exception):
    """Records of one delivery attempt that did not arrive: raised inside the attempt, so that the delivery's
    retry loop waits and sends them (only them) again."""

    def __init__(self, failed: list[bytes], kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.failed = failed
        self.kind = kind
        self.code = code
        self.message = message


def _undelivered(retry_state: RetryCallState) -> _Undelivered:
    error = last_error(retry_state)
    assert isinstance(error, _Undelivered), error
    return error


class _DeliveryWait(wait_base):
    """Errors that repeat until someone acts wait the maximum backoff; the others a jittered window."""

    def __init__(self, backoff: Backoff) -> None:
        self._jittered = backoff.wait
        self._maximum = backoff.maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        if _undelivered(retry_state).kind is ErrorKind.FATAL:
            return self._maximum
        return self._jittered(retry_state)


class Retrier:
    """How a flow waits between the attempts of a delivery, and how loudly it says why."""

    def __init__(self, flow: FlowConfig, metrics: SendMetrics | None = None) -> None:
        self.flow = flow
        self.metrics = metrics
        self.backoff = Backoff(flow.retry_initial_backoff_ms / 1000, flow.retry_max_backoff_ms / 1000)
        self._wait = _DeliveryWait(self.backoff)
        self._logged: dict[str, tuple[float, int]] = {}

    async def deliver(self, records: list[bytes], put: Callable[[list[bytes]], Awaitable[None]]) -> None:
        """``put(records)``, then ``put`` again with the records it could not deliver (:class:`_Undelivered`),
        after a backoff, until none is left.  Any other error ends the delivery (the flow retries the batch)."""
        pending = records
        if not pending:
            return
        # stop_never: docs/agent.md ("Retries never give up") promises a batch is retried until delivered,
        # so that its file's checkpoint can move over it; the flow cancels its deliveries at shutdown.
        async for attempt in retrying(wait=self._wait, stop=stop_never, retry_on=_is_undelivered,
                                      before_sleep=self._before_sleep):
            with attempt:
                try:
                    await put(pending)
                except _Undelivered as undelivered:
                    pending = undelivered.failed
                    raise

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        error = _undelivered(retry_state)
        delay = retry_state.upcoming_sleep
        if self.metrics is not None:
            self.metrics.retry(error.code)
        if error.kind is ErrorKind.FATAL:
            self._log(error.code, "error", "the destination rejects records: they are kept and retried, and the "
                      "files' checkpoints do not move until they are delivered; fix the cause (stream name, IAM "
                      "policy, region) and the agent catches up by itself", message=error.message,
                      records=len(error.failed), delay=delay)
        else:
            self._log(error.code, "warning", "sending failed; retrying with backoff", message=error.message,
                      records=len(error.failed), delay=delay)

    def _log(self, code: str, level: str, event: str, *, message: str, records: int, delay: float) -> None:
        now = time.monotonic()
        last, suppressed = self._logged.get(code, (-LOG_INTERVAL, 0))
        if now - last < LOG_INTERVAL:
            self._logged[code] = (last, suppressed + 1)
            return
        self._logged[code] = (now, 0)
        getattr(log, level)(event, flow=self.flow.id, error=code, detail=message, records=records,
                            retry_in_seconds=round(delay, 3), similar_failures_not_logged=suppressed)


class FirehoseSink:
    """PutRecordBatch through an aiobotocore client; only failed entries are sent again."""

    def __init__(self, flow: FlowConfig, client_config: ClientConfig, metrics: SendMetrics,
                 concurrency: asyncio.Semaphore) -> None:
        self.flow = flow
        # botocore's own retries are off: this sender retries per entry and a second layer would compound.
        # Its per-entry parameter validation is off too: the entries are built here and costs more CPU
        # than the rest of the send.
        self.client_config = client_config.with_(max_attempts=1, parameter_validation=False)
        self.metrics = metrics
        self.concurrency = concurrency
        self.retrier = Retrier(flow, metrics)
        self._client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        self._exit = contextlib.AsyncExitStack()
        self._client = await self._exit.enter_async_context(async_client("firehose", self.client_config))

    async def close(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None

    async def deliver(self, batch: Batch) -> None:
        await self.retrier.deliver(pack_records(batch.records, self.flow.aggregated_record_size_bytes), self._put)

    async def _put(self, pending: list[bytes]) -> None:
        """One PutRecordBatch; raises :class:`_Undelivered` with the entries that failed."""
        try:
            async with self.concurrency:
                response = await self._client.put_record_batch(
                    DeliveryStreamName=self.flow.destination, Records=[{"Data": data} for data in pending]
                )
        except Exception as exc:
            self.metrics.request(attempted=len(pending), sent=0, failed=0, bytes_sent=0, service_error=True)
            raise _Undelivered(pending, classify(exc), error_code(exc), error_message(exc)) from exc
        failed: list[bytes] = []
        first_error: dict[str, Any] | None = None
        for data, result in zip(pending, response["RequestResponses"], strict=True):
            if result.get("ErrorCode"):
                failed.append(data)
                first_error = first_error or result
        sent = len(pending) - len(failed)
        self.metrics.request(attempted=len(pending), sent=sent, failed=len(failed),
                             bytes_sent=sum(map(len, pending)) - sum(map(len, failed)), service_error=False)
        if first_error is not None:
            code = str(first_error["ErrorCode"])
            raise _Undelivered(failed, classify_code(code), code, str(first_error.get("ErrorMessage", "")))


def pack_records(records: list[bytes], target: int) -> list[bytes]:
    """``aggregatedRecordSizeBytes``: whole records joined into Firehose records of up to ``target`` bytes."""
    if target <= 0 or len(records) < 2:
        return records
    packed: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for record in records:
        if group and size + len(record) > target:
            packed.append(b"".join(group))
            group = []
            size = 0
        group.append(record)
        size += len(record)
    if group:
        packed.append(b"".join(group))
    return packed


class KinesisSink:
    """Records go through ``kpl.AsyncProducer`` (shard-aware batching, optional KPL aggregation, rate
    limits); records whose result is a failure are put again after a backoff.

    ``ServiceErrors`` counts delivery rounds in which every record failed (the producer does not expose
    its individual calls); the other metrics are exact.
    """

    def __init__(self, flow: FlowConfig, producer_config: ProducerConfig, metrics: SendMetrics) -> None:
        self.flow = flow
        self.producer_config = producer_config
        self.metrics = metrics
        self.retrier = Retrier(flow, metrics)
        self._producer: AsyncProducer | None = None
        self._deterministic = flow.partition_key_option is PartitionKeyOption.DETERMINISTIC
        # RANDOM spreads records over shards.  With aggregation, one random key per batch spreads them
        # as well, and lets the batch's lines share aggregates and a partition-key table entry instead
        # of carrying 20 bytes of key each (and an MD5 each for shard prediction).
        self._key_per_batch = flow.partition_key_option is PartitionKeyOption.RANDOM and flow.aggregation_enabled
        #: orderedDelivery: every record of the flow goes to one shard, one batch at a time.
        self._flow_key = flow_partition_key(flow.id) if flow.ordered else None
        self._one_at_a_time = asyncio.Lock() if flow.ordered else None

    async def start(self) -> None:
        self._producer = AsyncProducer(self.producer_config)
        await self._producer.start()

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            # Records still in the producer belong to batches that were not acknowledged, and are read
            # again after a restart: no reason to wait for them.
            await producer.close(timeout=1.0)

    async def deliver(self, batch: Batch) -> None:
        if self._one_at_a_time is None:
            await self._deliver(batch)
            return
        # Batches are delivered in the order the flow queued them (asyncio.Lock wakes waiters first in,
        # first out): a batch is not handed to the producer before the previous one is delivered, so
        # the agent's own retries of rejected records cannot overtake younger records.
        async with self._one_at_a_time:
            # An unexpected failure (a bug) is retried here, so the lock is not given up.  stop_never: docs/agent.md
            # ("Retries never give up", "Order") — the flow cancels its deliveries at shutdown.
            async for attempt in retrying(wait=wait_fixed(self.flow.retry_max_backoff_ms / 1000), stop=stop_never,
                                          retry_on=any_error,
                                          before_sleep=lambda state: self._failed_unexpectedly(state, batch)):
                with attempt:
                    await self._deliver(batch)

    def _failed_unexpectedly(self, retry_state: RetryCallState, batch: Batch) -> None:
        error = last_error(retry_state)
        log.error("sending a batch failed unexpectedly; retrying it before any later batch",
                  flow=self.flow.id, records=len(batch.records), error=repr(error), exc_info=error)

    async def _deliver(self, batch: Batch) -> None:
        await self.retrier.deliver(batch.records, self._put)

    async def _put(self, pending: list[bytes]) -> None:
        """Every record through the producer, once; raises :class:`_Undelivered` with those that failed."""
        assert self._producer is not None
        put_nowait = self._producer.put_record_nowait
        put = self._producer.put_record
        stream = self.flow.destination
        deterministic = self._deterministic
        rand = random.random
        futures: list[asyncio.Future[RecordResult]] = []
        append = futures.append
        batch_key = self._flow_key or (repr(rand() * 1e6) if self._key_per_batch else None)
        for data in pending:
            key = batch_key or (md5(data).hexdigest() if deterministic else repr(rand() * 1e6))
            try:
                append(put_nowait(stream, data, key))
            except BufferFullError:
                append(await put(stream, data, key))
        if self._flow_key is None:
            for future in futures:
                if not future.done():
                    await future
        else:
            await self._wait_in_order(futures)
        failed: list[bytes] = []
        failure: RecordResult | None = None
        for data, future in zip(pending, futures, strict=True):
            result = future.result()
            if not result.success:
                failed.append(data)
                failure = failure or result
        self.metrics.request(attempted=len(pending), sent=len(pending) - len(failed), failed=len(failed),
                             bytes_sent=sum(map(len, pending)) - sum(map(len, failed)),
                             service_error=bool(failed) and len(failed) == len(pending))
        if failure is not None:
            kind = ErrorKind.TRANSIENT if failure.retryable else ErrorKind.FATAL
            code = failure.error.code if failure.error is not None else "Unknown"
            message = failure.error.message if failure.error is not None else ""
            raise _Undelivered(failed, kind, code, message)

    async def _wait_in_order(self, futures: list[asyncio.Future[RecordResult]]) -> None:
        """orderedDelivery: the producer retries until delivered, so say so while it takes long."""
        pending = {future for future in futures if not future.done()}
        waited = 0.0
        while pending:
            _, pending = await asyncio.wait(pending, timeout=LOG_INTERVAL)
            if pending:
                waited += LOG_INTERVAL
                log.warning("records not delivered yet; the producer keeps retrying them in order "
                            "(orderedDelivery), and the flow's later batches wait for them", flow=self.flow.id,
                            records=len(pending), waiting_seconds=waited)


def flow_partition_key(flow_id: str) -> str:
    """orderedDelivery's one partition key for a flow: stable across restarts (the flow id is the
    checkpoint key too), 32 characters whatever the length of the id."""
    return md5(flow_id.encode()).hexdigest()
