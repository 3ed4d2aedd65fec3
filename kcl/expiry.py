"""What this worker has seen of other workers' leases: expiry, early suspicion, recent moves.

Expiry is the KCL's: a lease is expired when its ``leaseCounter`` has not changed for the failover
time *as observed by this worker on its monotonic clock* — no wall clocks are compared between
machines.  A lease seen for the first time counts as renewed at that moment if it has an owner (so a
starting worker waits a full failover period before taking a silent owner's lease) and as available at
once if it has none.

Observation costs reads, so the table is read at the KCL 2.x taker's cadence (every
2 x (failover + epsilon)); a read one failover after the one that first saw a counter value is what
decides expiry.  To keep takeover within failover + one taker interval without reading more in the
steady state, each read also asks whether a lease's owner may have stopped: a live owner renews every
renewal interval R, so k renewals over an interval D between two reads bound its silence by
D - (k - 1) x R.  Only a lease whose owner may have been silent for longer than the failover time
(or whose counter did not move at all) asks for a read at ``last change + failover``.  Renewals are
counted from ``renewalCounter``, an attribute this worker's renewals add to (the Java KCL ignores it):
``leaseCounter`` alone moves with every checkpoint too, which would hide a stopped owner whose
shards were checkpointing until it stopped.  For items without it (written by a Java worker) the
counter is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kcl.leases import Lease

_NEVER = float("-inf")


@dataclass(slots=True)
class _Seen:
    counter: int
    renewals: int | None
    #: The owner, or None while unowned or being handed over (leaseOwner with checkpointOwner set).
    owner: str | None
    seen_at: float
    #: When the current counter value was first read (-inf: unowned when first seen, available at once).
    last_change: float
    #: When the current owner was first read (-inf when the lease was already owned at first sight).
    owner_since: float
    #: The owner may have stopped: read again at last_change + failover to decide.
    suspect: bool = False


class LeaseObservations:
    """Per lease, what this worker last read and when; pure bookkeeping, no I/O."""

    def __init__(self, failover: float, renewal_interval: float, margin: float = 0.05) -> None:
        self.failover = failover
        self.renewal_interval = renewal_interval
        self.margin = margin
        self._seen: dict[str, _Seen] = {}

    def observe(self, leases: Iterable[Lease], now: float, *, me: str, complete: bool = True) -> None:
        """Record a read.  ``complete``: a read of the whole table (leases not in it are forgotten)."""
        seen: dict[str, _Seen] = {} if complete else dict(self._seen)
        for lease in leases:
            seen[lease.lease_key] = self._next(self._seen.get(lease.lease_key), lease, now, me)
        self._seen = seen

    def _next(self, previous: _Seen | None, lease: Lease, now: float, me: str) -> _Seen:
        # A lease in handoff has not settled with its next owner yet: its move counts from the read
        # that sees the handoff complete.
        owner = lease.lease_owner if lease.checkpoint_owner is None else None
        if previous is None:
            first = _NEVER if lease.lease_owner is None else now
            return _Seen(lease.lease_counter, lease.renewal_counter, owner, now, first, _NEVER)
        owner_since = previous.owner_since if owner == previous.owner else now
        writer = lease.checkpoint_owner or lease.lease_owner  # whoever renews it now
        if previous.counter == lease.lease_counter:
            static = _Seen(lease.lease_counter, lease.renewal_counter, owner, now, previous.last_change, owner_since)
            static.suspect = writer is not None and writer != me and not lease.is_shard_end
            return static
        current = _Seen(lease.lease_counter, lease.renewal_counter, owner, now, now, owner_since)
        if writer is not None and writer != me and owner == previous.owner and not lease.is_shard_end:
            current.suspect = self._may_have_stopped(previous, lease, now)
        return current

    def _may_have_stopped(self, previous: _Seen, lease: Lease, now: float) -> bool:
        if previous.renewals is not None and lease.renewal_counter is not None:
            renewals = lease.renewal_counter - previous.renewals
        else:
            renewals = lease.lease_counter - previous.counter
        silent_at_most = (now - previous.seen_at) - (renewals - 1) * self.renewal_interval
        return silent_at_most > self.failover

    def is_expired(self, lease: Lease, now: float) -> bool:
        seen = self._seen.get(lease.lease_key)
        if seen is None or seen.counter != lease.lease_counter:
            return False
        return now - seen.last_change > self.failover

    def moved_recently(self, lease_key: str, now: float, window: float) -> bool:
        """Did this lease change owner within ``window`` (as this worker saw it)?  Not stolen again then."""
        seen = self._seen.get(lease_key)
        return seen is not None and now - seen.owner_since < window

    def next_expiry_check(self, now: float) -> float | None:
        """The earliest time a read may find a suspected lease expired; None when no lease is suspected."""
        times = [seen.last_change + self.failover + self.margin for seen in self._seen.values()
                 if seen.suspect and seen.last_change + self.failover >= now]
        return min(times) if times else None

    def suspected(self) -> int:
        return sum(1 for seen in self._seen.values() if seen.suspect)
