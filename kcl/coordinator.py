"""Lease coordination: who holds which shard, discovered shards, finished shards.

The coordinator owns the worker's view of the lease table and acts on it in a few loops:

* **taking** (:mod:`kcl.lease_taker`): read the table at the KCL 2.x taker's cadence, take available
  leases and steal this worker's share from over-loaded workers (graceful handoff when enabled);
  sooner only while something is happening (a lease may have expired, a handoff is under way, ...);
* **shard sync** (every ``shard_sync_interval``, and at once after a shard ends): ListShards and
  create missing leases by the lineage rules of :mod:`kcl.shard_sync`, reading the table only when
  the last read suggests a lease is missing;
* **cleanup** (every ``completed_lease_cleanup_interval``): delete SHARD_END leases whose children
  have started.

Renewal runs on its own thread (:mod:`kcl.renewer`); what it learns (a lease lost, a handoff
requested) reaches the event loop through ``call_soon_threadsafe``.  Shard consumers call back here
to wait for parents, create children, and hand their lease back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from tenacity import RetryCallState, stop_after_attempt

from kcl.config import WorkerConfig
from kcl.errors import KclError
from kcl.lease_taker import LeaseTaker
from kcl.leases import ConditionFailed, Lease, describe_failure
from kcl.metrics import KclMetrics
from kcl.ports import LeaseStore, ShardLister
from kcl.renewer import HeldLease, HeldLeases, LeaseRenewer
from kcl.shard_sync import ShardInfo, child_lease, finished_parents, leases_to_create
from kpl.aws import list_shards
from kpl.hashing import HashRange
from kpl.logs import get_logger
from kpl.retry import Backoff, any_error, error_code, last_error, retrying, stop_when

log = get_logger(__name__)

#: The KCL's maxInitializationAttempts.
MAX_INITIALIZATION_ATTEMPTS = 20

#: Failed attempts to create a finished shard's child leases after which each further one is logged as an error.
CHILD_FAILURES_BEFORE_ERROR = 5


class LeaseListener(Protocol):
    """What the worker does when the coordinator's view changes (always called on the event loop)."""

    def lease_acquired(self, held: HeldLease) -> None: ...

    def lease_lost(self, shard_id: str) -> None: ...

    def handoff_requested(self, shard_id: str) -> None: ...


