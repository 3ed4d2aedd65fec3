"""The producer's shard map: lookup, invalidation de-duplication, closed-shard ranges, backoff."""

from __future__ import annotations

from typing import Any

from kpl.hashing import MAX_HASH_KEY
from kpl.shard_map import CLOSED_SHARD_TTL, REFRESH_BACKOFF_MAX, ShardMap

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


def test_refresh_backoff_grows_to_thirty_seconds_and_resets() -> None:
    shard_map = ShardMap("s")
    delays = [shard_map.refresh_failed() for _ in range(12)]
    assert delays[:3] == [1.0, 1.5, 2.25]
    assert delays[-1] == REFRESH_BACKOFF_MAX
    assert delays == sorted(delays)
    shard_map.apply(TWO_SHARDS, 1.0)
    assert shard_map.refresh_failed() == 1.0
