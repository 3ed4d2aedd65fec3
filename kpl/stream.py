"""One stream's pipeline: its stages, wired one way, and what the whole stream is asked for.

    intake (prediction, grouping) -> accumulator (aggregate per shard) -> limiter (shard queues)
        -> collector (PutRecords batches) -> sender (shared; transport) -> response classifier
        -> result router -> resolver (futures) | retrier (back to the limiter or the intake)

Each stage knows only the next one(s); nothing calls back up the chain.  Every user record is in
exactly one stage at a time, and leaves through the resolver, which resolves its future and
releases its share of the backpressure budget.  Retries go back to the *front* of their shard's
queue in the limiter, so a retried record is never sent after a younger record of its shard that
was queued behind it; with ``ordered_per_shard`` a shard also has at most one Kinesis record in
flight, which makes the order per shard strict.

:class:`StreamPipeline` builds the stages, answers what discovery learns (route the records that
waited for the shard map, re-predict records of shards that closed, resend records parked for a
refresh), and does what is asked of the stream as a whole: flush, expiry, its oldest record, and
resolving everything it holds when the producer gives up on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kpl.accumulator import Aggregator, KinesisRecord
from kpl.aws import stream_api_args
from kpl.backpressure import Budget
from kpl.collector import Collector
from kpl.config import ProducerConfig
from kpl.discovery import StreamDiscovery
from kpl.intake import Intake
from kpl.limiter import Limiter
from kpl.metrics import ProducerMetrics
from kpl.records import RecordError, RecordResult
from kpl.resolver import Resolver
from kpl.responses import ResponseClassifier
from kpl.retrier import Retrier
from kpl.retry import Backoff
from kpl.router import ResultRouter
from kpl.sender import Sender


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
    resolve: Callable[[list[Any], RecordResult], None]
    #: The clients' region and endpoint (to tell an invalid region from a network problem).
    region: str | None = None
    endpoint_url: str | None = None


class StreamPipeline:
    """Everything the producer does for one stream (see the module docstring)."""

    def __init__(self, stream_name: str, shared: Shared) -> None:
        self.stream_name = stream_name
        self._loop = loop = shared.loop
        config = shared.config
        self._sender = shared.sender
        self._target = stream_api_args(stream_name)
        max_buffered, ttl = config.record_max_buffered_time, config.record_ttl
        self._max_buffered = max_buffered
        self.discovery = discovery = StreamDiscovery(
            stream_name, loop, shared.control_client, self, max_user_record_size=config.max_user_record_size,
            aggregate=config.aggregation_enabled, region=shared.region, endpoint_url=shared.endpoint_url)
        self.resolver = resolver = Resolver(stream_name, shared.resolve, shared.budget, shared.metrics)
        self.collector = collector = Collector(loop, self._send, max_count=config.collection_max_count,
                                               max_size=config.collection_max_size)
        self.limiter = limiter = Limiter(loop, collector.add, rate_limit=config.rate_limit,
                                         ordered=config.ordered_per_shard)
        self.aggregator = aggregator = Aggregator(
            loop, limiter.add, max_size=config.aggregation_max_size, max_count=config.aggregation_max_count,
            ttl=ttl, max_buffered=max_buffered)
        self._set_collection_time()
        self.intake = intake = Intake(loop, discovery, aggregator, limiter, resolver, max_buffered=max_buffered,
                                      ttl=ttl)
        self.retrier = retrier = Retrier(loop, config, discovery=discovery, intake=intake, limiter=limiter,
                                          resolver=resolver, backoff=shared.backoff)
        self.router = router = ResultRouter(loop, discovery=discovery, limiter=limiter, retrier=retrier,
                                            resolver=resolver, metrics=shared.metrics,
                                            fail_if_throttled=config.fail_if_throttled)
        self.classifier = ResponseClassifier(discovery.map, router, request_timeout=shared.sender.request_timeout)
        #: A flush found records waiting for the shard map: they go out at once when routed.
        self._flush_when_routed = False

    def _send(self, batch: list[KinesisRecord]) -> None:
        """The collector's batches go to the sender, whose outcomes go to this stream's classifier."""
        self._sender.submit(batch, self._target, self.classifier)

    def _set_collection_time(self) -> None:
        # An aggregate gets some time in the collector to share a request with others (as in the KPL,
        # PR #280: min(50 ms, 0.2 x RecordMaxBufferedTime)), taken out of its aggregation time rather
        # than added after it, so that a record still leaves within RecordMaxBufferedTime.
        self.aggregator.seal_early = min(0.05, 0.2 * self._max_buffered) if self.discovery.aggregate else 0.0

    # --- what discovery learns --------------------------------------------------------------------------

    def stream_ready(self) -> None:
        self._set_collection_time()
        self._route_waiting()

    def map_refreshed(self, changed: bool) -> None:
        if changed:
            self.aggregator.generation = self.discovery.map.generation
            self._reroute_closed_shards()
        self._route_waiting()
        self._resend_parked()

    def _route_waiting(self) -> None:
        self.intake.route_waiting()
        if self._flush_when_routed and not self.intake.waiting:
            self.flush()

    def map_refresh_failed(self) -> None:
        if self.discovery.unusable is None and self.intake.waiting:
            self.discovery.retry_later()
        self._resend_parked()

    def stream_unusable(self, error: RecordError) -> None:
        self.intake.fail_waiting(error)

    def _resend_parked(self) -> None:
        """Records that waited for a map refresh go out again, with the map there is now."""
        self.retrier.resend_misrouted()
        self.router.verify_parked()

    def _reroute_closed_shards(self) -> None:
        """After a map change, records queued or aggregating for shards that closed are predicted again."""
        shard_map = self.discovery.map
        closed: set[str | None] = {s for s in (*self.limiter.shards(), *self.aggregator.shards())
                  if s is not None and not shard_map.is_open(s)}
        if not closed:
            return
        krs = self.limiter.take(closed)
        records, futures = self.aggregator.take(closed)
        if krs:
            self.retrier.requeue(krs)
        if records:
            self.retrier.requeue_records(records, futures, self._loop.time())

    # --- the stream as a whole ------------------------------------------------------------------------

    @property
    def limits_known(self) -> bool:
        return self.discovery.limits_known

    async def wait_for_limits(self) -> None:
        await self.discovery.wait_for_limits()

    def record_size_limit(self) -> int:
        return self.discovery.record_size_limit()

    def take_received(self) -> int:
        """Records taken in since the last call (for the UserRecordsReceived metric)."""
        received, self.intake.received = self.intake.received, 0
        return received

    def flush(self) -> None:
        """Everything buffered goes out now, as far as the shards' rate limits allow.

        Records still waiting for the shard map go out as soon as they are routed.
        """
        self.intake.take_incoming()
        self._flush_when_routed = self.intake.waiting
        self.aggregator.flush()
        self.limiter.drain_all()
        self.collector.flush()

    def expire(self, now: float) -> None:
        """Fail records that waited past their TTL before reaching a request."""
        self.intake.expire(now)
        expired = self.limiter.take_expired(now)
        if expired:
            self.retrier.requeue(expired)
        self.discovery.map.evict_closed(now)

    def oldest_arrival(self) -> float | None:
        candidates = [a for a in (self.intake.oldest_arrival(), self.retrier.oldest_misrouted(),
                                  self.aggregator.oldest_arrival()) if a is not None]
        krs = [*self.limiter.queued(), *self.collector.pending(), *self._sender.outstanding(self.classifier),
               *self.retrier.held(), *self.router.unverified()]
        candidates += [kr.oldest_arrival for kr in krs]
        return min(candidates) if candidates else None

    def give_up(self, reason: str) -> None:
        """The producer closes now: resolve every record held here; nothing is retried any more.

        Records in requests in flight are not held here: their outcomes still come, and decide.
        """
        self.retrier.start_giving_up(reason)
        give_up = self.resolver.give_up
        give_up(*self.intake.take_all(), (), reason, shard_id=None)
        give_up(*self.retrier.take_misrouted(), (), reason, shard_id=None)
        give_up(*self.aggregator.take(), (), reason, shard_id=None)
        krs = [*self.collector.take(), *self.limiter.take(), *self.retrier.take_held()]
        for kr, shard_id, sequence_number in self.router.take_unverified():
            # Delivered; only the range check is outstanding.  Report what Kinesis said.
            self.resolver.deliver(kr, kr.records, kr.futures, shard_id, sequence_number)
        self.retrier.give_up(krs)

    async def close(self) -> None:
        await self.discovery.close()
