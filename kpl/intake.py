"""The intake: a record's validation at the ``put_record`` call, and its way to the accumulator.

Input is validated in the calling thread, at the call, so a bad record raises where it was made:
``ArgumentTypeError`` (a ``TypeError``) for data that is not bytes-like, ``InvalidArgumentError`` (a
``ValueError``) naming the problem for a bad partition key or explicit hash key.  (Size limits, which
depend on the stream, are the producer's to check.)

Applications reuse partition keys (a user id, a device id), and MD5 is the largest single cost of
accepting a record, so the hash key and UTF-8 length of recently seen keys are cached.  A key is
cached only once it has passed validation, so a cache hit needs no further checks: the common call
(``bytes`` data, a known ``str`` key, no explicit hash key) is one dict lookup and a tuple.

On the event loop, :class:`Intake` takes the records of a stream in bursts (the faces append to
:attr:`Intake.incoming`; one loop callback per burst hands it in), predicts each record's shard
from the stream's hash ranges, groups the burst by shard and hands each group to the shard's
aggregate in one call.  Records that arrive before the stream's shard map and limits are known wait
here (for at most their TTL).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from kpl.accumulator import ARRIVAL, HASH_KEY, NO_LOG, SIZE, Aggregator, PendingRecord, seal, split
from kpl.discovery import StreamDiscovery
from kpl.errors import ArgumentTypeError, InvalidArgumentError, KinesisToolkitError
from kpl.hashing import MAX_PARTITION_KEY_LENGTH, parse_explicit_hash_key, partition_key_hash
from kpl.limiter import Limiter
from kpl.records import EXPIRED, RecordError
from kpl.resolver import Resolver

#: (hash key, UTF-8 length) of valid partition keys seen recently; dropped whole when it fills up.
#: A key found here needs no further checks (the producer's faces look it up themselves).
KNOWN_KEYS: dict[str, tuple[int, int]] = {}
_KEYS_LIMIT = 1 << 14

#: Records of a stream that may wait for its shard map (they cannot be sent before it is loaded); from
#: this many on, an awaited ``put_record`` waits for the map instead (see :attr:`Intake.held`).
MAP_WAIT_RECORDS = 4096

_getrandbits = random.getrandbits
_size = itemgetter(SIZE)
_hash_key = itemgetter(HASH_KEY)


def pending_record(data: object, partition_key: object, explicit_hash_key: object, arrival: float) -> PendingRecord:
    """The producer's record for one put, arriving at ``arrival``; ArgumentTypeError/InvalidArgumentError
    on bad input."""
    if type(data) is bytes and type(partition_key) is str and explicit_hash_key is None:
        key = KNOWN_KEYS.get(partition_key)
        if key is not None:
            return (partition_key, None, data, key[0], key[1] + len(data), arrival, NO_LOG)
    data, partition_key, explicit_hash_key, hash_key, size = validate_record(data, partition_key, explicit_hash_key)
    return (partition_key, explicit_hash_key, data, hash_key, size, arrival, NO_LOG)


def pending_records(records: Iterable[object], arrival: float) -> list[PendingRecord]:
    """The producer's records for a batch of ``(data, partition_key)`` or ``(data, partition_key,
    explicit_hash_key)``, all arriving at ``arrival``; ArgumentTypeError/InvalidArgumentError naming the
    first bad one."""
    out: list[PendingRecord] = []
    append = out.append
    known = KNOWN_KEYS.get
    try:
        for item in records:
            if type(item) is tuple and len(item) == 2:
                data, partition_key = item
                if type(data) is bytes and type(partition_key) is str:
                    key = known(partition_key)
                    if key is not None:
                        append((partition_key, None, data, key[0], key[1] + len(data), arrival, NO_LOG))
                        continue
                append(pending_record(data, partition_key, None, arrival))
            elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
                explicit_hash_key = item[2] if len(item) == 3 else None
                append(pending_record(item[0], item[1], explicit_hash_key, arrival))
            else:
                raise ArgumentTypeError("each record must be (data, partition_key) or (data, partition_key, "
                                        f"explicit_hash_key), not {type(item).__name__}")
    except (TypeError, ValueError) as exc:
        # Python's own (records not iterable, an item whose len() fails) become ours, with the index too.
        kind = type(exc) if isinstance(exc, KinesisToolkitError) else (
            ArgumentTypeError if isinstance(exc, TypeError) else InvalidArgumentError)
        raise kind(f"records[{len(out)}]: {exc}") from exc
    return out


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
            raise ArgumentTypeError(
                f"data must be bytes-like (bytes, bytearray or memoryview), not {type(data).__name__}")
        data = bytes(data)  # a private copy: the caller may reuse its buffer
    if partition_key is None:
        random_key = f"{_getrandbits(128):032x}"  # used once: not worth a place in the cache
        if explicit_hash_key is None:
            return data, random_key, None, partition_key_hash(random_key), 32 + len(data)
        partition_key = random_key
    elif type(partition_key) is not str:
        if not isinstance(partition_key, str):
            raise ArgumentTypeError(f"partition_key must be str, not {type(partition_key).__name__}")
        partition_key = str(partition_key)
    if explicit_hash_key is None:
        hash_key, key_length = KNOWN_KEYS.get(partition_key) or _learn_key(partition_key)
        return data, partition_key, None, hash_key, key_length + len(data)
    raw_key = _encode_partition_key(partition_key)
    hash_key = parse_explicit_hash_key(explicit_hash_key)  # type: ignore[arg-type]
    return data, partition_key, str(hash_key), hash_key, len(raw_key) + len(data)


def _learn_key(partition_key: str) -> tuple[int, int]:
    """Validate a partition key and cache its (hash key, UTF-8 length)."""
    raw_key = _encode_partition_key(partition_key)
    key = (partition_key_hash(raw_key), len(raw_key))
    if len(KNOWN_KEYS) >= _KEYS_LIMIT:
        KNOWN_KEYS.clear()
    KNOWN_KEYS[partition_key] = key
    return key


def _encode_partition_key(partition_key: str) -> bytes:
    length = len(partition_key)
    if length == 0 or length > MAX_PARTITION_KEY_LENGTH:
        raise InvalidArgumentError(f"partition_key must have 1 to {MAX_PARTITION_KEY_LENGTH} characters, got {length}")
    try:
        return partition_key.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"partition_key is not encodable as UTF-8: {exc}") from exc


class Intake:
    """One stream's records from the faces to the per-shard accumulator (or, unaggregated, the limiter)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, discovery: StreamDiscovery, aggregator: Aggregator,
                 limiter: Limiter, resolver: Resolver, *, max_buffered: float, ttl: float) -> None:
        self._loop = loop
        self._discovery = discovery
        self._aggregator = aggregator
        self._limiter = limiter
        self._resolver = resolver
        self._max_buffered = max_buffered
        self._ttl = ttl
        #: Records (and their futures) put since the last :meth:`take_incoming`.  The faces append
        #: to these lists and schedule one ``take_incoming`` per burst.
        self.incoming: list[PendingRecord] = []
        self.incoming_futures: list[Any] = []
        #: Records (and their futures) that arrived before the shard map and the stream's limits.
        self._waiting: list[PendingRecord] = []
        self._waiting_futures: list[Any] = []
        #: MAP_WAIT_RECORDS records wait for the map: awaited puts wait too (:meth:`wait_until_released`)
        #: rather than pile up records that cannot be sent (at start-up the caller's loop would otherwise
        #: put tens of thousands while ListShards is answered, each record's future kept alive meanwhile).
        self.held = False
        self._released: asyncio.Future[None] | None = None
        #: Records taken in since the last metrics sample.
        self.received = 0

    def take_incoming(self) -> None:
        """Take the records appended to :attr:`incoming` since the last call."""
        records = self.incoming
        if records:
            futures = self.incoming_futures
            self.incoming, self.incoming_futures = [], []
            self.add_burst(records, futures)

    def add_burst(self, records: list[PendingRecord], futures: list[Any]) -> None:
        """Take validated, admitted records and their futures, oldest first: the hot path."""
        self.received += len(records)
        if self._discovery.ready:
            self._route_ready(records, futures)
        else:
            self._add_before_map(records, futures)

    def _route_ready(self, records: list[PendingRecord], futures: list[Any]) -> None:
        """Predict each record's shard and pass it on: into its shard's aggregate, or alone."""
        discovery = self._discovery
        shard_ids = discovery.ranges.shards_for(map(_hash_key, records))
        if not discovery.aggregate:
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
        discovery = self._discovery
        if shard_id is None:
            # A hole in the map (a reshard in progress): send it alone, routed by its own hash key.
            discovery.request_refresh(self._loop.time())
        elif discovery.aggregate:
            self._aggregator.add(record, future, shard_id)
            return
        self._limiter.add(seal([record], [future], None, shard_id, discovery.map.generation,
                               record[ARRIVAL] + self._max_buffered, self._ttl, record[SIZE]))

    def _add_before_map(self, records: list[PendingRecord], futures: list[Any]) -> None:
        refused = self._discovery.refusal(self._loop.time())
        if refused is not None:
            self._resolver.fail(records, futures, (), refused.code, refused.message, retryable=False, shard_id=None)
            return
        self._waiting += records
        self._waiting_futures += futures
        self._check_hold()

    def wait_again(self, records: list[PendingRecord], futures: list[Any]) -> None:
        """Retried records that need the shard map, which is not there: first in line for it."""
        self._waiting[:0] = records
        self._waiting_futures[:0] = futures
        self._check_hold()

    def _check_hold(self) -> None:
        held = len(self._waiting) >= MAP_WAIT_RECORDS
        if held == self.held:
            return
        self.held = held
        if not held and self._released is not None:
            released, self._released = self._released, None
            if not released.done():
                released.set_result(None)

    async def wait_until_released(self) -> None:
        """Return once fewer than MAP_WAIT_RECORDS records wait for the map (it loaded, or they were resolved)."""
        while self.held:
            if self._released is None:
                self._released = self._loop.create_future()
            await asyncio.shield(self._released)

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def _take_waiting(self) -> tuple[list[PendingRecord], list[Any]]:
        waiting, futures = self._waiting, self._waiting_futures
        self._waiting, self._waiting_futures = [], []
        self._check_hold()
        return waiting, futures

    def route_waiting(self) -> None:
        """Route the records that waited, if the map and the limits are known now."""
        if not self._discovery.check_ready() or not self._waiting:
            return
        limit = self._discovery.record_size_limit()
        waiting, futures = self._take_waiting()
        if max(map(_size, waiting)) <= limit:  # the common case, checked without a Python call per record
            self._route_ready(waiting, futures)
            return
        (fitting, fitting_futures), too_large = split(waiting, futures, lambda record: record[SIZE] <= limit)
        self._route_ready(fitting, fitting_futures)
        self._resolver.fail(*too_large, (), "ValidationException",
                            f"record is larger than the stream's maximum record size of {limit} bytes",
                            retryable=False, shard_id=None)

    def fail_waiting(self, error: RecordError) -> None:
        self._resolver.fail(*self._take_waiting(), (), error.code, error.message, retryable=False, shard_id=None)

    def expire(self, now: float) -> None:
        """Fail records that waited for the shard map past their TTL."""
        ttl = self._ttl
        if self._waiting and self._waiting[0][ARRIVAL] + ttl <= now:
            (alive, alive_futures), (expired, expired_futures) = split(
                *self._take_waiting(), lambda record: record[ARRIVAL] + ttl > now)
            self._waiting, self._waiting_futures = alive, alive_futures
            self._check_hold()
            reason = self._discovery.last_error or "the stream's shard map could not be loaded in time"
            self._resolver.fail(expired, expired_futures, (), EXPIRED,
                                f"record reached its RecordTtl waiting for the shard map ({reason})",
                                retryable=True, shard_id=None)

    def take_all(self) -> tuple[list[PendingRecord], list[Any]]:
        """Remove every record the intake holds (incoming and waiting), with their futures."""
        records, futures = self.incoming + self._waiting, self.incoming_futures + self._waiting_futures
        self.incoming, self.incoming_futures = [], []
        self._waiting, self._waiting_futures = [], []
        self._check_hold()
        return records, futures

    def oldest_arrival(self) -> float | None:
        arrivals = [r[ARRIVAL] for r in (*self.incoming[:1], *self._waiting[:1])]
        return min(arrivals) if arrivals else None
