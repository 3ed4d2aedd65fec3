"""Hash-key math shared by the producer (shard prediction) and the consumer (sub-record filtering).

Kinesis maps a record to a shard by a 128-bit hash key: the explicit hash key when one is given,
otherwise MD5 of the UTF-8 partition key read as a big-endian unsigned integer.  Each shard owns an
inclusive range ``[start, end]`` of that space.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from hashlib import md5
from typing import Any

from kpl.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["MAX_HASH_KEY", "HashRange", "ShardRanges", "parse_explicit_hash_key", "partition_key_hash"]

MAX_HASH_KEY = (1 << 128) - 1
MAX_PARTITION_KEY_LENGTH = 256


def partition_key_hash(partition_key: str | bytes) -> int:
    """MD5 of the partition key's UTF-8 bytes, as a 128-bit big-endian integer."""
    raw = partition_key.encode() if isinstance(partition_key, str) else partition_key
    return int.from_bytes(md5(raw).digest(), "big")


def parse_explicit_hash_key(value: str | int) -> int:
    """An explicit hash key (decimal string or int) as an int in ``[0, 2**128)``; InvalidArgumentError (a
    ValueError) otherwise, ArgumentTypeError (a TypeError) for a type that is neither."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"explicit_hash_key must be a decimal integer string, not {value!r}")
    if isinstance(value, int):
        key = value
    elif isinstance(value, str):
        text = value.strip()
        if not text.isdigit() or not text.isascii():
            raise InvalidArgumentError(f"explicit_hash_key must be a decimal integer string, got {value!r}")
        key = int(text)
    else:
        raise ArgumentTypeError(f"explicit_hash_key must be str or int, not {type(value).__name__}")
    if not 0 <= key <= MAX_HASH_KEY:
        raise InvalidArgumentError(f"explicit_hash_key {value!r} is outside [0, 2**128 - 1]")
    return key


def effective_hash_key(partition_key: str | bytes, explicit_hash_key: str | int | None) -> int:
    """The hash key Kinesis routes by: the explicit one when present, else MD5(partition key)."""
    if explicit_hash_key is not None and explicit_hash_key != "":
        return parse_explicit_hash_key(explicit_hash_key)
    return partition_key_hash(partition_key)


@dataclass(frozen=True, slots=True)
class HashRange:
    """An inclusive range of hash keys, as ListShards reports it for one shard."""

    start: int
    end: int

    @classmethod
    def from_shard(cls, shard: Mapping[str, Any]) -> HashRange:
        """From a shard of ListShards/DescribeStream or a ChildShards entry (``HashKeyRange`` in decimal)."""
        hash_range = shard["HashKeyRange"]
        return cls(int(hash_range["StartingHashKey"]), int(hash_range["EndingHashKey"]))

    def __contains__(self, hash_key: object) -> bool:
        return isinstance(hash_key, int) and self.start <= hash_key <= self.end

    def overlaps(self, other: HashRange) -> bool:
        return self.start <= other.end and other.start <= self.end


class ShardRanges:
    """Maps a hash key to the shard that owns it, by bisecting the sorted range ends.

    Built from the *open* shards of a stream, whose ranges partition the hash-key space.  Lookup is
    O(log shards); a key that no range contains (a hole while a reshard is in progress) maps to None.
    """

    __slots__ = ("_complete", "_ends", "_ranges", "_shard_ids")

    def __init__(self, shards: Iterable[tuple[str, HashRange]]) -> None:
        ordered = sorted(shards, key=lambda item: item[1].end)
        self._ends = [hash_range.end for _, hash_range in ordered]
        self._shard_ids = [shard_id for shard_id, _ in ordered]
        self._ranges = [hash_range for _, hash_range in ordered]
        #: The ranges partition the hash-key space (no hole, no overlap), as the open shards of a
        #: stream do: then the range a key's bisection lands on always contains it.
        starts = [hash_range.start for hash_range in self._ranges]
        self._complete = bool(ordered) and starts == [0, *(end + 1 for end in self._ends[:-1])] and \
            self._ends[-1] == MAX_HASH_KEY

    def shard_for(self, hash_key: int) -> str | None:
        index = bisect.bisect_left(self._ends, hash_key)
        if index == len(self._ends) or hash_key < self._ranges[index].start:
            return None
        return self._shard_ids[index]

    def shards_for(self, hash_keys: Iterable[int]) -> Iterator[str | None]:
        """``shard_for`` of each key, lazily; without a Python call per key when the map has no holes."""
        if self._complete:
            return map(self._shard_ids.__getitem__, map(partial(bisect.bisect_left, self._ends), hash_keys))
        return map(self.shard_for, hash_keys)

    @property
    def shard_ids(self) -> Sequence[str]:
        return self._shard_ids

    def range_of(self, shard_id: str) -> HashRange | None:
        try:
            return self._ranges[self._shard_ids.index(shard_id)]
        except ValueError:
            return None

    def holes(self) -> list[HashRange]:
        """Gaps in coverage of ``[0, 2**128 - 1]``: empty when the ranges partition the space."""
        gaps: list[HashRange] = []
        expected = 0
        for hash_range in sorted(self._ranges, key=lambda r: r.start):
            if hash_range.start > expected:
                gaps.append(HashRange(expected, hash_range.start - 1))
            expected = max(expected, hash_range.end + 1)
        if expected <= MAX_HASH_KEY:
            gaps.append(HashRange(expected, MAX_HASH_KEY))
        return gaps

    def __len__(self) -> int:
        return len(self._ends)
