from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpl.hashing import (
    MAX_HASH_KEY,
    HashRange,
    ShardRanges,
    effective_hash_key,
    parse_explicit_hash_key,
    partition_key_hash,
)


def test_partition_key_hash_is_big_endian_md5() -> None:
    digest = hashlib.md5(b"user-1").digest()
    assert partition_key_hash("user-1") == int.from_bytes(digest, "big")
    assert effective_hash_key("user-1", None) == partition_key_hash("user-1")
    assert effective_hash_key("user-1", "7") == 7


@pytest.mark.parametrize("bad", ["-1", str(MAX_HASH_KEY + 1), "12a", "", " ", "١٢"])
def test_bad_explicit_hash_keys(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_explicit_hash_key(bad)


def _even_split(count: int) -> ShardRanges:
    width = (MAX_HASH_KEY + 1) // count
    ranges = []
    for i in range(count):
        end = MAX_HASH_KEY if i == count - 1 else (i + 1) * width - 1
        ranges.append((f"shardId-{i:012d}", HashRange(i * width, end)))
    return ShardRanges(ranges)


@given(st.integers(0, MAX_HASH_KEY), st.integers(1, 64))
def test_every_key_maps_to_the_shard_that_contains_it(key: int, count: int) -> None:
    ranges = _even_split(count)
    shard = ranges.shard_for(key)
    assert shard is not None
    found = ranges.range_of(shard)
    assert found is not None and key in found
    assert ranges.holes() == []


def test_holes_are_reported_and_keys_in_them_map_to_none() -> None:
    ranges = ShardRanges([("a", HashRange(0, 99)), ("b", HashRange(200, MAX_HASH_KEY))])
    assert ranges.holes() == [HashRange(100, 199)]
    assert ranges.shard_for(150) is None
    assert ranges.shard_for(99) == "a" and ranges.shard_for(200) == "b"
