"""Bounding what the producer holds: outstanding records and bytes, from ``put_record`` to result.

The Java KPL has no bound (its users poll ``getOutstandingRecordsCount`` and sleep), so a stalled
endpoint grows memory until the process dies.  Here a put waits while either bound is reached.

Counting is split by writer so the sync producer needs no lock on the event-loop side: the
admitting side only ever increases ``admitted_*``, the event loop only ever increases
``released_*``, and outstanding is the difference.  (The async producer admits on the loop too.)
A single record larger than the byte bound is admitted when nothing else is outstanding, so no
record is refused for its size here; the size limits of Kinesis are checked at the call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Budget:
    """Outstanding-record and outstanding-byte bounds with async waiting for room and for idleness."""

    __slots__ = (
        "_idle_waiters",
        "_room_waiters",
        "admitted_bytes",
        "admitted_records",
        "bytes_limit",
        "max_bytes",
        "max_records",
        "on_release",
        "records_limit",
        "released_bytes",
        "released_records",
    )

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.admitted_records = 0
        self.admitted_bytes = 0
        self.released_records = 0
        self.released_bytes = 0
        #: What ``admitted_*`` may reach: the bounds moved on by every release, so that admitting a
        #: record (once per put) is two comparisons.  Written by the releasing side only, and 0 while
        #: callers wait for room, so that nobody overtakes them.
        self.records_limit = max_records
        self.bytes_limit = max_bytes
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._idle_waiters: list[asyncio.Future[None]] = []
        #: Called (on the event loop) after every release; the sync producer wakes its callers here.
        self.on_release: Callable[[], None] | None = None

    @property
    def outstanding_records(self) -> int:
        return self.admitted_records - self.released_records

    @property
    def outstanding_bytes(self) -> int:
        return self.admitted_bytes - self.released_bytes

    def has_room(self, size: int) -> bool:
        records = self.admitted_records - self.released_records
        if records == 0:
            return True
        return records < self.max_records and self.admitted_bytes - self.released_bytes + size <= self.max_bytes

    def try_admit(self, size: int) -> bool:
        """Admit a record of ``size`` bytes if it fits now and nobody is waiting ahead of it."""
        if self.admitted_records < self.records_limit and self.admitted_bytes + size <= self.bytes_limit:
            self.admitted_records += 1
            self.admitted_bytes += size
            return True
        # A record larger than the byte bound still goes, alone.
        if self._room_waiters or self.admitted_records != self.released_records:
            return False
        self.admitted_records += 1
        self.admitted_bytes += size
        return True

    def try_admit_many(self, sizes: list[int]) -> int:
        """Admit records of ``sizes``, in order, while they fit now; how many were admitted."""
        total = sum(sizes)
        if self.admitted_records + len(sizes) <= self.records_limit and \
                self.admitted_bytes + total <= self.bytes_limit:
            self.admitted_records += len(sizes)
            self.admitted_bytes += total
            return len(sizes)
        admitted = 0
        for size in sizes:
            if not self.try_admit(size):
                break
            admitted += 1
        return admitted

    def admit(self, size: int) -> None:
        self.admitted_records += 1
        self.admitted_bytes += size

    def release(self, records: int, size: int) -> None:
        self.released_records += records
        self.released_bytes += size
        if self._room_waiters:
            self._wake_next_room_waiter()
        else:
            self._move_limits()
        if self._idle_waiters and self.admitted_records == self.released_records:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self.on_release is not None:
            self.on_release()

    def _move_limits(self) -> None:
        if self._room_waiters:
            self.records_limit = self.bytes_limit = 0
        else:
            self.records_limit = self.released_records + self.max_records
            self.bytes_limit = self.released_bytes + self.max_bytes

    def _wake_next_room_waiter(self) -> None:
        head = self._room_waiters[0]
        if not head.done():
            head.set_result(None)

    @property
    def waiters(self) -> int:
        """Callers waiting for room."""
        return len(self._room_waiters)

    async def wait_for_room(self, size: int) -> None:
        """Return once a record of ``size`` bytes fits; callers are let in first come, first served.

        Only the first waiter is woken on a release; it stays first until it fits, and on leaving
        (admitted, or cancelled) passes the turn on, so a large record is not starved by small ones.
        """
        if not self._room_waiters and self.has_room(size):
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._room_waiters.append(waiter)
        self._move_limits()
        try:
            while True:
                await waiter
                if self.has_room(size):
                    return
                fresh: asyncio.Future[None] = loop.create_future()
                self._room_waiters[self._room_waiters.index(waiter)] = fresh
                waiter = fresh
        finally:
            self._room_waiters.remove(waiter)
            self._move_limits()
            if self._room_waiters and self.has_room(0):
                self._wake_next_room_waiter()

    async def wait_idle(self) -> None:
        """Return when nothing is outstanding."""
        if self.admitted_records == self.released_records:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter
