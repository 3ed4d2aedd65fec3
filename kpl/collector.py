"""The collector: sealed Kinesis records of one stream into PutRecords batches, as in the KPL.

A batch holds at most ``CollectionMaxCount`` entries and ``CollectionMaxSize`` bytes (partition keys
+ data, what the service counts) and is handed to the sender when full, when one shard has 256 KiB
in it (so that no shard gets a burst), or at the earliest deadline of its entries.  One timer per
batch, never per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kpl.accumulator import KinesisRecord

#: A PutRecords batch flushes once one shard's entries in it reach this many bytes (KPL collector).
SHARD_BYTES_PER_BATCH = 256 * 1024


class Collector:
    """Sealed Kinesis records of one stream, grouped into PutRecords batches for ``on_batch``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_batch: Callable[[list[KinesisRecord]], None],
        *,
        max_count: int,
        max_size: int,
        shard_bytes_limit: int = SHARD_BYTES_PER_BATCH,
    ) -> None:
        self._loop = loop
        self._on_batch = on_batch
        self.max_count = max_count
        self.max_size = max_size
        self.shard_bytes_limit = shard_bytes_limit
        self._batch: list[KinesisRecord] = []
        self._size = 0
        self._shard_bytes: dict[str | None, int] = {}
        self._deadline = float("inf")
        self._timer: asyncio.TimerHandle | None = None

    def add(self, record: KinesisRecord, deadline: float) -> None:
        """Add a Kinesis record that must be sent by ``deadline``."""
        size = record.size
        if self._batch and self._size + size > self.max_size:
            self.flush()
        batch = self._batch
        batch.append(record)
        self._size += size
        shard_bytes = self._shard_bytes.get(record.shard_id, 0) + size
        self._shard_bytes[record.shard_id] = shard_bytes
        if len(batch) >= self.max_count or self._size >= self.max_size or shard_bytes >= self.shard_bytes_limit:
            self.flush()
        elif deadline < self._deadline:
            self._deadline = deadline
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._deadline_reached)

    def _deadline_reached(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand the current batch on now (nothing happens when it is empty)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = float("inf")
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._size = 0
        self._shard_bytes = {}
        self._on_batch(batch)

    def take(self) -> list[KinesisRecord]:
        """Remove and return the current batch without sending it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = float("inf")
        batch, self._batch = self._batch, []
        self._size = 0
        self._shard_bytes = {}
        return batch

    def pending(self) -> list[KinesisRecord]:
        return list(self._batch)
