"""The per-shard accumulator: user records into Kinesis records (aggregation), as in the KPL.

:class:`Aggregator` keeps one open aggregate per predicted shard (only records bound for the same
shard may share an aggregate, or a consumer would drop sub-records outside its shard's range).  An
aggregate is sealed when the next record does not fit, or when its oldest record has waited
``RecordMaxBufferedTime``, and handed to the next stage (the limiter, :mod:`kpl.limiter`).

Timers exist per aggregate, never per record: the records of a burst bound for one shard enter its
aggregate in one call (:meth:`Aggregator.add_group`), so the work per record is the encoder's loop.
This module also defines the two shapes a record has inside the producer: :data:`PendingRecord` (a
user record) and :class:`KinesisRecord` (one PutRecords entry, with the futures of its records).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Final, NamedTuple

from kpl.aggregation import OVERHEAD, AggregateBuilder
from kpl.records import AttemptLog

#: One user record inside the producer, from ``put_record`` until its result:
#: (partition key, explicit hash key, data, hash key, size, arrival, attempt log).
#: ``size`` is partition key (UTF-8) + data bytes, what Kinesis counts against its limits; the log
#: holds attempts made while the record travelled in earlier Kinesis records (it was regrouped).
#:
#: An exact tuple of atomic values on purpose: the garbage collector stops tracking such tuples, so
#: the records a busy producer holds are not walked by later collections.  (Each tuple's allocation
#: still counts towards the young generation's threshold, as the future's does: two per record, which
#: set how often the collector runs; docs/kpl.md, "Where the time goes".)  The record's future (which
#: would keep it tracked) travels in a parallel list.
PendingRecord = tuple[str, str | None, bytes, int, int, float, AttemptLog]
PARTITION_KEY: Final = 0
EXPLICIT_HASH_KEY: Final = 1
DATA: Final = 2
HASH_KEY: Final = 3
SIZE: Final = 4
ARRIVAL: Final = 5
LOG: Final = 6

NO_LOG: AttemptLog = ()
_record_size = itemgetter(SIZE)
_record_log = itemgetter(LOG)
_arrival = itemgetter(ARRIVAL)


def with_log(record: PendingRecord, log: AttemptLog) -> PendingRecord:
    """The record with ``log`` appended to its attempt log (used when it is regrouped)."""
    return (*record[:LOG], record[LOG] + log)


class KinesisRecord:
    """One PutRecords entry: an aggregate of user records predicted for one shard, or one plain record."""

    __slots__ = ("deadline", "entry", "expiry", "futures", "generation", "log", "oldest_arrival", "records",
                 "regrouped", "request_failures", "shard_id", "size", "user_bytes")

    def __init__(  # noqa: PLR0917  (once per record with aggregation off)
        self, records: list[PendingRecord], futures: list[Any], entry: dict[str, Any], size: int,
        shard_id: str | None, generation: int, deadline: float, oldest_arrival: float, expiry: float,
        user_bytes: int, regrouped: bool = False,
    ) -> None:
        self.records = records
        #: The records' futures, in the same order (asyncio or concurrent.futures: both have set_result).
        self.futures = futures
        #: The PutRecords entry (Data, PartitionKey, ExplicitHashKey), built once.
        self.entry = entry
        #: Outer partition key + data: what counts against the request and shard limits.
        self.size = size
        #: The predicted shard (None when the shard map had no answer).
        self.shard_id = shard_id
        #: The shard-map generation the prediction was made under.
        self.generation = generation
        #: When it must leave the collector.
        self.deadline = deadline
        self.oldest_arrival = oldest_arrival
        #: The earliest RecordTtl expiry among its user records.
        self.expiry = expiry
        #: Partition key + data bytes of its user records.
        self.user_bytes = user_bytes
        #: Some user records carry attempts of earlier Kinesis records (they were regrouped after a
        #: failure), so their results cannot simply share this one's.
        self.regrouped = regrouped
        #: Attempts of this Kinesis record: (start, end, error code, error message).
        self.log: list[tuple[float, float, str | None, str | None]] = []
        #: Consecutive failures that call for backoff (whole-request errors, transient entry errors).
        self.request_failures = 0


def seal(  # noqa: PLR0917  (once per record with aggregation off)
    records: list[PendingRecord], futures: list[Any], builder: AggregateBuilder | None, shard_id: str | None,
    generation: int, deadline: float, ttl: float, user_bytes: int,
) -> KinesisRecord:
    """The Kinesis record for ``records``: the aggregate ``builder`` holds, or the one plain record.

    As in the KPL, one record travels raw (an aggregate of one would only add 20+ bytes), and both
    forms carry the first user record's hash key as ExplicitHashKey, so Kinesis routes the entry to
    the shard that record's key belongs to; an aggregate's partition key is the one-byte "a".
    """
    first = records[0]
    oldest = first[ARRIVAL]
    # Records regrouped after a failure carry attempts of their own (and may be older than the first).
    regrouped = any(map(_record_log, records))
    if regrouped:
        oldest = min(map(_arrival, records))
    if len(records) == 1:
        entry = {"Data": first[DATA], "PartitionKey": first[PARTITION_KEY], "ExplicitHashKey": str(first[HASH_KEY])}
        size = first[SIZE]
    else:
        assert builder is not None
        data = builder.build()
        entry = {"Data": data, "PartitionKey": "a", "ExplicitHashKey": str(first[HASH_KEY])}
        size = len(data) + 1
    return KinesisRecord(records, futures, entry, size, shard_id, generation, deadline, oldest, oldest + ttl,
                         user_bytes, regrouped)


class Partition(NamedTuple):
    """Some user records of a Kinesis record, and their futures, in order (a per-batch value, never per record)."""

    records: list[PendingRecord]
    futures: list[Any]


def split(
    records: Sequence[PendingRecord], futures: Sequence[Any], keep: Callable[[PendingRecord], bool]
) -> tuple[Partition, Partition]:
    """(the records kept, the others), each with its futures, in order."""
    kept = Partition([], [])
    rest = Partition([], [])
    for record, future in zip(records, futures, strict=True):
        side = kept if keep(record) else rest
        side.records.append(record)
        side.futures.append(future)
    return kept, rest


def regroup(
    records: Sequence[PendingRecord], futures: Sequence[Any], shard_id: str | None, generation: int, *,
    aggregate: bool, max_size: int, max_count: int, deadline: float, ttl: float,
) -> list[KinesisRecord]:
    """Kinesis records for user records bound to one shard, in their order (used for retries)."""
    out: list[KinesisRecord] = []
    if not aggregate:
        for record, future in zip(records, futures, strict=True):
            out.append(seal([record], [future], None, shard_id, generation, deadline, ttl, record[SIZE]))
        return out
    index, stop = 0, len(records)
    while index < stop:
        builder = AggregateBuilder(max_size, max_count)
        end = builder.extend(records, index, stop)
        if end == index:  # larger than an aggregate may be: it travels alone
            record = records[index]
            out.append(seal([record], [futures[index]], None, shard_id, generation, deadline, ttl, record[SIZE]))
            index += 1
            continue
        group = list(records[index:end])
        out.append(seal(group, list(futures[index:end]), builder, shard_id, generation, deadline, ttl,
                        sum(map(_record_size, group))))
        index = end
    return out


class _OpenAggregate:
    __slots__ = ("builder", "deadline", "futures", "records", "timer")

    def __init__(self, builder: AggregateBuilder, deadline: float) -> None:
        self.builder = builder
        self.records: list[PendingRecord] = []
        self.futures: list[Any] = []
        #: The first record's: records arrive in time order, so it is the earliest.
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None


class Aggregator:
    """One open aggregate per predicted shard of a stream; sealed aggregates go to ``on_sealed``.

    An aggregate is sealed when the next record does not fit, or ``max_buffered - seal_early`` seconds
    after the arrival of its first record; its deadline (when it must leave the collector) is
    ``max_buffered`` after that arrival.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_sealed: Callable[[KinesisRecord], None],
        *,
        max_size: int,
        max_count: int,
        ttl: float,
        max_buffered: float,
    ) -> None:
        self._loop = loop
        self._on_sealed = on_sealed
        self.max_size = max_size
        self.max_count = max_count
        self.ttl = ttl
        self.max_buffered = max_buffered
        #: How long before its deadline an open aggregate is sealed: the time it is given in the
        #: collector to share a request with others (the deadline is when it must leave that).
        self.seal_early = 0.0
        self.generation = 0
        self._open: dict[str | None, _OpenAggregate] = {}

    def add(self, record: PendingRecord, future: Any, shard_id: str | None) -> None:
        """Add one record predicted for ``shard_id`` (see :meth:`add_group`)."""
        self.add_group(shard_id, [record], [future])

    def add_group(self, shard_id: str | None, records: list[PendingRecord], futures: list[Any]) -> None:
        """Add records predicted for ``shard_id``, oldest first, with their futures.

        The producer's hot path: the records of a burst bound for one shard go into the shard's open
        aggregate in one call to the encoder, and the lists are extended by slices, so the work per
        record is the encoder's loop.  Records arrive in time order (retried records wait for the
        map's routing and come this way in their original order), so an open aggregate's deadline,
        its first record's, is never later than the one of a record joining it.
        """
        aggregate = self._open.get(shard_id)
        index, stop = 0, len(records)
        while index < stop:
            if aggregate is None:
                aggregate = _OpenAggregate(AggregateBuilder(self.max_size, self.max_count),
                                           records[index][ARRIVAL] + self.max_buffered)
            end = aggregate.builder.extend(records, index, stop)
            if end > index:
                if not aggregate.records:
                    self._open[shard_id] = aggregate
                    aggregate.timer = self._loop.call_at(aggregate.deadline - self.seal_early,
                                                         self._deadline_reached, shard_id, aggregate)
                aggregate.records += records[index:end]
                aggregate.futures += futures[index:end]
                index = end
                if index == stop:
                    return
            record = records[index]
            if aggregate.records and record[SIZE] + OVERHEAD <= self.max_size:
                self._seal(shard_id, aggregate)  # full: the record opens the next one
                aggregate = None
                continue
            # Larger than an aggregate may be: it travels alone (the KPL's aggregator bypass).
            self._on_sealed(seal([record], [futures[index]], None, shard_id, self.generation,
                                 record[ARRIVAL] + self.max_buffered, self.ttl, record[SIZE]))
            index += 1
            if not aggregate.records:
                aggregate = None

    def _deadline_reached(self, shard_id: str | None, aggregate: _OpenAggregate) -> None:
        if self._open.get(shard_id) is aggregate:
            self._seal(shard_id, aggregate)

    def _seal(self, shard_id: str | None, aggregate: _OpenAggregate) -> None:
        del self._open[shard_id]
        if aggregate.timer is not None:
            aggregate.timer.cancel()
        records = aggregate.records
        self._on_sealed(seal(records, aggregate.futures, aggregate.builder, shard_id, self.generation,
                             aggregate.deadline, self.ttl, sum(map(_record_size, records))))

    def flush(self) -> None:
        """Seal every open aggregate now."""
        for shard_id, aggregate in list(self._open.items()):
            self._seal(shard_id, aggregate)

    def take(self, shard_ids: set[str | None] | None = None) -> tuple[list[PendingRecord], list[Any]]:
        """Remove the open aggregates of ``shard_ids`` (all when None); their records and futures."""
        records: list[PendingRecord] = []
        futures: list[Any] = []
        for shard_id in [s for s in self._open if shard_ids is None or s in shard_ids]:
            aggregate = self._open.pop(shard_id)
            if aggregate.timer is not None:
                aggregate.timer.cancel()
            records.extend(aggregate.records)
            futures.extend(aggregate.futures)
        return records, futures

    def shards(self) -> list[str | None]:
        return list(self._open)

    def oldest_arrival(self) -> float | None:
        arrivals = [min(map(_arrival, a.records)) for a in self._open.values() if a.records]
        return min(arrivals) if arrivals else None

    def __len__(self) -> int:
        return sum(len(a.records) for a in self._open.values())
