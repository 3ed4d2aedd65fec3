"""A split and a merge while records are produced and two ``kcl-worker`` processes consume.

shardId-0 is split into shardId-2 and shardId-3, then shardId-3 is merged with shardId-1 into
shardId-4.  Records are plain (not aggregated) so that every key keeps one ordered sequence across
the parent-to-child boundary.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    Producer,
    WorkerProcess,
    concurrent_processing,
    missing_records,
    order_violations,
    read_events,
    start_worker,
    watched,
    write_properties,
)
from tests.support.kinesis import create_stream, list_shards, wait_for_active
from tests.support.waiting import wait_for

KEYS = [f"key-{i:02d}" for i in range(40)]
ROUNDS = 120


@dataclass
class ReshardRun:
    stream: str
    out: Path
    producer: Producer
    workers: list[WorkerProcess]
    shards: list[dict[str, Any]] = field(default_factory=list)
    leases_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def initialised(out: Path, shard: str) -> bool:
    return any(e["e"] == "init" and e["s"] == shard for e in read_events(out))


def delivered(out: Path) -> int:
    return sum(1 for e in read_events(out) if e["e"] == "rec")


def lease_items(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    return {item["leaseKey"]["S"]: item for item in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]}


@pytest.fixture(scope="module")
def reshard(tmp_path_factory: pytest.TempPathFactory, aws_clients: Callable[[str], Any]) -> Iterator[ReshardRun]:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-reshard-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 2)
    base = tmp_path_factory.mktemp("kcl-reshard")
    out = base / "events"
    properties = write_properties(base / "app.properties", initialPositionInStream="TRIM_HORIZON", **FAST_TIMINGS)
    run = ReshardRun(stream, out, Producer(kinesis, stream, KEYS, rounds=ROUNDS, aggregate=False, pause=0.02), [])
    try:
        for name in ("W1", "W2"):
            run.workers.append(start_worker(out, name, "--stream", stream, "--application", stream,
                                            "--config", str(properties)))
        run.producer.start()
        wait_for(watched(lambda: delivered(out) >= 400, *run.workers), 90, interval=0.3, message="records flowing")

        shard0 = next(s for s in list_shards(kinesis, stream) if s["ShardId"] == "shardId-000000000000")
        low, high = int(shard0["HashKeyRange"]["StartingHashKey"]), int(shard0["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000",
                            NewStartingHashKey=str((low + high) // 2))
        wait_for_active(kinesis, stream)
        wait_for(lambda: initialised(out, "shardId-000000000002") and initialised(out, "shardId-000000000003"),
                 90, interval=0.3, message="split children started")
        kinesis.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000003",
                             AdjacentShardToMerge="shardId-000000000001")
        wait_for_active(kinesis, stream)
        wait_for(lambda: initialised(out, "shardId-000000000004"), 90, interval=0.3, message="merge child started")
        assert not run.producer.done, "production ended before the merge child started: produce for longer"

        wait_for(lambda: run.producer.done, 180, interval=0.5, message="production finished")
        run.producer.stop()
        wait_for(watched(lambda: not missing_records(read_events(out), run.producer.produced), *run.workers),
                 120, interval=1.0, message="every record delivered")
        finished = {"shardId-000000000000", "shardId-000000000001", "shardId-000000000003"}
        wait_for(lambda: not finished & set(lease_items(dynamodb, stream)), 60, interval=0.5,
                 message="finished parents' leases cleaned up")
        run.leases_after = lease_items(dynamodb, stream)
        run.shards = list_shards(kinesis, stream)
        for worker in run.workers:
            assert worker.terminate(timeout=60) == 0, worker.log_text()[-3000:]
        run.events = read_events(out)
        yield run
    finally:
        run.producer.stop()
        for worker in run.workers:
            if worker.alive:
                worker.kill()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=stream)


def test_nothing_lost_across_split_and_merge(reshard: ReshardRun) -> None:
    assert reshard.producer.total == ROUNDS * len(KEYS)
    assert missing_records(reshard.events, reshard.producer.produced) == {}


def test_per_key_order_holds_across_the_parent_to_child_boundary(reshard: ReshardRun) -> None:
    assert order_violations(reshard.events) == []
    # The keys really did cross: some key was delivered from a parent and later from a child shard.
    shards_by_key: dict[str, list[str]] = {}
    for event in reshard.events:
        if event["e"] == "rec":
            seen = shards_by_key.setdefault(event["k"], [])
            if not seen or seen[-1] != event["s"]:
                seen.append(event["s"])
    assert any(len(path) >= 3 for path in shards_by_key.values()), shards_by_key


def test_parents_finish_before_children_start(reshard: ReshardRun) -> None:
    parents = {"shardId-000000000002": ["shardId-000000000000"], "shardId-000000000003": ["shardId-000000000000"],
               "shardId-000000000004": ["shardId-000000000003", "shardId-000000000001"]}
    for child, child_parents in parents.items():
        child_start = min(e["m"] for e in reshard.events if e["e"] == "init" and e["s"] == child)
        for parent in child_parents:
            ends = [e["m"] for e in reshard.events if e["e"] == "end" and e["s"] == parent]
            assert ends, f"{parent} never reached shard_ended"
            assert max(e["m"] for e in reshard.events if e["e"] == "rec" and e["s"] == parent) < child_start
            assert min(ends) < child_start, f"{child} started before {parent} ended"


def test_children_record_their_parents_and_finished_leases_are_removed(reshard: ReshardRun) -> None:
    leases = reshard.leases_after
    assert set(leases) == {"shardId-000000000002", "shardId-000000000004"}
    assert set(leases["shardId-000000000004"]["parentShardId"]["SS"]) == {"shardId-000000000001",
                                                                        "shardId-000000000003"}
    assert leases["shardId-000000000002"]["parentShardId"]["SS"] == ["shardId-000000000000"]


def test_no_shard_processed_by_two_workers_at_once(reshard: ReshardRun) -> None:
    assert concurrent_processing(reshard.events) == []
