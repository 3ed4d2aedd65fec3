"""The producer's shard map: lookup, invalidation de-duplication, closed-shard ranges, jittered refresh backoff."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
from tenacity import stop_after_attempt

import kpl.shard_map as shard_map_module
from kpl.hashing import MAX_HASH_KEY
from kpl.logs import EVENT_ATTRIBUTE
from kpl.retry import Backoff, retrying
from kpl.shard_map import (
    CLOSED_SHARD_TTL,
    REFRESH_BACKOFF,
    ShardMap,
    ShardMapRefresher,
    refresh_ceiling,
    refresh_wait,
)
from tests.support.waiting import async_wait_for

HALF = (MAX_HASH_KEY + 1) // 2
QUARTER = HALF // 2


def shard(shard_id: str, start: int, end: int) -> dict[str, Any]:
    return {"ShardId": shard_id, "HashKeyRange": {"StartingHashKey": str(start), "EndingHashKey": str(end)}}


TWO_SHARDS = [shard("shardId-000000000000", 0, HALF - 1), shard("shardId-000000000001", HALF, MAX_HASH_KEY)]
AFTER_SPLIT = [  # shard 0 split into 2 and 3
    shard("shardId-000000000001", HALF, MAX_HASH_KEY),
    shard("shardId-000000000002", 0, QUARTER - 1),
    shard("shardId-000000000003", QUARTER, HALF - 1),
]


def test_lookup_by_hash_key() -> None:
    shard_map = ShardMap("s")
    assert not shard_map.ready and shard_map.shard_for(0) is None
    assert shard_map.apply(TWO_SHARDS, started_at=1.0)
    assert shard_map.ready and shard_map.generation == 1
    assert shard_map.shard_for(0) == "shardId-000000000000"
    assert shard_map.shard_for(HALF - 1) == "shardId-000000000000"
    assert shard_map.shard_for(HALF) == "shardId-000000000001"
    assert shard_map.shard_for(MAX_HASH_KEY) == "shardId-000000000001"


def test_an_unchanged_listing_keeps_the_generation() -> None:
    shard_map = ShardMap("s")
    shard_map.apply(TWO_SHARDS, 1.0)
    assert not shard_map.apply(list(reversed(TWO_SHARDS)), 2.0)
    assert shard_map.generation == 1 and shard_map.updated_at == 2.0


def test_closed_shards_keep_their_range_for_a_while() -> None:
    shard_map = ShardMap("s")
    shard_map.apply(TWO_SHARDS, 1.0)
    assert shard_map.apply(AFTER_SPLIT, 2.0)
    assert shard_map.generation == 2
    assert not shard_map.is_open("shardId-000000000000")
    closed = shard_map.range_of("shardId-000000000000")
    assert closed is not None and (closed.start, closed.end) == (0, HALF - 1)
    assert shard_map.shard_for(QUARTER) == "shardId-000000000003"
    shard_map.evict_closed(2.0 + CLOSED_SHARD_TTL / 2)
    assert shard_map.range_of("shardId-000000000000") is not None
    shard_map.evict_closed(2.0 + CLOSED_SHARD_TTL + 1)
    assert shard_map.range_of("shardId-000000000000") is None
    assert shard_map.range_of("shardId-000000000009") is None


def test_invalidations_are_deduplicated_like_the_kpl() -> None:
    shard_map = ShardMap("s")
    assert shard_map.wants_refresh(0.5, None), "a map never loaded always wants a refresh"
    shard_map.apply(TWO_SHARDS, started_at=10.0)
    # Staleness seen before the current map was fetched is already covered by it.
    assert not shard_map.wants_refresh(9.0, "shardId-000000000000")
    assert shard_map.wants_refresh(11.0, "shardId-000000000000")
    shard_map.apply(AFTER_SPLIT, started_at=12.0)
    # A prediction for a shard the map already dropped: the map is newer than the prediction.
    assert not shard_map.wants_refresh(13.0, "shardId-000000000000")
    assert shard_map.wants_refresh(13.0, "shardId-000000000002")
    assert shard_map.wants_refresh(13.0, None)


def test_refresh_backoff_window_grows_to_thirty_seconds_and_resets() -> None:
    """The window's upper bound (discovery's deterministic "unusable" period) grows x1.5 to 30 s."""
    shard_map = ShardMap("s")
    ceilings = [shard_map.refresh_failed() for _ in range(12)]
    assert ceilings[:3] == [1.0, 1.5, 2.25]
    assert ceilings[-1] == REFRESH_BACKOFF.maximum
    assert ceilings == sorted(ceilings)
    assert refresh_ceiling(10**6) == REFRESH_BACKOFF.maximum  # no overflow however long the outage
    shard_map.apply(TWO_SHARDS, 1.0)
    assert shard_map.refresh_failed() == 1.0


def _waits(prior_failures: int, attempts: int) -> list[float]:
    """The waits of a refresh retry loop that fails ``attempts`` times (sleeps recorded, not slept)."""
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    async def fail() -> None:
        async for attempt in retrying(wait=refresh_wait(prior_failures), stop=stop_after_attempt(attempts),
                                      retry_on=lambda error: True, sleep=record):
            with attempt:
                raise RuntimeError("ListShards failed")

    with pytest.raises(RuntimeError):
        asyncio.run(fail())
    return slept


def test_refresh_waits_are_jittered_within_the_growing_window() -> None:
    waits = _waits(0, 13)
    assert len(waits) == 12
    for failures, wait in enumerate(waits, start=1):
        assert REFRESH_BACKOFF.minimum <= wait <= refresh_ceiling(failures)
    spread = _waits(20, 200)  # every window is [0.5 s, 30 s] by now
    assert all(REFRESH_BACKOFF.minimum <= wait <= REFRESH_BACKOFF.maximum for wait in spread)
    assert min(spread) < REFRESH_BACKOFF.maximum / 4 and max(spread) > REFRESH_BACKOFF.maximum * 3 / 4, "jittered"


def test_a_new_refresh_loop_goes_on_from_the_failures_before_it() -> None:
    """After 3 failed refreshes, the next loop's first wait is within the 4th failure's window, and so on."""
    waits = _waits(3, 200)
    assert all(REFRESH_BACKOFF.minimum <= wait <= refresh_ceiling(4 + attempt) for attempt, wait in enumerate(waits))
    assert max(waits) > refresh_ceiling(4)


class FailingKinesis:
    """ListShards answers from a script: an exception is raised, a list of shards is the answer."""

    def __init__(self, script: list[Exception | list[dict[str, Any]]]) -> None:
        self.script = script
        self.calls: list[float] = []

    async def list_shards(self, **request: Any) -> dict[str, Any]:
        self.calls.append(asyncio.get_running_loop().time())
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return {"Shards": answer}


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_map_module, "REFRESH_BACKOFF", Backoff(0.04, 0.2, factor=1.5, minimum=0.02))


@pytest.mark.usefixtures("short_backoff")
def test_a_refresh_is_retried_with_backoff_while_records_wait(caplog: pytest.LogCaptureFixture) -> None:
    client = FailingKinesis([RuntimeError("throttled"), RuntimeError("throttled"), TWO_SHARDS])
    refreshed: list[bool] = []

    async def scenario() -> None:
        shard_map = ShardMap("s")
        refresher: ShardMapRefresher

        def failed(error: BaseException) -> None:  # records wait for the map: they ask again
            refresher.retry_later(asyncio.get_running_loop().time())

        refresher = ShardMapRefresher(shard_map, client, refreshed.append, failed)
        refresher.request(0.0)
        await async_wait_for(lambda: refreshed, 10, message="the refresh to succeed")
        assert shard_map.ready and shard_map.refresh_failures == 0

    caplog.set_level(logging.WARNING, logger="kpl")
    asyncio.run(scenario())
    assert refreshed == [True] and len(client.calls) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(client.calls)]
    for failures, gap in enumerate(gaps, start=1):
        assert gap >= shard_map_module.REFRESH_BACKOFF.minimum - 0.005
        assert gap < shard_map_module.refresh_ceiling(failures) + 5  # a loaded machine may add, never less
    events = [getattr(record, EVENT_ATTRIBUTE) for record in caplog.records]
    assert [event["event"] for event in events] == ["shard map refresh failed"] * 2
    assert all(0.02 <= event["retry_in"] <= 0.2 for event in events)


@pytest.mark.usefixtures("short_backoff")
def test_the_refresh_loop_stops_when_nobody_waits_and_a_later_request_waits_out_the_window() -> None:
    client = FailingKinesis([RuntimeError("throttled"), TWO_SHARDS])
    failures: list[BaseException] = []
    refreshed: list[bool] = []

    async def scenario() -> None:
        shard_map = ShardMap("s")
        refresher = ShardMapRefresher(shard_map, client, refreshed.append, failures.append)
        refresher.request(0.0)
        await async_wait_for(lambda: not refresher.running, 10, message="the loop to stop: nobody waits")
        assert len(client.calls) == 1 and len(failures) == 1 and not refreshed
        refresher.request(asyncio.get_running_loop().time())
        await async_wait_for(lambda: refreshed, 10, message="the refresh asked for later")

    asyncio.run(scenario())
    assert client.calls[1] - client.calls[0] >= shard_map_module.refresh_ceiling(1) - 0.005
