"""What the producer must know about a stream before routing its records: its shard map and limits.

The shard map (ListShards, refreshed when stale; :mod:`kpl.shard_map`) says which shard owns a
hash key; DescribeStreamSummary says how large a record may be and whether the service assigns
partition keys itself (the KPL 1.1 does not aggregate for such streams, and neither does this
producer).  Records wait in the intake until both are known.

A stream that does not exist, or an error that will repeat on every call (no credentials, denied
access, an invalid region: :mod:`kpl.setup_errors`), makes the stream *unusable* for the upper bound of
the shard-map backoff window (1 s growing x1.5 to 30 s; not jittered, so the period is predictable):
what waits fails at once, non-retryable, and so do new records until the next attempt.  Discovery
reports what it learns to one listener, the stream's pipeline (:mod:`kpl.stream`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from kpl.hashing import ShardRanges
from kpl.logs import get_logger
from kpl.records import RecordError
from kpl.retry import ErrorKind, classify, error_code, error_message
from kpl.setup_errors import setup_error
from kpl.shard_map import DEFAULT_MAX_RECORD_SIZE, ShardMap, ShardMapRefresher, describe_stream_limits

log = get_logger(__name__)

RESOURCE_NOT_FOUND = "ResourceNotFoundException"


class DiscoveryListener(Protocol):
    """What the stream's pipeline does with what discovery learns."""

    def stream_ready(self) -> None:
        """The map and the limits may both be known now: route the records that waited."""

    def map_refreshed(self, changed: bool) -> None:
        """A refresh succeeded (``changed``: the open-shard set is different)."""

    def map_refresh_failed(self) -> None:
        """A refresh failed (after :meth:`stream_unusable` when it made the stream unusable)."""

    def stream_unusable(self, error: RecordError) -> None:
        """Records cannot be sent to this stream for now: fail those that wait, with ``error``."""


class StreamDiscovery:
    """The shard map and the limits of one stream, loaded and refreshed in the background."""

    def __init__(self, stream_name: str, loop: asyncio.AbstractEventLoop, control_client: Any,
                 listener: DiscoveryListener, *, max_user_record_size: int | None, aggregate: bool,
                 region: str | None = None, endpoint_url: str | None = None) -> None:
        self.stream_name = stream_name
        self._loop = loop
        self._client = control_client
        self._listener = listener
        self.map = ShardMap(stream_name)
        self.refresher = ShardMapRefresher(self.map, control_client, self._refreshed, self._refresh_failed)
        #: Whether records of this stream are aggregated (off for streams that assign keys themselves).
        self.aggregate = aggregate
        self._cap = max_user_record_size
        self.max_record_size: int | None = None
        self._limits_known: asyncio.Future[None] = loop.create_future()
        self._describe_task: asyncio.Task[None] | None = None
        #: (error, until): while set, records for the stream fail at once with ``error``.
        self.unusable: tuple[RecordError, float] | None = None
        #: The last failed refresh, for the message of records that expire waiting for the map.
        self.last_error: str | None = None
        #: The map and the stream's limits are known: records are routed as they arrive.
        self.ready = False
        #: The hash ranges records are routed by (the map's, once ready).
        self.ranges = ShardRanges(())
        self._region = region
        self._endpoint_url = endpoint_url
        self.start()

    def start(self) -> None:
        """Load the stream's limits and its shard map."""
        if self._limits_known.done():
            self._limits_known = self._loop.create_future()
        self._describe_task = self._loop.create_task(self._describe(), name=f"kpl-describe:{self.stream_name}")
        self.refresher.request(self._loop.time())

    async def _describe(self) -> None:
        try:
            max_size, service_assigns_keys = await describe_stream_limits(self._client, self.stream_name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = self._problem(exc)
            if problem is not None:
                self._make_unusable(problem)
                return
            # Narrow IAM policies may allow PutRecords but not DescribeStreamSummary.
            log.warning("DescribeStreamSummary failed; assuming the default 1 MiB record limit",
                        stream=self.stream_name, error=error_code(exc), detail=error_message(exc))
            max_size, service_assigns_keys = DEFAULT_MAX_RECORD_SIZE, False
        self.max_record_size = max_size
        if service_assigns_keys and self.aggregate:
            # Kinesis places records itself on such streams, so an aggregate's sub-records could
            # land anywhere: the KPL 1.1 does not aggregate for them either.
            log.info("stream assigns partition keys itself; aggregation is off for it", stream=self.stream_name)
            self.aggregate = False
        if not self._limits_known.done():
            self._limits_known.set_result(None)
        self._listener.stream_ready()

    @property
    def limits_known(self) -> bool:
        return self._limits_known.done()

    async def wait_for_limits(self) -> None:
        await asyncio.shield(self._limits_known)

    def record_size_limit(self) -> int:
        """Partition key + data bytes a record may have (the stream's limit, capped by the config)."""
        limit = self.max_record_size or DEFAULT_MAX_RECORD_SIZE
        return limit if self._cap is None else min(limit, self._cap)

    def check_ready(self) -> bool:
        """Whether records can be routed now (and from now on, until the stream becomes unusable)."""
        ranges = self.map.ranges
        if ranges is None or not self._limits_known.done() or self.unusable is not None:
            return False
        self.ranges = ranges
        self.ready = True
        return True

    def refusal(self, now: float) -> RecordError | None:
        """The error new records fail with at once while the stream is unusable; None otherwise.

        Once the backoff period is over, discovery starts again and records wait for it.
        """
        unusable = self.unusable
        if unusable is None:
            return None
        error, until = unusable
        if now < until:
            return error
        self.unusable = None
        self.start()
        return None

    def request_refresh(self, seen_at: float, predicted_shard: str | None = None) -> None:
        self.refresher.request(seen_at, predicted_shard)

    def _problem(self, error: BaseException) -> RecordError | None:
        """The error records fail with at once, when ``error`` will repeat (a missing stream, a setup problem)."""
        problem = setup_error(error, region=self._region, endpoint_url=self._endpoint_url)
        if problem is None and error_code(error) == RESOURCE_NOT_FOUND:
            problem = RecordError(RESOURCE_NOT_FOUND, error_message(error))
        return problem

    def _make_unusable(self, record_error: RecordError) -> None:
        delay = self.map.refresh_failed()  # the window's upper bound: deterministic
        self.unusable = (record_error, self._loop.time() + delay)
        self.ready = False
        if not self._limits_known.done():
            self._limits_known.set_result(None)
        self._listener.stream_unusable(record_error)

    def _refreshed(self, changed: bool) -> None:
        self.unusable = None
        self.last_error = None
        if changed and self.map.ranges is not None:
            self.ranges = self.map.ranges
        self._listener.map_refreshed(changed)

    def _refresh_failed(self, error: BaseException) -> None:
        self.last_error = f"{error_code(error)}: {error_message(error)}"
        problem = self._problem(error)
        if problem is None and classify(error) is ErrorKind.FATAL:
            # Without ListShards there is no routing: a denied or invalid call fails the records now.
            problem = RecordError(error_code(error), f"ListShards failed: {error_message(error)}")
        if problem is not None:
            self._make_unusable(problem)
        self._listener.map_refresh_failed()

    def retry_later(self) -> None:
        """Keep refreshing after a failure (records are waiting for the map)."""
        self.refresher.retry_later(self._loop.time())

    async def close(self) -> None:
        await self.refresher.close()
        if self._describe_task is not None and not self._describe_task.done():
            self._describe_task.cancel()
        if not self._limits_known.done():
            self._limits_known.cancel()
