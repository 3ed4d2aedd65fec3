"""The ordered finalizer: a file's checkpoint moves only over a contiguous run of delivered batches.

Batches of one file are sent concurrently and come back in any order; a batch can be retried for
minutes while later ones succeed.  The Java agent checkpoints the highest batch id it has seen succeed,
so a crash while an earlier batch is still retrying loses that batch.  Here each file's batches are
registered in read order, each covering a byte range that starts where the previous one ended; the
checkpoint is the end of the longest prefix of acknowledged ranges, so it never passes data that was
not delivered.  Registration and acknowledgement are O(1) amortised.
"""

from __future__ import annotations

from collections import deque


class Ticket:
    """One registered byte range ``[start, end)`` of a file."""

    __slots__ = ("acknowledged", "end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.acknowledged = False

    def __repr__(self) -> str:
        state = "acked" if self.acknowledged else "pending"
        return f"Ticket({self.start}, {self.end}, {state})"


class OrderedFinalizer:
    """Tracks the acknowledged prefix of one file's byte ranges."""

    __slots__ = ("_pending", "checkpoint", "registered_end")

    def __init__(self, offset: int = 0) -> None:
        #: Everything before this offset has been delivered (or deliberately skipped).
        self.checkpoint = offset
        #: End of the last registered range: where the next one must start.
        self.registered_end = offset
        self._pending: deque[Ticket] = deque()

    def register(self, start: int, end: int) -> Ticket:
        """Register the next range; it must continue exactly where the previous one ended."""
        if start != self.registered_end:
            raise ValueError(f"range [{start}, {end}) does not continue at {self.registered_end}: ranges must be "
                             "registered in file order without gaps")
        if end < start:
            raise ValueError(f"range [{start}, {end}) ends before it starts")
        ticket = Ticket(start, end)
        self._pending.append(ticket)
        self.registered_end = end
        return ticket

    def acknowledge(self, ticket: Ticket) -> bool:
        """Mark ``ticket`` delivered; True when the checkpoint moved."""
        ticket.acknowledged = True
        pending = self._pending
        moved = False
        while pending and pending[0].acknowledged:
            self.checkpoint = pending.popleft().end
            moved = True
        return moved
