"""The records every variant of a benchmark sends, so that comparisons are like for like.

A workload is deterministic: record ``i`` always has the same payload and partition key, whichever
client sends it.  Payloads are made per record (a new ``bytes`` object each time, as an application
would make them), so a client that buffers records pays for their memory in its own peak RSS.
Partition keys come from a fixed pool of users, spread by a multiplicative hash so that consecutive
records go to different shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

_SPREAD = 2654435761  # Knuth's multiplicative constant: scatters consecutive indexes over the pool
_COUNTER_WIDTH = 10


@dataclass(frozen=True, slots=True)
class Workload:
    records: int = 100_000
    record_size: int = 100
    users: int = 1000

    def __post_init__(self) -> None:
        if self.records < 1:
            raise ValueError(f"records must be at least 1, got {self.records}")
        if self.record_size < _COUNTER_WIDTH:
            raise ValueError(f"record_size must be at least {_COUNTER_WIDTH} bytes, got {self.record_size}")
        if self.users < 1:
            raise ValueError(f"users must be at least 1, got {self.users}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Workload:
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float, minimum: int = 1000) -> Workload:
        return replace(self, records=max(minimum, int(self.records * factor)))

    @property
    def payload_bytes(self) -> int:
        return self.records * self.record_size

    def partition_keys(self) -> list[str]:
        return [f"user-{j:06d}" for j in range(self.users)]

    def user_of(self, index: int) -> int:
        return (index * _SPREAD) % self.users

    def items(self) -> Iterator[tuple[str, bytes]]:
        """(partition key, payload) for every record, in order."""
        keys = self.partition_keys()
        filler = b"x" * (self.record_size - _COUNTER_WIDTH)
        users = self.users
        for index in range(self.records):
            yield keys[(index * _SPREAD) % users], b"%010d" % index + filler

    def items_bytes_keys(self) -> Iterator[tuple[bytes, bytes]]:
        """The same records with the partition keys as UTF-8 bytes (for aws-kinesis-agg, see peers.py)."""
        keys = [key.encode() for key in self.partition_keys()]
        filler = b"x" * (self.record_size - _COUNTER_WIDTH)
        users = self.users
        for index in range(self.records):
            yield keys[(index * _SPREAD) % users], b"%010d" % index + filler
