"""The end of a shard when its children's leases cannot be written (issue 12): the coordinator gives up
once the worker stops or the lease is lost, and then SHARD_END is not recorded and ``shard_ended`` is not
called; the tenure ends as a shutdown (the lease is handed back) or as a lost lease.

The coordinator, the fetcher and the lease store are small stubs: a test of the shard consumer's decisions,
no I/O of its own (the real resharding path runs against LocalStack in test_kcl_resharding).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions

from kcl.checkpointer import Checkpointer
from kcl.config import MetricsLevel, WorkerConfig
from kcl.deaggregation import Deaggregator
from kcl.leases import Lease
from kcl.metrics import KclMetrics
from kcl.processor import Record, RecordProcessor
from kcl.renewer import HeldLeases
from kcl.retrieval import BatchQueue, FetchedBatch, StartingPosition
from kcl.sequence import ExtendedSequenceNumber
from kcl.shard_consumer import Outcome, ShardConsumer
from kpl.cloudwatch import MetricsRegistry

SHARD = "shardId-000000000000"


class Processor(RecordProcessor):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.calls.append("initialize")

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> None:
        self.calls.append("process_records")

    def lease_lost(self) -> None:
        self.calls.append("lease_lost")

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        self.calls.append("shard_ended")
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        self.calls.append("shutdown_requested")


class Table:
    def __init__(self) -> None:
        self.checkpoints: list[ExtendedSequenceNumber] = []

    async def call(self, method: Any, *args: Any, **retries: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: method(*args))

    def call_blocking(self, method: Any, *args: Any, **retries: Any) -> Any:
        return method(*args)

    def checkpoint(self, lease: Lease, value: ExtendedSequenceNumber) -> Lease:
        self.checkpoints.append(value)
        return lease.with_(lease_counter=lease.lease_counter + 1, checkpoint=value)


class Coordinator:
    """Gives up creating the children, as the real one does once the worker stops or the lease is lost."""

    def __init__(self, held: HeldLeases, *, lose_lease: bool) -> None:
        self.table = Table()
        self.held = held
        self.lose_lease = lose_lease
        self.relinquished: list[str] = []
        self.completed: list[str] = []

    async def create_children(self, shard_id: str, token: str, child_shards: list[dict[str, Any]]) -> None:
        if self.lose_lease:
            held = self.held.get(shard_id)
            assert held is not None
            held.lost = True
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem")

    async def relinquish(self, shard_id: str, token: str) -> None:
        self.relinquished.append(shard_id)

    async def shard_completed(self, shard_id: str, token: str) -> None:
        self.completed.append(shard_id)


class LastBatchFetcher:
    def __init__(self, queue: BatchQueue) -> None:
        self.queue = queue

    async def run(self) -> None:
        record = {"SequenceNumber": "7", "Data": b"x", "PartitionKey": "k",
                  "ApproximateArrivalTimestamp": datetime(2024, 1, 1, tzinfo=UTC)}
        await self.queue.put(FetchedBatch([record], 0, [{"ShardId": "shardId-000000000001"}], 1))


async def run_to_the_end(*, lose_lease: bool) -> tuple[Outcome, Processor, Coordinator]:
    config = WorkerConfig(worker_id="me", metrics_level=MetricsLevel.NONE)
    held_leases = HeldLeases(Table(), "me", failover=10.0, epsilon=0.0)  # type: ignore[arg-type]
    held = held_leases.add(Lease(SHARD, lease_owner="me", lease_counter=1), time.monotonic())
    coordinator = Coordinator(held_leases, lose_lease=lose_lease)
    processor = Processor()

    def fetcher(shard_id: str, start: StartingPosition, queue: BatchQueue) -> LastBatchFetcher:
        return LastBatchFetcher(queue)

    consumer = ShardConsumer(held=held, held_leases=held_leases, processor=processor,
                             coordinator=coordinator,  # type: ignore[arg-type]
                             fetcher_factory=fetcher, deaggregator=Deaggregator(SHARD, None), config=config,
                             metrics=KclMetrics(MetricsRegistry(), "me", MetricsLevel.NONE))
    outcome = await asyncio.wait_for(consumer.run(), 10)
    return outcome, processor, coordinator


async def test_a_worker_stopping_before_the_children_exist_hands_the_shard_back_without_shard_end() -> None:
    outcome, processor, coordinator = await run_to_the_end(lose_lease=False)
    assert outcome is Outcome.SHUTDOWN
    assert processor.calls[:3] == ["initialize", "process_records", "shutdown_requested"]
    assert "shard_ended" not in processor.calls
    assert coordinator.relinquished == [SHARD] and coordinator.completed == []
    assert not any(value.is_shard_end for value in coordinator.table.checkpoints)


async def test_a_lease_lost_before_the_children_exist_ends_the_tenure_without_shard_end() -> None:
    outcome, processor, coordinator = await run_to_the_end(lose_lease=True)
    assert outcome is Outcome.LEASE_LOST
    assert processor.calls == ["initialize", "process_records", "lease_lost"]
    assert coordinator.relinquished == [] and coordinator.completed == []
    assert coordinator.table.checkpoints == []
