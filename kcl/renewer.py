"""Keeping the leases this worker holds: renewal on a thread of its own, and self-fencing.

The renewer is a plain thread, not an asyncio task: a processor coroutine that blocks the event loop,
or a burst of user code hogging it, must not cost the worker its leases (the KCL users' most common
complaint: "worker intermittently loses leases").  It renews every held lease each interval, in
parallel, with the KCL's conditional write on ``leaseCounter``.

Self-fencing: another worker may take a lease once it has seen the counter unchanged for the failover
time, and it can only have seen the value we wrote *after* we sent the write.  So a lease whose last
successful renewal was *sent* more than failover ago may already be someone else's; from that moment
this worker neither dispatches records for it nor checkpoints it.

Checkpoints bump the counter too, so they go through :meth:`HeldLeases.write`, which serialises them
with renewals per lease (the KCL does the same) and counts them as renewals.

Each renewal also records the shard's progress (MillisBehindLatest and when) in the lease item, in the
same write, for ``kcl-worker status``: the lag costs no request of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kcl.errors import LeaseLostError
from kcl.leases import ConditionFailed, Lease, LeaseTable, describe_failure
from kcl.metrics import KclMetrics
from kpl.logs import get_logger

log = get_logger(__name__)

Clock = Callable[[], float]


@dataclass(eq=False)
class HeldLease:
    """One lease this worker holds, for one tenure (``token``)."""

    lease: Lease
    token: str
    last_renewal_sent: float
    #: Set once renewal fails for good or another worker's write is seen; never cleared.
    lost: bool = False
    #: KCL 3.x graceful handoff in progress: ``lease.lease_owner`` is the next owner, we finish up.
    handing_off: bool = False
    #: When this tenure began (epoch seconds): progress observed before it is not this tenure's to record.
    acquired_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def shard_id(self) -> str:
        return self.lease.lease_key


class HeldLeases:
    """The leases this worker holds, shared by the event loop, the renewer and processor threads."""

    def __init__(self, table: LeaseTable, owner: str, failover: float, epsilon: float, clock: Clock = time.monotonic):
        self.table = table
        self.owner = owner
        self.failover = failover
        self.epsilon = epsilon
        self.clock = clock
        self._leases: dict[str, HeldLease] = {}
        self._registry_lock = threading.Lock()
        #: Called (from any thread) with (shard_id, reason) when a lease is found lost.
        self.on_lost: Callable[[str, str], None] = lambda shard_id, reason: None

    def add(self, lease: Lease, sent: float) -> HeldLease:
        held = HeldLease(lease=lease, token=uuid.uuid4().hex, last_renewal_sent=sent)
        with self._registry_lock:
            self._leases[lease.lease_key] = held
        return held

    def get(self, shard_id: str) -> HeldLease | None:
        return self._leases.get(shard_id)

    def remove(self, shard_id: str, token: str | None = None) -> HeldLease | None:
        with self._registry_lock:
            held = self._leases.get(shard_id)
            if held is None or (token is not None and held.token != token):
                return None
            del self._leases[shard_id]
            return held

    def all(self) -> list[HeldLease]:
        with self._registry_lock:
            return list(self._leases.values())

    def shard_ids(self) -> set[str]:
        return set(self._leases)

    def __len__(self) -> int:
        return len(self._leases)

    def fence_time(self, held: HeldLease) -> float:
        return held.last_renewal_sent + self.failover - self.epsilon

    def is_current(self, shard_id: str, token: str) -> bool:
        """May the tenure ``token`` still act on ``shard_id``?  False once lost, replaced or fenced."""
        held = self._leases.get(shard_id)
        return (held is not None and held.token == token and not held.lost
                and self.clock() < self.fence_time(held))

    def mark_lost(self, held: HeldLease, reason: str) -> None:
        if not held.lost:
            held.lost = True
            log.warning("lease lost", shard=held.shard_id, reason=reason)
            self.on_lost(held.shard_id, reason)

    def write(self, shard_id: str, token: str, operation: Callable[[Lease], Lease]) -> Lease:
        """Apply a counter-bumping write (checkpoint, prepare) to a lease this tenure holds.

        Raises LeaseLostError when the tenure is over, and marks the lease lost when the conditional
        write shows another worker has written.
        """
        held = self._leases.get(shard_id)
        if held is None or held.token != token:
            raise LeaseLostError(f"lease on {shard_id} is no longer held by this processor")
        with held.lock:
            if held.lost or self.clock() >= self.fence_time(held):
                raise LeaseLostError(f"lease on {shard_id} was lost or could not be renewed in time")
            sent = self.clock()
            try:
                updated = operation(held.lease)
            except ConditionFailed:
                self.mark_lost(held, "lease changed by another worker")
                raise LeaseLostError(f"lease on {shard_id} was taken by another worker") from None
            held.lease = updated
            held.last_renewal_sent = sent
            return updated


class LeaseRenewer:
    """Renews every held lease each ``interval`` seconds on its own thread (fixed rate, as the KCL)."""

    def __init__(
        self, held: HeldLeases, interval: float, *, threads: int, metrics: KclMetrics,
        on_handoff_requested: Callable[[str], None],
    ) -> None:
        self.held = held
        self.interval = interval
        self.metrics = metrics
        self.on_handoff_requested = on_handoff_requested
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kcl-renew")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kcl-lease-renewer", daemon=True)
        #: Monotonic time the last renewal round began (None before the first): /healthz checks rounds run.
        self.last_round_started: float | None = None

    def start(self) -> None:
        self.last_round_started = time.monotonic()
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        next_run = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            next_run += self.interval
            try:
                self.renew_all()
            except Exception:
                log.exception("lease renewal round failed")
            # A round that overran (a slow table, many leases) is followed at once, as the KCL's fixed-rate
            # schedule does, not after another whole interval: that would leave up to two rounds plus an
            # interval between a lease's renewals, and the failover time is only three intervals.
            next_run = max(next_run, time.monotonic())

    def renew_all(self) -> None:
        self.last_round_started = time.monotonic()
        leases = [held for held in self.held.all() if not held.lost]
        if leases:
            wait([self._pool.submit(self._renew, held) for held in leases])
        self.metrics.lease_counts(current=len(self.held))

    def _renew(self, held: HeldLease) -> None:
        held_leases = self.held
        with held.lock:
            if held.lost:
                return
            if held_leases.clock() >= held_leases.fence_time(held):
                held_leases.mark_lost(held, f"not renewed within the failover time ({held_leases.failover:.1f}s)")
                self.metrics.lost_leases(1)
                return
            started = time.monotonic()
            sent = held_leases.clock()
            try:
                held.lease = held_leases.table.renew(held.lease, held_leases.owner, as_previous_owner=held.handing_off,
                                                     progress=self.metrics.progress(held.shard_id, held.acquired_at))
            except ConditionFailed:
                self._after_condition_failure(held, sent)
            except Exception as exc:
                self.metrics.renewal(success=False, seconds=time.monotonic() - started)
                log.warning("lease renewal failed; retrying next interval", shard=held.shard_id,
                            error=describe_failure(exc))
                return
            else:
                held.last_renewal_sent = sent
            self.metrics.renewal(success=not held.lost, seconds=time.monotonic() - started)

    def _after_condition_failure(self, held: HeldLease, sent: float) -> None:
        """Someone wrote the lease: a handoff request, a spurious failure, or the lease is gone."""
        held_leases = self.held
        me = held_leases.owner
        try:
            current = held_leases.table.call_blocking(held_leases.table.get, held.shard_id)
        except Exception as exc:
            log.warning("cannot re-read lease after a failed renewal", shard=held.shard_id,
                        error=describe_failure(exc))
            return
        if current is None:
            held_leases.mark_lost(held, "lease deleted")
            self.metrics.lost_leases(1)
            return
        mine_now = current.lease_owner == me and current.checkpoint_owner is None
        finishing_for_next_owner = current.checkpoint_owner == me
        if current.lease_counter == held.lease.lease_counter + 1 and (
                (mine_now and not held.handing_off) or (finishing_for_next_owner and held.handing_off)):
            # Our write landed but its reply was lost, and the retry failed its own condition.
            held.lease = current
            held.last_renewal_sent = sent
            return
        if finishing_for_next_owner and not held.handing_off:
            held.handing_off = True
            held.lease = current
            log.info("lease handoff requested", shard=held.shard_id, next_owner=current.lease_owner)
            self.on_handoff_requested(held.shard_id)
            try:
                sent = held_leases.clock()
                held.lease = held_leases.table.renew(current, me, as_previous_owner=True,
                                                     progress=self.metrics.progress(held.shard_id, held.acquired_at))
                held.last_renewal_sent = sent
            except ConditionFailed:
                held_leases.mark_lost(held, "lease taken during handoff")
                self.metrics.lost_leases(1)
            except Exception as exc:
                log.warning("lease renewal failed during handoff", shard=held.shard_id, error=describe_failure(exc))
            return
        held_leases.mark_lost(held, f"lease now owned by {current.lease_owner or 'nobody'}")
        self.metrics.lost_leases(1)
