"""The consumer's metrics, under the Java KCL's names so existing dashboards and alarms keep working.

Namespace = application name, dimension ``Operation`` as in the KCL (``ProcessTask``,
``RenewAllLeases``, ``TakeLeases``, ...), plus ``ShardId`` at the DETAILED level.  Everything is
recorded per batch or per lease operation, never per record.  Values are readable locally through
:attr:`KclMetrics.registry` and uploaded by :class:`kpl.cloudwatch.CloudWatchPublisher`.
"""

from __future__ import annotations

from kcl.config import MetricsLevel
from kpl.cloudwatch import Dimensions, MetricsRegistry, dimensions

PROCESS_TASK = "ProcessTask"
RENEW_ALL_LEASES = "RenewAllLeases"
TAKE_LEASES = "TakeLeases"
SHARD_SYNC = "ShardSyncTask"
SHUTDOWN_TASK = "ShutdownTask"
INITIALIZE_TASK = "InitializeTask"
LEASE_CLEANUP = "LeaseCleanupManager"


class KclMetrics:
    """Typed recording helpers over a shared :class:`MetricsRegistry`."""

    def __init__(self, registry: MetricsRegistry, worker_id: str, level: MetricsLevel = MetricsLevel.DETAILED):
        self.registry = registry
        self.worker_id = worker_id
        self.level = level

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

    def millis_behind_latest(self, shard_id: str, millis: int) -> None:
        self.registry.put("MillisBehindLatest", millis, "Milliseconds", self._dims(PROCESS_TASK, shard_id))

    def processing_failed(self, shard_id: str) -> None:
        self.registry.put("RecordProcessor.processRecords.Failure", 1, "Count", self._dims(PROCESS_TASK, shard_id))

    def dead_lettered(self, shard_id: str, records: int) -> None:
        self.registry.put("DeadLetteredRecords", records, "Count", self._dims(PROCESS_TASK, shard_id))

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

    def lease_counts(self, current: int) -> None:
        self.registry.put("CurrentLeases", current, "Count", self._dims(RENEW_ALL_LEASES))

    def lost_leases(self, count: int) -> None:
        self.registry.put("LostLeases", count, "Count", self._dims(RENEW_ALL_LEASES))

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

    def shard_sync(self, success: bool, created: int) -> None:
        dims = self._dims(SHARD_SYNC)
        self.registry.put("SyncShards", 1 if success else 0, "Count", dims)
        self.registry.put("CreateLease", created, "Count", dims)

    def leases_cleaned(self, count: int) -> None:
        self.registry.put("DeletedLeases", count, "Count", self._dims(LEASE_CLEANUP))
