"""Taking and balancing leases: when this worker reads the lease table, and what it does with a read.

Reads cost what the Java KCL 2.x taker costs in the steady state: one read of the whole table per
worker every taker interval (``2 x (failover + epsilon)``; the KCL's ``scheduleWithFixedDelay``, so
the interval runs from the end of one read to the start of the next).  Renewals never read.  A worker
reads sooner only while something is happening, each time for a reason that goes away by itself:

* a lease may have expired (:mod:`kcl.expiry`): a read at the moment it would be expired, which
  bounds takeover after a crash by failover + one taker interval (the KCL's is up to two intervals);
* this worker holds nothing: it takes or steals one lease, which makes it visible, and reads again
  after half a renewal interval to take its share with every other new worker in view (workers that
  start together then deal the leases out instead of racing for all of them);
* the workers in view changed within its last two reads (workers joining one after another): it steals
  at most one lease and reads again after half a renewal interval, so that it steals its share only once
  the group has stayed the same for a renewal interval, rather than a share computed for a group still
  growing;
* a steal lost a race, leases it handed back or lost, leases that newly became available, leases it
  created: a read after half a renewal interval, once; a take that lost a race: a read at once;
* a handoff it asked for: the leases in question (not the table) are read every half renewal
  interval until the previous owner has handed them over, so the lease moves as soon as it is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

from kcl.config import WorkerConfig
from kcl.expiry import LeaseObservations
from kcl.leases import ConditionFailed, Lease, describe_failure
from kcl.metrics import KclMetrics
from kcl.ports import LeaseStore
from kcl.renewer import HeldLease, HeldLeases
from kcl.taker import plan
from kpl.logs import get_logger

log = get_logger(__name__)


class LeaseTaker:
    def __init__(
        self, *, table: LeaseStore, held: HeldLeases, config: WorkerConfig, metrics: KclMetrics,
        on_acquired: Callable[[HeldLease], None], clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.held = held
        self.config = config
        self.worker_id = config.worker_id
        self.metrics = metrics
        self.on_acquired = on_acquired
        self.clock = clock
        self.observations = LeaseObservations(config.failover_time, config.renewal_interval,
                                              margin=max(0.05, config.epsilon_ms / 1000))
        #: The last read of the whole table (by the taker or a shard sync), and when (this clock).
        self.last_scan: list[Lease] = []
        self.last_scan_at: float | None = None
        #: False once this worker changed the table after that read (it created leases): the read is stale.
        self._last_scan_current = False
        #: Reads of the whole table by this taker, for the benchmark and the stop log.
        self.scans = 0
        self.fast_interval = max(0.2, config.renewal_interval / 2)
        self._rng = random.Random()
        self._stopping = False
        self._next_scan = 0.0
        self._wake = asyncio.Event()
        #: Handoffs this worker asked for: lease key -> when to leave it to the regular reads.
        self._watched: dict[str, float] = {}
        self._watch_wake = asyncio.Event()
        self._available_seen: frozenset[str] = frozenset()
        self._members: frozenset[str] | None = None
        #: Reads in a row that saw the same workers as the one before (a new worker starts at 0).
        self._stable_reads = 0
        #: Leases with a take in flight (the reads and the handoff watcher may both want one).
        self._taking: set[str] = set()
        self._log = log.bind(worker=self.worker_id)

    # --- scheduling -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read, act, wait; until :meth:`stop`."""
        while not self._stopping:
            try:
                delay = await self.take_leases()
            except Exception as exc:
                self._log.warning("taking leases failed; retrying next interval", error=describe_failure(exc))
                delay = self.config.scan_interval
            self._next_scan = time.monotonic() + delay
            while not self._stopping and (remaining := self._next_scan - time.monotonic()) > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)

    def scan_soon(self, after: float | None = None) -> None:
        """Read the table within ``after`` seconds (half a renewal interval when None)."""
        self._last_scan_current = False  # asked for because the table changed
        at = time.monotonic() + (self._jittered(self.fast_interval) if after is None else after)
        if at < self._next_scan:
            self._next_scan = at
            self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._watch_wake.set()

    def _jittered(self, seconds: float) -> float:
        """Workers that react to the same event do not read in lockstep."""
        return seconds * self._rng.uniform(0.8, 1.2)

    def observe(self, leases: list[Lease], now: float) -> None:
        """A read of the whole table (also a shard sync's)."""
        self.observations.observe(leases, now, me=self.worker_id)
        self.last_scan = leases
        self.last_scan_at = now
        self._last_scan_current = True

    # --- one run ----------------------------------------------------------------------------------

    async def take_leases(self) -> float:
        """Read the table, take and steal this worker's share; the seconds until the next read."""
        if (self.scans == 0 and self._last_scan_current and self.last_scan_at is not None
                and self.clock() - self.last_scan_at < 1.0):
            leases, now = self.last_scan, self.last_scan_at  # the start-up shard sync has just read it
        else:
            leases = await self.table.call(self.table.list_leases)
            now = self.clock()
            self.observe(leases, now)
        self.scans += 1
        if self._stopping:
            return self.config.scan_interval
        held = self.held.shard_ids() | self._taking
        observations = self.observations
        expired = {lease.lease_key for lease in leases if observations.is_expired(lease, now)}
        moved = {lease.lease_key for lease in leases
                 if observations.moved_recently(lease.lease_key, now, self.config.assignment_interval)}
        announcing = not held and not self._watched
        members = frozenset({self.worker_id} | {
            lease.lease_owner for lease in leases
            if lease.lease_owner is not None and not lease.is_shard_end and lease.lease_key not in expired})
        self._stable_reads = self._stable_reads + 1 if members == self._members else 0
        self._members = members
        settling = self._stable_reads < 2 and self.scans > 1
        max_steal = self.config.max_leases_to_steal_at_one_time
        if settling:
            max_steal = 1
        decided = plan(
            leases, self.worker_id, held=held, expired=expired, balance=True, moved_recently=moved,
            max_acquire=1 if announcing else None, max_leases_for_worker=self.config.max_leases_for_worker,
            max_steal=max_steal, rng=self._rng,
        )
        taken = await asyncio.gather(*(self._take(lease) for lease in decided.take))
        stolen = await asyncio.gather(*(self._steal(lease) for lease in decided.steal))
        self.metrics.taker_round(
            total=decided.total, workers=decided.workers, needed=max(0, decided.goal - decided.held),
            expired=decided.expired, taken=sum(taken), stolen=sum(stolen),
            untaken=len(decided.take) - sum(taken),
        )
        delay = self.config.scan_interval
        if len(decided.take) > sum(taken):
            # Another worker took an available lease this one counted on (their reads differed): what it
            # should take instead is available now, so read again at once rather than after the usual pause.
            delay = self._rng.uniform(0.05, 0.25)
        lost_races = len(decided.take) - sum(taken) + len(decided.steal) - sum(stolen)
        got = {lease.lease_key for lease, ok in zip(decided.take, taken, strict=True) if ok}
        available = frozenset(
            lease.lease_key for lease in leases
            if not lease.is_shard_end and lease.lease_key not in held and lease.lease_key not in got
            and (lease.lease_owner is None or lease.lease_key in expired))
        news = available - self._available_seen
        self._available_seen = available
        if lost_races or news or settling or (announcing and (decided.take or decided.steal)):
            delay = min(delay, self._jittered(self.fast_interval))
        check = observations.next_expiry_check(now)
        if check is not None:
            delay = min(delay, max(0.0, check - now))
        self._log.debug("read the lease table", leases=len(leases), expired=len(expired), taken=sum(taken),
                        stolen=sum(stolen), suspected=observations.suspected(), settling=settling,
                        next_read_in=round(delay, 3))
        return delay

    async def _take(self, lease: Lease) -> bool:
        key = lease.lease_key
        if key in self._taking or self.held.get(key) is not None:
            return False
        self._taking.add(key)
        sent = self.clock()
        try:
            taken = await self.table.call(self.table.take, lease, self.worker_id)
        except ConditionFailed:
            return False
        except Exception as exc:
            self._log.warning("taking a lease failed", shard=key, error=describe_failure(exc))
            return False
        else:
            previous = lease.lease_owner if lease.lease_owner != self.worker_id else lease.checkpoint_owner
            self._log.info("took lease", shard=key, previous_owner=previous, checkpoint=str(taken.checkpoint))
            self.metrics.lease_taken()
            self.on_acquired(self.held.add(taken, sent))
            return True
        finally:
            self._taking.discard(key)

    async def _steal(self, lease: Lease) -> bool:
        if not self.config.is_graceful_lease_handoff_enabled:
            return await self._take(lease)
        try:
            await self.table.call(self.table.initiate_handoff, lease, self.worker_id)
        except ConditionFailed:
            return False
        except Exception as exc:
            self._log.warning("requesting a lease handoff failed", shard=lease.lease_key,
                              error=describe_failure(exc))
            return False
        self._log.info("requested lease handoff", shard=lease.lease_key, current_owner=lease.lease_owner)
        timeout = self.config.graceful_lease_handoff_timeout_ms / 1000 + 2 * self.config.failover_time
        self._watched[lease.lease_key] = time.monotonic() + timeout
        self._watch_wake.set()
        return True

    # --- handoffs asked for -------------------------------------------------------------------------

    async def watch_handoffs(self) -> None:
        """Take each lease this worker asked for as soon as its previous owner has handed it over."""
        while not self._stopping:
            if not self._watched:
                self._watch_wake.clear()
                await self._watch_wake.wait()
                continue
            await asyncio.sleep(self._jittered(self.fast_interval))
            if self.stopping:
                return
            try:
                await self._check_handoffs()
            except Exception as exc:
                self._log.warning("reading leases in handoff failed; retrying", error=describe_failure(exc))

    async def _check_handoffs(self) -> None:
        keys = list(self._watched)
        found = await self.table.call(self.table.get_many, keys)
        now = self.clock()
        self.observations.observe(found.values(), now, me=self.worker_id, complete=False)
        held = self.held.shard_ids()
        for key in keys:
            lease = found.get(key)
            give_up = self._watched[key]
            if lease is None or lease.lease_owner != self.worker_id or key in held:
                del self._watched[key]  # deleted, taken by someone else (it expired), or already ours
            elif lease.checkpoint_owner is None or self.observations.is_expired(lease, now):
                del self._watched[key]
                if not await self._take(lease):
                    self.scan_soon()
            elif time.monotonic() > give_up:
                del self._watched[key]  # the regular reads take it once it expires
