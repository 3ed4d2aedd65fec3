"""The consumer's metrics, under the Java KCL's names so existing dashboards and alarms keep working.

Namespace = application name, dimension ``Operation`` as in the KCL (``ProcessTask``,
``RenewAllLeases``, ``TakeLeases``, ...), plus ``ShardId`` at the DETAILED level.  Everything is
recorded per batch or per lease operation, never per record.  Values are readable locally through
:attr:`KclMetrics.registry` and uploaded by :class:`kpl.cloudwatch.CloudWatchPublisher`.

The same calls also keep running totals (:attr:`KclMetrics.shards`, :attr:`KclMetrics.leases`,
:attr:`KclMetrics.errors`) whatever the CloudWatch level: CloudWatch receives per-interval statistics
and drains them, while Prometheus (kcl.prometheus) and the lease items' progress attributes need
counters since start and the latest values.  They are updated from the event loop and the renewal
thread, hence the lock; a scrape copies them under it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from kcl.config import MetricsLevel
from kpl.cloudwatch import Dimensions, MetricsRegistry, dimensions

PROCESS_TASK = "ProcessTask"
RENEW_ALL_LEASES = "RenewAllLeases"
TAKE_LEASES = "TakeLeases"
SHARD_SYNC = "ShardSyncTask"
SHUTDOWN_TASK = "ShutdownTask"
INITIALIZE_TASK = "InitializeTask"
LEASE_CLEANUP = "LeaseCleanupManager"


@dataclass(slots=True)
class ShardTotals:
    """One shard's figures since this process started (across its tenures of the shard)."""

    records: int = 0
    data_bytes: int = 0
    #: process_records calls that returned, and the seconds they took.
    batches: int = 0
    processing_seconds: float = 0.0
    dead_lettered_records: int = 0
    #: The MillisBehindLatest of the last read handled (a batch processed, or an empty read passed over),
    #: and when (wall clock, epoch seconds): the shard's progress as the lease items record it.
    millis_behind_latest: int | None = None
    progress_at: float | None = None


@dataclass(slots=True)
class LeaseTotals:
    taken: int = 0
    #: Leases asked for from other workers (graceful handoffs requested, or taken at once without them).
    stolen: int = 0
    lost: int = 0
    renewals: int = 0
    renewal_failures: int = 0


