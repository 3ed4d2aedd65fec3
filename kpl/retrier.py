"""The retrier: failed Kinesis records back into the pipeline, ahead of younger ones, until their TTL.

Records come here from the result router: after a whole-request failure (held for a jittered
exponential backoff first, :class:`kpl.retry.Backoff`), after a throttled or failed entry (at once:
the limiter paces them), or after they reached a shard whose hash range excludes them (parked until
the shard map is refreshed).  A Kinesis record retried under an unchanged shard map is re-sent as
it is, at the *front* of its shard's queue in the limiter.  When the map changed, or some of its
records expired, its live records are predicted again and re-aggregated.  Records past their TTL
fail as ``Expired``, with the last error in the message.

Once the producer gives up (``close(timeout)`` ran out of time), nothing is retried any more:
whatever would have been is resolved by :meth:`Resolver.give_up`, which tells records that are
certainly not in the stream from those that may be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from kpl.accumulator import ARRIVAL, HASH_KEY, KinesisRecord, PendingRecord, regroup, split, with_log
from kpl.config import ProducerConfig
from kpl.discovery import StreamDiscovery
from kpl.intake import Intake
from kpl.limiter import Limiter
from kpl.records import EXPIRED, AttemptLog
from kpl.resolver import Resolver
from kpl.retry import Backoff


class Retrier:
    """Retries of one stream's records."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: ProducerConfig, *, discovery: StreamDiscovery,
                 intake: Intake, limiter: Limiter, resolver: Resolver, backoff: Backoff) -> None:
        self._loop = loop
        self._discovery = discovery
        self._map = discovery.map
        self._intake = intake
        self._limiter = limiter
        self._resolver = resolver
        self._backoff = backoff
        self._max_buffered = config.record_max_buffered_time
        self._ttl = config.record_ttl
        self._max_size = config.aggregation_max_size
        self._max_count = config.aggregation_max_count
        #: Kinesis records waiting out a retry backoff, by timer.
        self._held: dict[asyncio.TimerHandle, list[KinesisRecord]] = {}
        #: Records that reached the wrong shard, waiting for the refreshed map to be sent again.
        self._misrouted: list[PendingRecord] = []
        self._misrouted_futures: list[Any] = []
        #: Why the producer gave up, once it has: nothing is retried from then on.
        self.giving_up: str | None = None

    def start_giving_up(self, reason: str) -> None:
        self.giving_up = reason

    def give_up(self, krs: list[KinesisRecord]) -> None:
        """No more attempts for these Kinesis records: resolved for what is known of them."""
        reason = self.giving_up or "the producer shut down"
        for kr in krs:
            self._resolver.give_up_kinesis_record(kr, reason)

    def hold(self, krs: list[KinesisRecord]) -> None:
        """Retry after a jittered exponential backoff, never past the records' expiry."""
        if self.giving_up is not None:
            self.give_up(krs)
            return
        now = self._loop.time()
        failures = max(kr.request_failures for kr in krs)
        delay = self._backoff.delay(failures)
        delay = max(0.0, min(delay, min(kr.expiry for kr in krs) - now))
        timer = self._loop.call_later(delay, self._release_held, krs)
        self._held[timer] = krs

    def _release_held(self, krs: list[KinesisRecord]) -> None:
        for timer, held in list(self._held.items()):
            if held is krs:
                del self._held[timer]
                break
        else:
            return
        self.requeue(krs)
        self._limiter.done({kr.shard_id for kr in krs})

    def requeue(self, krs: list[KinesisRecord]) -> None:
        """Put failed Kinesis records back at the front of their shards' queues, oldest first.

        Expired user records fail here; records whose prediction is no longer valid (the map
        changed under them) are predicted again and re-aggregated.
        """
        if self.giving_up is not None:
            self.give_up(krs)
            return
        now = self._loop.time()
        shard_map = self._map
        generation = shard_map.generation
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
                self._resolver.fail(expired, expired_futures, kr_log, EXPIRED, _expiry_message(kr_log),
                                    retryable=True, shard_id=kr.shard_id)
                loose.extend(with_log(record, kr_log) for record in alive)
                loose_futures.extend(alive_futures)
            elif kr.generation != generation and (kr.shard_id is None or not shard_map.is_open(kr.shard_id)):
                loose.extend(with_log(record, kr_log) for record in kr.records)
                loose_futures.extend(kr.futures)
            else:
                kr.deadline = deadline
                fronts.setdefault(kr.shard_id, []).append(kr)
        if loose:
            self._regroup_into(fronts, loose, loose_futures, deadline)
        self._limiter.push_front(fronts)

    def requeue_records(self, records: list[PendingRecord], futures: list[Any], now: float) -> None:
        """Send user records again (their logs already hold their attempts), ahead of younger ones."""
        if self.giving_up is not None:
            self._resolver.give_up(records, futures, (), self.giving_up, shard_id=None)
            return
        ttl = self._ttl
        (alive, alive_futures), (expired, expired_futures) = split(
            records, futures, lambda record: record[ARRIVAL] + ttl > now)
        self._resolver.fail(expired, expired_futures, (), EXPIRED,
                            "record reached its RecordTtl before it was delivered", retryable=True, shard_id=None)
        if not self._map.ready:
            self._intake.wait_again(alive, alive_futures)
            return
        fronts: dict[str | None, list[KinesisRecord]] = {}
        self._regroup_into(fronts, alive, alive_futures, now + self._max_buffered / 2)
        self._limiter.push_front(fronts)

    def _regroup_into(
        self, fronts: dict[str | None, list[KinesisRecord]], records: list[PendingRecord], futures: list[Any],
        deadline: float,
    ) -> None:
        shard_map = self._map
        by_shard: dict[str | None, tuple[list[PendingRecord], list[Any]]] = {}
        for record, future in zip(records, futures, strict=True):
            group = by_shard.setdefault(shard_map.shard_for(record[HASH_KEY]), ([], []))
            group[0].append(record)
            group[1].append(future)
        aggregate = self._discovery.aggregate
        for shard_id, (group_records, group_futures) in by_shard.items():
            fronts.setdefault(shard_id, []).extend(regroup(
                group_records, group_futures, shard_id, shard_map.generation,
                aggregate=aggregate and shard_id is not None, max_size=self._max_size,
                max_count=self._max_count, deadline=deadline, ttl=self._ttl,
            ))

    def park_misrouted(self, records: list[PendingRecord], futures: list[Any]) -> None:
        """Records that reached the wrong shard: sent again once the refresh under way is done."""
        if self.giving_up is not None:
            self._resolver.give_up(records, futures, (), self.giving_up, shard_id=None)
            return
        self._misrouted.extend(records)
        self._misrouted_futures.extend(futures)

    def resend_misrouted(self) -> None:
        """After a refresh (or a failed one): the parked records go out with the map there is now."""
        if self._misrouted:
            misrouted, futures = self._misrouted, self._misrouted_futures
            self._misrouted, self._misrouted_futures = [], []
            self.requeue_records(misrouted, futures, self._loop.time())

    def take_held(self) -> list[KinesisRecord]:
        """Remove every Kinesis record waiting out a backoff."""
        krs: list[KinesisRecord] = []
        for timer, held in self._held.items():
            timer.cancel()
            krs.extend(held)
        self._held.clear()
        return krs

    def take_misrouted(self) -> tuple[list[PendingRecord], list[Any]]:
        misrouted, futures = self._misrouted, self._misrouted_futures
        self._misrouted, self._misrouted_futures = [], []
        return misrouted, futures

    def held(self) -> Iterator[KinesisRecord]:
        for krs in self._held.values():
            yield from krs

    def oldest_misrouted(self) -> float | None:
        return min((r[ARRIVAL] for r in self._misrouted), default=None)


def _expiry_message(kr_log: AttemptLog) -> str:
    last_error = next((f"{code}: {message}" for _, _, code, message in reversed(kr_log) if code), None)
    if last_error is None:
        return "record reached its RecordTtl before it was delivered"
    return f"record reached its RecordTtl before it was delivered (last error {last_error})"
