"""Batches: the unit a flow sends and acknowledges, and the byte budget that bounds them.

A batch holds records of one file only and covers one contiguous byte range of it, so that delivering
it lets that file's checkpoint move over the range (agent.acks).  Batches are closed at
``maxBufferSizeRecords`` records, ``maxBufferSizeBytes`` bytes (each record counted with its partition
key, as the Java agent counts it) or ``maxBufferAgeMillis``, whichever comes first.

The :class:`ByteBudget` bounds what a flow holds between reading and acknowledgement, in bytes and in
batches.  While it is spent, the flow stops reading, so memory stays flat however long the destination
is away (the Java agent bounds its queue in buffers of up to 5 MiB and leaves its retry queue unbounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, NamedTuple

from agent.acks import Ticket


class Batch:
    """Records of one file covering ``[start, end)``; ``source`` is the file it came from."""

    __slots__ = ("end", "nbytes", "records", "sealed_at", "source", "start", "ticket")

    def __init__(self, source: Any, start: int, end: int, records: list[bytes], *, nbytes: int,
                 ticket: Ticket) -> None:
        self.source = source
        self.start = start
        self.end = end
        self.records = records
        #: Bytes the destination counts: data plus partition keys.
        self.nbytes = nbytes
        self.ticket = ticket
        self.sealed_at = time.monotonic()

    @property
    def covered(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        return f"Batch({self.source!r}, [{self.start}, {self.end}), {len(self.records)} records)"


class ClosedBatch(NamedTuple):
    """What a builder hands over when a batch is full or due: the byte range it covers and its records."""

    start: int
    end: int
    records: list[bytes]
    nbytes: int


class BatchBuilder:
    """The open batch of one file: records are added in file order; full batches come out closed.

    ``add`` returns closed batches as ``(start, end, records, nbytes)`` tuples; the caller registers
    them with the file's finalizer.
    """

    __slots__ = ("end", "max_bytes", "max_records", "nbytes", "opened_at", "overhead", "records", "start")

    def __init__(self, offset: int, max_records: int, max_bytes: int, overhead: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        #: Bytes counted per record on top of its data (the partition key's length).
        self.overhead = overhead
        self.start = offset
        self.end = offset
        self.records: list[bytes] = []
        self.nbytes = 0
        self.opened_at = 0.0

    @property
    def empty(self) -> bool:
        return self.end == self.start

    def add_exact(self, records: list[bytes]) -> list[ClosedBatch]:
        """Add records that are all sent and each cover exactly their own length (the fast path)."""
        closed: list[ClosedBatch] = []
        index = 0
        count = len(records)
        while index < count:
            chunk = records[index:index + self.max_records - len(self.records)]
            covered = sum(map(len, chunk))
            size = covered + self.overhead * len(chunk)
            if self.nbytes + size > self.max_bytes:
                closed.extend(self.add(records[index:], None))
                return closed
            if self.end == self.start:
                self.opened_at = time.monotonic()
            if self.records:
                self.records.extend(chunk)
            else:
                self.records = chunk
            self.nbytes += size
            self.end += covered
            index += len(chunk)
            if len(self.records) >= self.max_records:
                closed.append(self.close())
        return closed

    def add(self, records: list[bytes | None] | list[bytes],
            lengths: list[int] | None) -> list[ClosedBatch]:
        """Add records (None: covers bytes but is not sent) with the bytes each covers (None: its own length)."""
        closed: list[ClosedBatch] = []
        overhead = self.overhead
        for index, record in enumerate(records):
            covered = lengths[index] if lengths is not None else len(record or b"")
            if self.end == self.start:
                self.opened_at = time.monotonic()
            if record is not None:
                size = len(record) + overhead
                if self.records and self.nbytes + size > self.max_bytes:
                    closed.append(self.close())
                    self.opened_at = time.monotonic()
                self.records.append(record)
                self.nbytes += size
            self.end += covered
            if len(self.records) >= self.max_records or self.nbytes >= self.max_bytes:
                closed.append(self.close())
        return closed

    def skip(self, covered: int) -> None:
        """Let the range grow over bytes that produce no record (the open batch still closes normally)."""
        if self.end == self.start:
            self.opened_at = time.monotonic()
        self.end += covered

    def close(self) -> ClosedBatch:
        closed = ClosedBatch(self.start, self.end, self.records, self.nbytes)
        self.start = self.end
        self.records = []
        self.nbytes = 0
        return closed

    def age(self, now: float) -> float:
        return 0.0 if self.end == self.start else now - self.opened_at


class ByteBudget:
    """Bytes and batches a flow may hold between reading and acknowledgement."""

    def __init__(self, max_bytes: int, max_batches: int) -> None:
        self.max_bytes = max_bytes
        self.max_batches = max_batches
        self.bytes = 0
        self.batches = 0
        self._empty = asyncio.Event()
        self._empty.set()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def exhausted(self) -> bool:
        return self.bytes >= self.max_bytes or self.batches >= self.max_batches

    def charge(self, nbytes: int) -> None:
        self.bytes += nbytes
        self.batches += 1
        self._empty.clear()
        if self.exhausted:
            self._room.clear()

    def release(self, nbytes: int) -> None:
        self.bytes -= nbytes
        self.batches -= 1
        if not self.exhausted:
            self._room.set()
        if self.batches == 0:
            self._empty.set()

    async def wait_for_room(self, timeout: float) -> None:
        """Return once the budget has room again, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout)

    async def wait_until_empty(self) -> None:
        """Return once every charged batch has been released (acknowledged)."""
        await self._empty.wait()