class LeaseCoordinator:
    def __init__(
        self, *, table: LeaseStore, kinesis: ShardLister, stream_name: str, config: WorkerConfig, metrics: KclMetrics,
        listener: LeaseListener, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.config = config
        self.worker_id = config.worker_id
        self.metrics = metrics
        self.listener = listener
        self.clock = clock
        self.held = HeldLeases(table, self.worker_id, config.failover_time, config.epsilon_ms / 1000, clock)
        self.taker = LeaseTaker(table=table, held=self.held, config=config, metrics=metrics,
                                on_acquired=listener.lease_acquired, clock=clock)
        self.shards: dict[str, ShardInfo] = {}
        self._renewer = LeaseRenewer(self.held, config.renewal_interval, threads=config.max_lease_renewal_threads,
                                     metrics=metrics, on_handoff_requested=self._from_renewer_thread(
                                         self._handoff_requested))
        self.held.on_lost = self._from_renewer_thread(self._lost)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sync_now = asyncio.Event()
        self._stop_rounds = asyncio.Event()
        self._shard_end = asyncio.Event()
        self._stopping = False
        #: Monotonic time of the last shard sync that succeeded, and the last failure's error (/readyz).
        self.last_sync_ok: float | None = None
        self.last_sync_error: str | None = None

    @property
    def renewer(self) -> LeaseRenewer:
        return self._renewer

    @property
    def last_scan(self) -> list[Lease]:
        """The last read of the whole lease table."""
        return self.taker.last_scan

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._initial_sync()
        self._renewer.start()
        self._tasks = [
            asyncio.create_task(self.taker.run(), name="kcl-lease-taker"),
            asyncio.create_task(self.taker.watch_handoffs(), name="kcl-lease-handoffs"),
            asyncio.create_task(self._shard_sync_loop(), name="kcl-shard-sync"),
        ]
        if self.config.cleanup_leases_upon_shard_completion:
            interval = self.config.completed_lease_cleanup_interval_ms / 1000
            self._tasks.append(asyncio.create_task(self._every(interval, self.clean_up), name="kcl-lease-cleanup"))

    async def _initial_sync(self) -> None:
        """The first shard sync, retried as the KCL retries its initialisation.

        Throttling or a brief outage of DynamoDB or Kinesis must not stop a worker from starting;
        errors that repeat on every attempt (a missing stream, denied access) end the start at once.
        A worker stopped meanwhile (:meth:`stop_taking`) ends it at once: the wait is cut short and the
        start fails with :class:`kcl.errors.KclError`.  (Each failure is logged by :meth:`sync_shards`.)
        """
        stop = stop_after_attempt(MAX_INITIALIZATION_ATTEMPTS) | stop_when(lambda: self._stopping)
        async for attempt in retrying(wait=Backoff(initial=0.5, maximum=5.0).wait, stop=stop,
                                      sleep=self._sleep_unless_stopping):
            with attempt:
                self._check_not_stopped()
                await self.sync_shards()
        self._check_not_stopped()

    def _check_not_stopped(self) -> None:
        if self._stopping:
            detail = f"; last shard sync error: {self.last_sync_error}" if self.last_sync_error else ""
            raise KclError(f"worker stopped during start-up{detail}")

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_rounds.wait(), seconds)

    async def stop_taking(self, timeout: float = 10.0) -> None:
        """Stop acquiring leases (first step of a graceful shutdown); held leases keep being renewed.

        A round in progress finishes (a take already sent must end up in ``held`` so that it is
        released); only a round stuck past ``timeout`` is cancelled.
        """
        self._stopping = True
        self.taker.stop()
        self._stop_rounds.set()
        self._sync_now.set()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=timeout)
            for task in stuck:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []

    def stop_renewing(self) -> None:
        self._renewer.stop()

    def _from_renewer_thread(self, callback: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(callback, *args)
        return call

    def _lost(self, shard_id: str, reason: str) -> None:
        self.metrics.lease_lost()
        self.listener.lease_lost(shard_id)
        if not self._stopping:
            self.taker.scan_soon()  # someone else wrote the lease: the table is moving

    def _handoff_requested(self, shard_id: str) -> None:
        self.listener.handoff_requested(shard_id)

    async def _every(self, interval: float, action: Callable[[], Awaitable[Any]]) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                await action()
            except Exception as exc:
                log.warning("lease coordination step failed; retrying next interval", step=action.__name__,
                            error=describe_failure(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_rounds.wait(), max(0.0, interval - (time.monotonic() - started)))

    # --- releasing ----------------------------------------------------------------------------------

    async def relinquish(self, shard_id: str, token: str) -> None:
        """Hand a lease back after shutdown_requested: complete a pending handoff, else release it."""
        held = self.held.get(shard_id)
        if held is None or held.token != token:
            return

        def claim() -> tuple[Lease, bool] | None:
            # On a table thread: the renewer holds this lock while it renews, and the loop must not wait on it.
            with held.lock:
                if held.lost:
                    return None
                held.lost = True  # no renewal or checkpoint from here on
                return held.lease, held.handing_off

        try:
            claimed = await self.table.call(claim)
            if claimed is None:
                return
            lease, handing_off = claimed
            if handing_off:
                await self.table.call(self.table.complete_handoff, lease, self.worker_id)
                log.info("handed lease over", shard=shard_id, next_owner=lease.lease_owner)
            else:
                await self.table.call(self.table.release, lease, self.worker_id)
                log.info("released lease", shard=shard_id)
        except ConditionFailed:
            log.info("lease changed before it could be handed back", shard=shard_id)
        except Exception as exc:
            log.warning("handing a lease back failed; it will expire instead", shard=shard_id,
                        error=describe_failure(exc))
        finally:
            self.held.remove(shard_id, token)
            if not self._stopping:
                self.taker.scan_soon()  # this worker may now be short of leases

    async def shard_completed(self, shard_id: str, token: str) -> None:
        """A shard is consumed to its end: free the lease, wake its children, look for new shards."""
        await self.relinquish(shard_id, token)
        self._shard_end.set()
        self._shard_end = asyncio.Event()
        self._sync_now.set()

    # --- parents and children -----------------------------------------------------------------------

    def shard_end_signal(self) -> asyncio.Event:
        """Set the next time a shard on this worker reaches its end (children re-check their parents)."""
        return self._shard_end

    async def unfinished_parents(self, parents: Iterable[str]) -> set[str]:
        unfinished = set()
        for parent in parents:
            lease = await self.table.call(self.table.get, parent)
            if lease is not None and not lease.is_shard_end:
                unfinished.add(parent)
        return unfinished

    async def create_children(self, shard_id: str, token: str, child_shards: list[dict[str, Any]]) -> None:
        """Leases for a finished shard's children (from ChildShards), before its SHARD_END checkpoint.

        A merge child whose other parent has no lease yet is left to the shard sync (as the KCL does):
        creating it now could let it start before that parent's records are consumed.

        Every failure is retried (the shard cannot end without its children), for as long as the tenure
        ``token`` holds the finished shard's lease and the worker is not stopping; then the last error is
        raised, nothing is checkpointed, and the shard's next owner creates the children.
        """
        children = [ShardInfo.from_child_shard(c) for c in child_shards]

        def log_retry(retry_state: RetryCallState) -> None:
            error = last_error(retry_state)
            fields = {"shard": shard_id, "attempt": retry_state.attempt_number,
                      "error": describe_failure(error) if error is not None else None}
            if retry_state.attempt_number >= CHILD_FAILURES_BEFORE_ERROR:
                log.error("creating child leases failed; retrying", **fields)
            else:
                log.warning("creating child leases failed; retrying", **fields)

        tenure_over = stop_when(lambda: self._stopping or not self.held.is_current(shard_id, token))
        async for attempt in retrying(wait=Backoff(initial=0.2, maximum=5.0).wait, stop=tenure_over,
                                      retry_on=any_error, before_sleep=log_retry):
            with attempt:
                await self._create_children(shard_id, children)

    async def _create_children(self, shard_id: str, children: list[ShardInfo]) -> None:
        for child in children:
            self.shards.setdefault(child.shard_id, child)
            others = [parent for parent in child.parent_ids if parent != shard_id]
            missing = [parent for parent in others if await self.table.call(self.table.get, parent) is None]
            if missing:
                log.info("deferring a merge child until its other parent has a lease", child=child.shard_id,
                         missing_parents=missing)
                continue
            if await self.table.call(self.table.create_if_absent, child_lease(child)):
                log.info("created child lease", shard=child.shard_id, parents=list(child.parent_ids))
                self.taker.scan_soon(0.0)
        await self.table.call(self.table.set_child_shards, shard_id, [child.shard_id for child in children])

    def hash_range_of(self, lease: Lease) -> HashRange | None:
        if lease.hash_range is not None:
            return lease.hash_range
        shard = self.shards.get(lease.lease_key)
        return shard.hash_range if shard is not None else None

    # --- shard sync and cleanup -----------------------------------------------------------------------

    async def list_shards(self) -> list[ShardInfo]:
        try:
            shards = await list_shards(self.kinesis, self.stream_name)
        except Exception as exc:
            self.metrics.error("ListShards", error_code(exc))
            raise
        return [ShardInfo.from_list_shards(shard) for shard in shards]

    async def sync_shards(self) -> int:
        """Create the leases ListShards says are missing.

        The table is read only when the last read of it (the taker's, at most a taker interval old)
        lacks a lease the lineage rules want; a stale read can only make this read more, never create
        a lease that exists (creation is conditional).
        """
        initial = self.config.initial_position_in_stream
        try:
            shards = await self.list_shards()
            self.shards = {shard.shard_id: shard for shard in shards}
            missing = None
            if self.taker.last_scan_at is not None:
                missing = leases_to_create(shards, [lease.lease_key for lease in self.last_scan], initial)
            created = 0
            if missing is None or missing:
                leases = await self.table.call(self.table.list_leases)
                self.taker.observe(leases, self.clock())
                for lease in leases_to_create(shards, [lease.lease_key for lease in leases], initial):
                    if await self.table.call(self.table.create_if_absent, lease):
                        created += 1
        except Exception as exc:
            self.metrics.shard_sync(False, 0)
            self.last_sync_error = f"{error_code(exc)}: {describe_failure(exc)}"
            log.warning("shard sync failed", error=error_code(exc), detail=describe_failure(exc))
            raise
        self.last_sync_ok = time.monotonic()
        self.metrics.shard_sync(True, created)
        if created:
            log.info("created leases for new shards", count=created)
            self.taker.scan_soon(0.0)
        return created

    async def _shard_sync_loop(self) -> None:
        interval = self.config.shard_sync_interval_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), interval)
            self._sync_now.clear()
            if self._stopping:
                return
            with contextlib.suppress(Exception):  # logged by sync_shards; the next round retries
                await self.sync_shards()

    async def clean_up(self) -> None:
        if not self.shards:
            return
        removable = finished_parents(self.last_scan, list(self.shards.values()))
        deleted = 0
        for lease_key in removable:
            if await self.table.call(self.table.delete_finished, lease_key):
                deleted += 1
                log.info("deleted the lease of a finished shard", shard=lease_key)
        if deleted:
            self.metrics.leases_cleaned(deleted)
