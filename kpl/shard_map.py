"""Which shard owns a hash key, per stream: the producer's view of the stream's open shards.

The map is loaded from ListShards (``ShardFilter=AT_LATEST``: open shards only) and refreshed only
when the producer learns it is stale: a record landed on a shard other than the predicted one, or
a prediction fell into a hole.  As in the KPL, an invalidation is ignored when it was observed
before the last refresh started or names a shard the map already dropped, so a burst of stale
results triggers one ListShards, not hundreds (ListShards is limited to 100 calls/s per stream).
Failed refreshes back off with jitter (kpl.retry's tenacity loop): the wait after the n-th failure in a
row is drawn from [0.5 s, min(30 s, 1 s x 1.5**(n-1))], so producers that lost ListShards together do not
call it again together; a success starts the growth over.  The loop stops once nobody waits for a
refresh any more; a refresh asked for later still waits out the window's upper bound.

Closed shards stay known for a minute after they leave the map, so the wrong-shard check can still
tell whether a record that reached a just-closed shard belongs there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

from tenacity import RetryCallState
from tenacity.wait import wait_base

from kpl.aws import list_shards, stream_api_args
from kpl.hashing import HashRange, ShardRanges
from kpl.logs import get_logger
from kpl.retry import Backoff, any_error, retrying, stop_when

log = get_logger(__name__)

DEFAULT_MAX_RECORD_SIZE = 1024 * 1024
CLOSED_SHARD_TTL = 60.0
#: Failed refreshes: the window grows 1 s, x1.5, to 30 s; never sooner than 0.5 s, as ListShards allows
#: 100 calls/s per stream, shared by every producer.
REFRESH_BACKOFF = Backoff(1.0, 30.0, factor=1.5, minimum=0.5)


def refresh_ceiling(failures: int) -> float:
    """The longest wait after ``failures`` failed refreshes in a row; 0 after none."""
    return REFRESH_BACKOFF.ceiling(failures) if failures > 0 else 0.0


def refresh_wait(prior_failures: int) -> wait_base:
    """The jittered waits of a retry loop that starts after ``prior_failures`` failed refreshes: the window
    goes on growing where the previous loop left it."""
    return REFRESH_BACKOFF.wait_after(prior_failures)


class _ClosedShard(NamedTuple):
    """A shard that left the map: its range, kept CLOSED_SHARD_TTL seconds from ``since``."""

    hash_range: HashRange
    since: float


class ShardMap:
    """The open shards of one stream and the recently closed ones; bookkeeping only, no I/O."""

    __slots__ = ("_closed", "_open", "generation", "ranges", "refresh_failures", "stream_name", "updated_at")

    def __init__(self, stream_name: str) -> None:
        self.stream_name = stream_name
        #: None until the first successful ListShards.
        self.ranges: ShardRanges | None = None
        #: Bumped on every change of the open-shard set; containers remember the generation they
        #: were predicted under, so a retry knows whether to predict again.
        self.generation = 0
        #: When the refresh that produced the current map started (monotonic seconds).
        self.updated_at = float("-inf")
        self.refresh_failures = 0
        self._open: dict[str, HashRange] = {}
        self._closed: dict[str, _ClosedShard] = {}

    @property
    def ready(self) -> bool:
        return self.ranges is not None

    def shard_for(self, hash_key: int) -> str | None:
        ranges = self.ranges
        return None if ranges is None else ranges.shard_for(hash_key)

    def range_of(self, shard_id: str) -> HashRange | None:
        """The hash range of an open or recently closed shard; None when the map has not seen it."""
        hash_range = self._open.get(shard_id)
        if hash_range is not None:
            return hash_range
        closed = self._closed.get(shard_id)
        return None if closed is None else closed.hash_range

    def is_open(self, shard_id: str) -> bool:
        return shard_id in self._open

    def apply(self, shards: list[dict[str, Any]], started_at: float) -> bool:
        """Install the result of a ListShards that started at ``started_at``; True when it changed."""
        self.refresh_failures = 0
        self.updated_at = max(self.updated_at, started_at)
        fresh = {shard["ShardId"]: HashRange.from_shard(shard) for shard in shards}
        if fresh == self._open and self.ranges is not None:
            return False
        for shard_id, hash_range in self._open.items():
            if shard_id not in fresh:
                self._closed[shard_id] = _ClosedShard(hash_range, started_at)
        for shard_id in fresh:
            self._closed.pop(shard_id, None)
        self._open = fresh
        self.ranges = ShardRanges(fresh.items())
        self.generation += 1
        return True

    def wants_refresh(self, seen_at: float, predicted_shard: str | None) -> bool:
        """Whether staleness observed at ``seen_at`` about ``predicted_shard`` calls for a refresh."""
        if seen_at <= self.updated_at:
            return False
        return predicted_shard is None or predicted_shard in self._open or self.ranges is None

    def refresh_failed(self) -> float:
        """Record a failed refresh; the longest wait before the next one (the upper bound of its jittered
        window, deterministic: discovery keeps a stream unusable that long)."""
        self.refresh_failures += 1
        return refresh_ceiling(self.refresh_failures)

    def evict_closed(self, now: float) -> None:
        expired = [shard_id for shard_id, closed in self._closed.items() if now - closed.since > CLOSED_SHARD_TTL]
        for shard_id in expired:
            del self._closed[shard_id]


async def list_open_shards(client: Any, stream_name: str) -> list[dict[str, Any]]:
    """Every open shard of the stream."""
    return await list_shards(client, stream_name, shard_filter="AT_LATEST")


async def describe_stream_limits(client: Any, stream_name: str) -> tuple[int, bool]:
    """(maximum record size in bytes, whether the service assigns partition keys itself)."""
    summary = (await client.describe_stream_summary(**stream_api_args(stream_name)))["StreamDescriptionSummary"]
    max_kib = summary.get("MaxRecordSizeInKiB")
    max_size = int(max_kib) * 1024 if max_kib else DEFAULT_MAX_RECORD_SIZE
    return max_size, summary.get("RecordDistributionStrategy") == "AUTO"


class ShardMapRefresher:
    """Runs ListShards for a :class:`ShardMap` when asked, one refresh at a time, with backoff.

    ``on_refreshed(changed)`` runs after each successful refresh, ``on_failed(error)`` after each
    failed one; both on the event loop.
    """

    def __init__(
        self,
        shard_map: ShardMap,
        client: Any,
        on_refreshed: Callable[[bool], None],
        on_failed: Callable[[BaseException], None],
    ) -> None:
        self.shard_map = shard_map
        self._client = client
        self._on_refreshed = on_refreshed
        self._on_failed = on_failed
        self._task: asyncio.Task[None] | None = None
        #: Latest staleness observation not yet covered by a refresh.
        self._wanted_since: float | None = None
        self._not_before = float("-inf")
        self._last_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def request(self, seen_at: float, predicted_shard: str | None = None) -> None:
        """Ask for a refresh because of staleness seen at ``seen_at`` (de-duplicated)."""
        if not self.shard_map.wants_refresh(seen_at, predicted_shard):
            return
        if self._wanted_since is None or seen_at > self._wanted_since:
            self._wanted_since = seen_at
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"kpl-shard-map:{self.shard_map.stream_name}"
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._wanted_since is not None:
                wait = self._not_before - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    shards, started = await self._list_while_wanted()
                except Exception:  # logged and reported by the attempt; nobody waits for a refresh any more
                    self._not_before = loop.time() + refresh_ceiling(self.shard_map.refresh_failures)
                    self._log_failure(self._not_before - loop.time())
                    return
                changed = self.shard_map.apply(shards, started)
                if changed:
                    log.debug("shard map updated", stream=self.shard_map.stream_name, shards=len(shards),
                              generation=self.shard_map.generation)
                self._on_refreshed(changed)
        finally:
            self._task = None

    async def _list_while_wanted(self) -> tuple[list[dict[str, Any]], float]:
        """ListShards until it succeeds; (the open shards, when the call started).

        A failure is counted and reported (``on_failed``) inside the attempt, so that the stop sees whether
        anyone still waits: the records that wait for the map ask again (:meth:`retry_later`), a stream that
        became unusable does not.  Any error is retried while someone waits, as a refresh is the only way
        out; errors that will repeat make the stream unusable, which ends the loop.
        """
        loop = asyncio.get_running_loop()
        async for attempt in retrying(wait=refresh_wait(self.shard_map.refresh_failures),
                                      stop=stop_when(lambda: self._wanted_since is None),
                                      retry_on=any_error,
                                      before_sleep=self._retrying):
            with attempt:
                self._wanted_since = None
                started = loop.time()
                try:
                    return await list_open_shards(self._client, self.shard_map.stream_name), started
                except Exception as exc:
                    self._last_error = exc
                    self.shard_map.refresh_failed()
                    self._on_failed(exc)
                    raise
        raise AssertionError("retrying ends with a result or an error")

    def _retrying(self, retry_state: RetryCallState) -> None:
        self._not_before = asyncio.get_running_loop().time() + retry_state.upcoming_sleep
        self._log_failure(retry_state.upcoming_sleep)

    def _log_failure(self, retry_in: float) -> None:
        error = self._last_error
        log.warning("shard map refresh failed", stream=self.shard_map.stream_name, error=type(error).__name__,
                    detail=str(error), retry_in=round(retry_in, 2))

    def retry_later(self, seen_at: float) -> None:
        """Keep trying after a failure (the records waiting for the map need one)."""
        if self._wanted_since is None or seen_at > self._wanted_since:
            self._wanted_since = seen_at

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
