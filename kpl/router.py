"""The result router: every classified outcome to where it leads — a result, a retry, or a metric.

Per Kinesis record of an answered batch: delivered (its futures resolved, :mod:`kpl.resolver`),
delivered partly to the wrong shard (the records outside the shard's range go to the retrier),
throttled (the shard's limiter slows down; the record is retried at once, or fails with
FailIfThrottled), failed for good (fatal errors: resolved as failed, not retryable) or failed for
now (held for a backoff by the retrier).  A whole-request failure applies to every record of the
batch alike.  The per-request metrics are summed up per shard here, once per response.
"""

from __future__ import annotations

import asyncio

from kpl.accumulator import HASH_KEY, KinesisRecord, Partition, split, with_log
from kpl.discovery import RESOURCE_NOT_FOUND, StreamDiscovery
from kpl.limiter import Limiter
from kpl.logs import get_logger
from kpl.metrics import ProducerMetrics, RequestSummary
from kpl.records import WRONG_SHARD
from kpl.resolver import Resolver
from kpl.responses import RequestFailure, ResponseOutcome
from kpl.retrier import Retrier
from kpl.retry import ErrorKind
from kpl.sender import NotSent

log = get_logger(__name__)


class ResultRouter:
    """Routes the outcomes of one stream's requests (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, discovery: StreamDiscovery, limiter: Limiter,
                 retrier: Retrier, resolver: Resolver, metrics: ProducerMetrics, fail_if_throttled: bool) -> None:
        self._loop = loop
        self._discovery = discovery
        self._map = discovery.map
        self._limiter = limiter
        self._retrier = retrier
        self._resolver = resolver
        self._metrics = metrics
        self._stream = resolver.stream_name
        self._fail_if_throttled = fail_if_throttled
        #: Entries delivered to a shard the map does not know yet: (record, shard, sequence number).
        self._unverified: list[tuple[KinesisRecord, str, str]] = []

    # --- outcomes, from the classifier ----------------------------------------------------------------

    def response(self, batch: list[KinesisRecord], outcome: ResponseOutcome, start: float, end: float) -> None:
        """A PutRecords response, read entry by entry."""
        self._report(batch, outcome, start, end)
        if outcome.stale_map:
            stale = next((kr for kr, *_ in outcome.misrouted), None) or next(
                (kr for kr, *_ in outcome.unverified), None) or batch[0]
            self._discovery.request_refresh(start, stale.shard_id)
        deliver = self._resolver.deliver
        for kr, shard_id, sequence_number in outcome.delivered:
            deliver(kr, kr.records, kr.futures, shard_id, sequence_number)
        for kr, shard_id, sequence_number in outcome.misrouted:
            self.verify(kr, shard_id, sequence_number)
        for entry in outcome.unverified:
            if self._map.generation != entry[0].generation or not self._discovery.refresher.running:
                self.verify(*entry)
            else:
                self._unverified.append(entry)
        if not outcome.failed:
            self._limiter.done({kr.shard_id for kr in batch})
            return
        now = self._loop.time()
        retry_now: list[KinesisRecord] = []
        retry_later: list[KinesisRecord] = []
        for kr, code, message, kind in outcome.failed:
            if kind is ErrorKind.THROTTLED:
                self._limiter.throttled((kr.shard_id,), now)
                if self._fail_if_throttled:
                    self._resolver.fail_kinesis_record(kr, code, message, retryable=True)
                else:
                    retry_now.append(kr)
            elif kind is ErrorKind.FATAL:
                self._resolver.fail_kinesis_record(kr, code, message, retryable=False)
            else:
                kr.request_failures += 1
                retry_later.append(kr)
        if retry_now:
            self._retrier.requeue(retry_now)
        if retry_later:
            self._retrier.hold(retry_later)
        self._done(batch, retry_later)

    def request_failed(self, batch: list[KinesisRecord], failure: RequestFailure, start: float, end: float) -> None:
        """A request that failed as a whole: the same for every record of the batch."""
        code, message, kind = failure.code, failure.message, failure.kind
        metrics = self._metrics
        if metrics.enabled:
            metrics.request(self._stream, (end - start) * 1000.0, len(batch), sum(len(kr.records) for kr in batch))
            per_shard: dict[str | None, int] = {}
            for kr in batch:
                per_shard[kr.shard_id] = per_shard.get(kr.shard_id, 0) + 1
            for shard_id, count in per_shard.items():
                metrics.errors(self._stream, shard_id, code, count)
        held: list[KinesisRecord] = []
        if kind is ErrorKind.FATAL or (kind is ErrorKind.THROTTLED and self._fail_if_throttled):
            for kr in batch:
                self._resolver.fail_kinesis_record(kr, code, message, retryable=kind is not ErrorKind.FATAL)
            if code == RESOURCE_NOT_FOUND:
                self._discovery.request_refresh(start)
        else:
            if kind is ErrorKind.THROTTLED:
                self._limiter.throttled({kr.shard_id for kr in batch}, self._loop.time())
            for kr in batch:
                kr.request_failures += 1
            held = batch
            self._retrier.hold(batch)
            log.debug("PutRecords failed; retrying after backoff", stream=self._stream, error=code,
                      detail=message, records=len(batch))
        self._done(batch, held)

    def not_sent(self, batch: list[KinesisRecord], reason: NotSent) -> None:
        """Kinesis records whose batch never left the sender's backlog."""
        if reason is NotSent.EXPIRED:
            self._retrier.requeue(batch)
            self._limiter.done({kr.shard_id for kr in batch})
        else:
            self._retrier.give_up(batch)

    def cancelled(self, batch: list[KinesisRecord]) -> None:
        """A request cancelled in flight (the producer shut down): nobody knows what it wrote."""
        self._retrier.give_up(batch)

    def _done(self, batch: list[KinesisRecord], held: list[KinesisRecord]) -> None:
        """Ordered mode: a shard whose Kinesis record has an outcome may send its next one."""
        held_shards = {kr.shard_id for kr in held}
        self._limiter.done({kr.shard_id for kr in batch} - held_shards)

    # --- the wrong-shard check ------------------------------------------------------------------------

    def verify(self, kr: KinesisRecord, shard_id: str, sequence_number: str) -> None:
        """Deliver the user records of an entry that lie in the range of the shard that took it.

        The others (the shard map was stale) go out again: at once when the map has already changed
        since their prediction, otherwise after the refresh that is under way.
        """
        hash_range = self._map.range_of(shard_id)
        if hash_range is None:
            inside, outside = Partition([], []), Partition(kr.records, kr.futures)
        else:
            low, high = hash_range.start, hash_range.end
            inside, outside = split(kr.records, kr.futures, lambda record: low <= record[HASH_KEY] <= high)
        if inside.records:
            self._resolver.deliver(kr, inside.records, inside.futures, shard_id, sequence_number)
            self._resolver.delivered_after_check(inside.records, shard_id)
        if not outside.records:
            return
        start, end, _, _ = kr.log[-1]
        kr_log = (*kr.log[:-1], (start, end, WRONG_SHARD,
                                 f"delivered to {shard_id}, whose hash-key range does not contain the record"))
        records = [with_log(record, kr_log) for record in outside.records]
        if self._map.generation == kr.generation and self._discovery.refresher.running:
            self._retrier.park_misrouted(records, outside.futures)
        else:
            self._retrier.requeue_records(records, outside.futures, self._loop.time())

    def verify_parked(self) -> None:
        """After a refresh: entries that reached a shard the map did not know are checked now."""
        if self._unverified:
            unverified, self._unverified = self._unverified, []
            for kr, shard_id, sequence_number in unverified:
                self.verify(kr, shard_id, sequence_number)

    def take_unverified(self) -> list[tuple[KinesisRecord, str, str]]:
        unverified, self._unverified = self._unverified, []
        return unverified

    def unverified(self) -> list[KinesisRecord]:
        return [kr for kr, _, _ in self._unverified]

    # --- metrics --------------------------------------------------------------------------------------

    def _report(self, batch: list[KinesisRecord], outcome: ResponseOutcome, start: float, end: float) -> None:
        """The KPL's per-request metrics, summarised per shard (never one metric call per record)."""
        metrics = self._metrics
        if not metrics.enabled:
            return
        metrics.request(self._stream, (end - start) * 1000.0, len(batch), sum(len(kr.records) for kr in batch))
        summary = RequestSummary(start)
        summary.delivered(kr for kr, _, _ in outcome.delivered)
        summary.put(kr for kr, _, _ in (*outcome.misrouted, *outcome.unverified))
        for kr, code, _, _ in outcome.failed:
            summary.failed(kr, code)
        summary.emit(metrics, self._stream)