class KclMetrics:
    """Typed recording helpers over a shared :class:`MetricsRegistry`, plus running totals."""

    def __init__(self, registry: MetricsRegistry, worker_id: str, level: MetricsLevel = MetricsLevel.DETAILED):
        self.registry = registry
        self.worker_id = worker_id
        self.level = level
        self._lock = threading.Lock()
        self._shards: dict[str, ShardTotals] = {}
        self._leases = LeaseTotals()
        self._errors: dict[tuple[str, str], int] = {}

    # --- running totals -----------------------------------------------------------------------------

    @property
    def shards(self) -> dict[str, ShardTotals]:
        """A copy of every shard's totals."""
        with self._lock:
            return {shard_id: replace(totals) for shard_id, totals in self._shards.items()}

    @property
    def leases(self) -> LeaseTotals:
        with self._lock:
            return replace(self._leases)

    @property
    def errors(self) -> dict[tuple[str, str], int]:
        """Failed calls by (operation, error code): Kinesis reads, processor calls, ListShards."""
        with self._lock:
            return dict(self._errors)

    def progress(self, shard_id: str, since: float) -> tuple[int, float] | None:
        """(MillisBehindLatest, when) of the shard's last read handled at or after ``since`` (epoch seconds)."""
        with self._lock:
            totals = self._shards.get(shard_id)
            if totals is None or totals.millis_behind_latest is None or totals.progress_at is None \
                    or totals.progress_at < since:
                return None
            return totals.millis_behind_latest, totals.progress_at

    def error(self, operation: str, code: str) -> None:
        with self._lock:
            key = (operation, code)
            self._errors[key] = self._errors.get(key, 0) + 1

    def _shard(self, shard_id: str) -> ShardTotals:
        totals = self._shards.get(shard_id)
        if totals is None:
            totals = self._shards[shard_id] = ShardTotals()
        return totals

    def _dims(self, operation: str, shard_id: str | None = None) -> Dimensions:
        if self.level is MetricsLevel.DETAILED and shard_id is not None:
            return dimensions(Operation=operation, ShardId=shard_id)
        return dimensions(Operation=operation)

    # --- processing -------------------------------------------------------------------------------

    def batch_processed(self, shard_id: str, records: int, data_bytes: int, millis_behind_latest: int,
                        seconds: float) -> None:
        dims = self._dims(PROCESS_TASK, shard_id)
        put = self.registry.put
        put("RecordsProcessed", records, "Count", dims)
        put("DataBytesProcessed", data_bytes, "Bytes", dims)
        put("MillisBehindLatest", millis_behind_latest, "Milliseconds", dims)
        put("RecordProcessor.processRecords.Time", seconds * 1000, "Milliseconds", dims)
        put("Success", 1, "Count", dims)
        now = time.time()
        with self._lock:
            totals = self._shard(shard_id)
            totals.records += records
            totals.data_bytes += data_bytes
            totals.batches += 1
            totals.processing_seconds += seconds
            totals.millis_behind_latest = millis_behind_latest
            totals.progress_at = now

    def millis_behind_latest(self, shard_id: str, millis: int) -> None:
        """An empty read passed over (not dispatched): the shard is this far behind, and keeping up."""
        self.registry.put("MillisBehindLatest", millis, "Milliseconds", self._dims(PROCESS_TASK, shard_id))
        now = time.time()
        with self._lock:
            totals = self._shard(shard_id)
            totals.millis_behind_latest = millis
            totals.progress_at = now

    def processing_failed(self, shard_id: str, error: str = "Exception") -> None:
        """``process_records`` raised ``error`` (the exception's class name)."""
        self.registry.put("RecordProcessor.processRecords.Failure", 1, "Count", self._dims(PROCESS_TASK, shard_id))
        self.error("ProcessRecords", error)

    def dead_lettered(self, shard_id: str, records: int) -> None:
        self.registry.put("DeadLetteredRecords", records, "Count", self._dims(PROCESS_TASK, shard_id))
        with self._lock:
            self._shard(shard_id).dead_lettered_records += records

    def aggregates_dropped(self, shard_id: str, aggregates: int) -> None:
        self.registry.put("DroppedAggregatedRecords", aggregates, "Count", self._dims(PROCESS_TASK, shard_id))

    def expired_iterator(self, shard_id: str) -> None:
        self.registry.put("ExpiredIterator", 1, "Count", self._dims(PROCESS_TASK, shard_id))

    def get_records(self, shard_id: str, success: bool, seconds: float) -> None:
        dims = self._dims(PROCESS_TASK, shard_id)
        self.registry.put("KinesisDataFetcher.getRecords.Success", 1 if success else 0, "Count", dims)
        self.registry.put("KinesisDataFetcher.getRecords.Time", seconds * 1000, "Milliseconds", dims)

    def processor_call(self, operation: str, shard_id: str, success: bool) -> None:
        self.registry.put("Success", 1 if success else 0, "Count", self._dims(operation, shard_id))

    # --- leases -----------------------------------------------------------------------------------

    def renewal(self, success: bool, seconds: float) -> None:
        dims = self._dims(RENEW_ALL_LEASES)
        self.registry.put("RenewLease.Success", 1 if success else 0, "Count", dims)
        self.registry.put("RenewLease.Time", seconds * 1000, "Milliseconds", dims)
        with self._lock:
            if success:
                self._leases.renewals += 1
            else:
                self._leases.renewal_failures += 1

    def lease_counts(self, current: int) -> None:
        self.registry.put("CurrentLeases", current, "Count", self._dims(RENEW_ALL_LEASES))

    def lost_leases(self, count: int) -> None:
        self.registry.put("LostLeases", count, "Count", self._dims(RENEW_ALL_LEASES))

    def lease_lost(self) -> None:
        """A lease this worker held was found lost (taken, deleted, or not renewed in time)."""
        with self._lock:
            self._leases.lost += 1

    def taker_round(self, *, total: int, workers: int, needed: int, expired: int, taken: int, stolen: int,
                    untaken: int) -> None:
        dims = self._dims(TAKE_LEASES)
        put = self.registry.put
        put("TotalLeases", total, "Count", dims)
        put("NumWorkers", workers, "Count", dims)
        put("NeededLeases", needed, "Count", dims)
        put("ExpiredLeases", expired, "Count", dims)
        put("TakenLeases", taken, "Count", dims)
        put("StolenLeases", stolen, "Count", dims)
        put("UntakenLeases", untaken, "Count", dims)
        with self._lock:
            self._leases.stolen += stolen

    def lease_taken(self) -> None:
        """This worker became a lease's owner (an available or expired lease, or one handed over to it)."""
        with self._lock:
            self._leases.taken += 1

    def shard_sync(self, success: bool, created: int) -> None:
        dims = self._dims(SHARD_SYNC)
        self.registry.put("SyncShards", 1 if success else 0, "Count", dims)
        self.registry.put("CreateLease", created, "Count", dims)

    def leases_cleaned(self, count: int) -> None:
        self.registry.put("DeletedLeases", count, "Count", self._dims(LEASE_CLEANUP))
