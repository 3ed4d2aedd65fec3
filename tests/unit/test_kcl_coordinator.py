"""The coordinator's retry loops and their stops (issue 12): the first shard sync ends when the worker stops
during start-up, and creating a finished shard's child leases is retried only while this worker holds
that shard's lease and is not stopping.

The lease table and Kinesis here are small in-memory stubs that fail on demand: these are tests of retry
decisions with no I/O of their own (the real table and stream are exercised by the integration tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest

from kcl.config import MetricsLevel, WorkerConfig
from kcl.coordinator import LeaseCoordinator
from kcl.errors import KclError
from kcl.leases import Lease
from kcl.metrics import KclMetrics
from kcl.renewer import HeldLease
from kcl.sequence import ExtendedSequenceNumber
from kpl.cloudwatch import MetricsRegistry
from tests.support.waiting import async_wait_for

PARENT = "shardId-000000000000"
CHILDREN = [
    {"ShardId": "shardId-000000000001", "ParentShards": [PARENT],
     "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)}},
    {"ShardId": "shardId-000000000002", "ParentShards": [PARENT],
     "HashKeyRange": {"StartingHashKey": str(2**127), "EndingHashKey": str(2**128 - 1)}},
]


def throttled(operation: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
         "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


class FailingTable:
    """Lease-table operations the coordinator uses; ``create_if_absent`` fails while ``failing`` says so."""

    def __init__(self) -> None:
        self.failing = True
        self.create_attempts = 0
        self.created: list[str] = []

    async def call(self, method: Callable[..., Any], *args: Any, **retries: Any) -> Any:
        return method(*args)

    def get(self, lease_key: str) -> Lease | None:
        return None

    def create_if_absent(self, lease: Lease) -> bool:
        self.create_attempts += 1
        if self.failing:
            raise throttled("PutItem")
        self.created.append(lease.lease_key)
        return True

    def set_child_shards(self, lease_key: str, children: list[str]) -> None:
        pass

    def list_leases(self) -> list[Lease]:
        return []


class Listener:
    def lease_acquired(self, held: HeldLease) -> None: ...

    def lease_lost(self, shard_id: str) -> None: ...

    def handoff_requested(self, shard_id: str) -> None: ...


class ThrottledKinesis:
    def __init__(self) -> None:
        self.list_shards_calls = 0

    async def list_shards(self, **request: Any) -> dict[str, Any]:
        self.list_shards_calls += 1
        raise throttled("ListShards")


def coordinator(table: Any, kinesis: Any = None) -> LeaseCoordinator:
    config = WorkerConfig(worker_id="me", metrics_level=MetricsLevel.NONE)
    return LeaseCoordinator(table=table, kinesis=kinesis, stream_name="s", config=config,
                            metrics=KclMetrics(MetricsRegistry(), "me", MetricsLevel.NONE), listener=Listener())


def hold_finished_parent(coord: LeaseCoordinator) -> HeldLease:
    lease = Lease(PARENT, lease_owner="me", lease_counter=3, checkpoint=ExtendedSequenceNumber("100"))
    return coord.held.add(lease, time.monotonic())


async def test_child_lease_creation_is_retried_while_the_lease_is_held_and_stops_once_it_is_lost() -> None:
    table = FailingTable()
    coord = coordinator(table)
    held = hold_finished_parent(coord)
    creating = asyncio.create_task(coord.create_children(PARENT, held.token, CHILDREN))
    await async_wait_for(lambda: table.create_attempts >= 3, 10, message="three failed attempts")
    assert not creating.done(), "a throttled table is retried while the lease is held"
    held.lost = True  # another worker took the lease (or this one self-fenced)
    with pytest.raises(botocore.exceptions.ClientError, match="ProvisionedThroughputExceeded"):
        await asyncio.wait_for(creating, 10)
    attempts = table.create_attempts
    # The loop has ended with the error: no task of its is left to try again (the coordinator was never started).
    assert creating.done() and not coord._tasks
    assert table.create_attempts == attempts and table.created == []


async def test_child_lease_creation_stops_when_the_worker_stops() -> None:
    table = FailingTable()
    coord = coordinator(table)
    held = hold_finished_parent(coord)
    creating = asyncio.create_task(coord.create_children(PARENT, held.token, CHILDREN))
    await async_wait_for(lambda: table.create_attempts >= 2, 10, message="two failed attempts")
    await coord.stop_taking()
    with pytest.raises(botocore.exceptions.ClientError):
        await asyncio.wait_for(creating, 10)


async def test_child_lease_creation_succeeds_once_the_table_recovers() -> None:
    table = FailingTable()
    coord = coordinator(table)
    held = hold_finished_parent(coord)
    creating = asyncio.create_task(coord.create_children(PARENT, held.token, CHILDREN))
    await async_wait_for(lambda: table.create_attempts >= 2, 10, message="two failed attempts")
    table.failing = False
    await asyncio.wait_for(creating, 10)
    assert sorted(table.created) == [child["ShardId"] for child in CHILDREN]


async def test_a_lease_of_another_tenure_does_not_keep_the_retries_going() -> None:
    table = FailingTable()
    coord = coordinator(table)
    hold_finished_parent(coord)
    with pytest.raises(botocore.exceptions.ClientError):
        await asyncio.wait_for(coord.create_children(PARENT, "an-older-tenure", CHILDREN), 10)
    assert table.create_attempts == 1


async def test_a_worker_stopped_during_start_up_ends_the_first_shard_sync_at_once() -> None:
    kinesis = ThrottledKinesis()
    coord = coordinator(FailingTable(), kinesis)
    starting = asyncio.create_task(coord.start())
    await async_wait_for(lambda: kinesis.list_shards_calls >= 2, 10, message="two failed shard syncs")
    stopped_at = time.monotonic()
    await coord.stop_taking()
    with pytest.raises((KclError, botocore.exceptions.ClientError)):
        await asyncio.wait_for(starting, 10)
    assert time.monotonic() - stopped_at < 2.0, "the backoff wait is cut short by the stop"
    assert kinesis.list_shards_calls <= 3
    assert not coord.renewer.running, "nothing is started after the stop"
    assert coord.last_sync_error is not None and "ProvisionedThroughputExceeded" in coord.last_sync_error

