"""A lease table written by the Java KCL (or amazon-kclpy) is continued in place.

The table is created and filled here with boto3, attribute by attribute in the Java KCL's format:
a checkpoint inside a KPL aggregate (sub-sequence 3), a SHARD_END parent with ``childShardIds``,
and its two children at TRIM_HORIZON with ``parentShardId`` string sets, owned by Java workers that
no longer run.  One ``kcl-worker`` must resume exactly after the checkpoint, never touch the finished
shard, start the children after it, and leave items a Java worker can still read.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kcl.leases import EXTRA_ATTRIBUTES
from kpl.aggregation import encode
from kpl.hashing import HashRange, partition_key_hash
from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    kcl_worker_command,
    read_events,
    start_worker,
    watched,
    write_properties,
)
from tests.support.kinesis import create_stream, list_shards, wait_for_active
from tests.support.waiting import wait_for

S0, S1, S2, S3 = (f"shardId-{i:012d}" for i in range(4))


def keys_in(hash_range: HashRange, prefix: str, count: int) -> list[str]:
    keys, index = [], 0
    while len(keys) < count:
        candidate = f"{prefix}-{index}"
        if partition_key_hash(candidate) in hash_range:
            keys.append(candidate)
        index += 1
    return keys


def ranges(kinesis: Any, stream: str) -> dict[str, HashRange]:
    return {s["ShardId"]: HashRange.from_shard(s) for s in list_shards(kinesis, stream)}


def put_plain(kinesis: Any, stream: str, keys: list[str], tag: str) -> list[str]:
    payloads = [f"{tag}:{key}" for key in keys]
    result = kinesis.put_records(StreamName=stream, Records=[
        {"Data": payload.encode(), "PartitionKey": key} for key, payload in zip(keys, payloads, strict=True)])
    assert not result["FailedRecordCount"]
    return payloads


@dataclass
class JavaRun:
    stream: str
    out: Path
    expected: set[str]
    skipped: set[str]
    status_before: str = ""
    status_json_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: After a Java worker took S0 (its own conditional update) from the item our worker left.
    status_json_java_took: dict[str, dict[str, Any]] = field(default_factory=dict)
    items_java_took: dict[str, Any] = field(default_factory=dict)
    items_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    aggregate_sequence: str = ""


@pytest.fixture(scope="module")
def java(tmp_path_factory: pytest.TempPathFactory, aws_clients: Callable[[str], Any]) -> Iterator[JavaRun]:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-java-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 2)
    base = tmp_path_factory.mktemp("kcl-java")
    out = base / "events"
    worker = None
    try:
        shard_ranges = ranges(kinesis, stream)
        # Shard 0: one aggregate of ten sub-records, checkpointed (by "Java") at sub-record 3, then more.
        agg_keys = keys_in(shard_ranges[S0], "agg", 10)
        aggregate = encode([(key, None, f"agg:{key}".encode()) for key in agg_keys])
        put = kinesis.put_record(StreamName=stream, Data=aggregate, PartitionKey="agg",
                                 ExplicitHashKey=str(shard_ranges[S0].start))
        assert put["ShardId"] == S0
        after = put_plain(kinesis, stream, keys_in(shard_ranges[S0], "s0", 5), "after")
        # Shard 1: consumed to its end by "Java", then split into shards 2 and 3.
        put_plain(kinesis, stream, keys_in(shard_ranges[S1], "s1", 5), "parent")
        middle = (shard_ranges[S1].start + shard_ranges[S1].end) // 2
        kinesis.split_shard(StreamName=stream, ShardToSplit=S1, NewStartingHashKey=str(middle))
        wait_for_active(kinesis, stream)
        shard_ranges = ranges(kinesis, stream)
        children = put_plain(kinesis, stream, keys_in(shard_ranges[S2], "s2", 4), "child")
        children += put_plain(kinesis, stream, keys_in(shard_ranges[S3], "s3", 4), "child")

        dynamodb.create_table(TableName=stream, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        dynamodb.get_waiter("table_exists").wait(TableName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})

        def hash_keys(shard: str) -> dict[str, Any]:
            return {"startingHashKey": {"S": str(shard_ranges[shard].start)},
                    "endingHashKey": {"S": str(shard_ranges[shard].end)}}

        items = [
            {"leaseKey": {"S": S0}, "leaseOwner": {"S": "java-worker-1"}, "leaseCounter": {"N": "41"},
             "checkpoint": {"S": put["SequenceNumber"]}, "checkpointSubSequenceNumber": {"N": "3"},
             "ownerSwitchesSinceCheckpoint": {"N": "0"}, **hash_keys(S0)},
            {"leaseKey": {"S": S1}, "leaseOwner": {"S": "java-worker-1"}, "leaseCounter": {"N": "12"},
             "checkpoint": {"S": "SHARD_END"}, "checkpointSubSequenceNumber": {"N": "0"},
             "ownerSwitchesSinceCheckpoint": {"N": "0"}, "childShardIds": {"SS": [S2, S3]}, **hash_keys(S1)},
            {"leaseKey": {"S": S2}, "leaseCounter": {"N": "1"}, "checkpoint": {"S": "TRIM_HORIZON"},
             "checkpointSubSequenceNumber": {"N": "0"}, "ownerSwitchesSinceCheckpoint": {"N": "0"},
             "parentShardId": {"SS": [S1]}, **hash_keys(S2)},
            {"leaseKey": {"S": S3}, "leaseOwner": {"S": "java-worker-2"}, "leaseCounter": {"N": "7"},
             "checkpoint": {"S": "TRIM_HORIZON"}, "checkpointSubSequenceNumber": {"N": "0"},
             "ownerSwitchesSinceCheckpoint": {"N": "1"}, "parentShardId": {"SS": [S1]}, **hash_keys(S3)},
        ]
        for item in items:
            dynamodb.put_item(TableName=stream, Item=item)

        status = subprocess.run([*kcl_worker_command(), "status", "--application", stream], capture_output=True,
                                text=True, timeout=60, check=True)
        run = JavaRun(stream, out, expected={f"agg:{key}" for key in agg_keys[4:]} | set(after) | set(children),
                      skipped={f"agg:{key}" for key in agg_keys[:4]}, status_before=status.stdout,
                      status_json_before=status_json(stream), aggregate_sequence=put["SequenceNumber"])

        properties = write_properties(base / "app.properties", **FAST_TIMINGS)
        worker = start_worker(out, "python-worker", "--stream", stream, "--application", stream,
                              "--config", str(properties), env={"KCL_TEST_PREPARE_ON_SHUTDOWN": "app-state"})

        def delivered() -> set[str]:
            return {e["d"] for e in read_events(out) if e["e"] == "rec"}

        wait_for(watched(lambda: run.expected <= delivered(), worker), 90, interval=0.3,
                 message="records after the checkpoints")
        wait_for(lambda: S1 not in {i["leaseKey"]["S"] for i in dynamodb.scan(TableName=stream)["Items"]}, 60,
                 interval=0.3, message="finished parent's lease cleaned up")
        assert worker.terminate(timeout=60) == 0, worker.log_text()[-3000:]
        run.items_after = {item["leaseKey"]["S"]: item
                           for item in dynamodb.scan(TableName=stream, ConsistentRead=True)["Items"]}
        run.events = read_events(out)
        # A Java worker takes S0 as DynamoDBLeaseSerializer does (legacy Expected/AttributeUpdates, conditional
        # on the counter it saw): our extra attributes neither stop its write nor survive as current figures.
        counter = run.items_after[S0]["leaseCounter"]["N"]
        run.items_java_took = dynamodb.update_item(
            TableName=stream, Key={"leaseKey": {"S": S0}},
            Expected={"leaseCounter": {"Value": {"N": counter}, "ComparisonOperator": "EQ"}},
            AttributeUpdates={"leaseCounter": {"Value": {"N": str(int(counter) + 1)}, "Action": "PUT"},
                              "leaseOwner": {"Value": {"S": "java-worker-3"}, "Action": "PUT"},
                              "checkpointOwner": {"Action": "DELETE"},
                              "ownerSwitchesSinceCheckpoint": {"Value": {"N": "1"}, "Action": "ADD"}},
            ReturnValues="ALL_NEW")["Attributes"]
        run.status_json_java_took = status_json(stream)
        yield run
    finally:
        if worker is not None and worker.alive:
            worker.kill()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=stream)


def status_json(stream: str) -> dict[str, dict[str, Any]]:
    result = subprocess.run([*kcl_worker_command(), "status", "--application", stream, "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    return {row["shard"]: row for row in map(json.loads, result.stdout.splitlines())}


def test_status_reads_the_java_table(java: JavaRun) -> None:
    rows = {line.split()[0]: line for line in java.status_before.splitlines() if line.startswith("shardId-")}
    assert rows[S0].split()[:6] == [S0, "java-worker-1", f"{java.aggregate_sequence}/3", "unknown", "unknown",
                                    "unknown"], rows[S0]
    assert "SHARD_END" in rows[S1] and "finished (SHARD_END)" in rows[S1]
    assert rows[S2].split()[6] == S1 and "unowned" in rows[S2]
    assert "java-worker-2" in rows[S3] and "starting at TRIM_HORIZON" in rows[S3]


def test_status_json_reads_the_java_table_without_our_attributes(java: JavaRun) -> None:
    rows = java.status_json_before
    assert set(rows) == {S0, S1, S2, S3}
    s0 = rows[S0]
    assert (s0["owner"], s0["checkpoint"], s0["checkpoint_sub_sequence_number"], s0["lease_counter"]) == \
        ("java-worker-1", java.aggregate_sequence, 3, 41)
    assert (rows[S1]["state"], rows[S2]["parents"], rows[S3]["owner"]) == ("finished (SHARD_END)", [S1],
                                                                          "java-worker-2")
    for row in rows.values():  # what Java items do not carry is unknown, never made up
        assert (row["lag_millis"], row["processed_at"], row["processed_age_seconds"], row["renewed_at"],
                row["renewal_age_seconds"], row["renewal_age_is"]) == (None,) * 6, row


def test_a_java_worker_takes_a_lease_carrying_our_attributes(java: JavaRun) -> None:
    # Our worker left its figures in the item; Java's conditional take still succeeded (the fixture would
    # have raised ConditionalCheckFailedException), kept them untouched, and status no longer trusts them.
    item = java.items_java_took
    assert item["leaseOwner"] == {"S": "java-worker-3"}
    assert {"pyMillisBehindLatest", "pyProcessedAt", "pyCounterChangedAt", "pyCounterChangedTo"} <= set(item)
    row = java.status_json_java_took[S0]
    assert row["owner"] == "java-worker-3" and row["lease_counter"] == int(item["leaseCounter"]["N"])
    assert (row["lag_millis"], row["processed_at"], row["renewed_at"], row["renewal_age_seconds"]) == (None,) * 4


def test_resumes_inside_the_aggregate_after_the_sub_sequence_checkpoint(java: JavaRun) -> None:
    delivered = [e for e in java.events if e["e"] == "rec"]
    data = [e["d"] for e in delivered]
    assert not java.skipped & set(data), "records at or below the Java checkpoint were delivered again"
    assert java.expected <= set(data)
    aggregate = [e for e in delivered if e["q"] == java.aggregate_sequence]
    assert [e["u"] for e in aggregate] == [4, 5, 6, 7, 8, 9]
    init = next(e for e in java.events if e["e"] == "init" and e["s"] == S0)
    assert (init["q"], init["u"]) == (java.aggregate_sequence, 3)


def test_finished_shard_is_not_processed_and_children_start_after_it(java: JavaRun) -> None:
    assert not any(e["s"] == S1 for e in java.events if e["e"] in ("init", "rec"))
    assert not any(e["d"].startswith("parent:") for e in java.events if e["e"] == "rec")
    for child in (S2, S3):
        init = next(e for e in java.events if e["e"] == "init" and e["s"] == child)
        assert (init["q"], init["u"]) == ("TRIM_HORIZON", 0)


def test_items_stay_in_the_java_format(java: JavaRun) -> None:
    items = java.items_after
    assert set(items) == {S0, S2, S3}
    s0 = items[S0]
    assert "leaseOwner" not in s0  # released on shutdown
    assert set(s0) >= {"leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
                       "ownerSwitchesSinceCheckpoint", "startingHashKey", "endingHashKey"}
    assert int(s0["leaseCounter"]["N"]) > 41
    assert s0["checkpoint"]["S"].isdigit()
    assert s0["checkpointSubSequenceNumber"]["N"].isdigit()
    assert s0["ownerSwitchesSinceCheckpoint"]["N"] == "0"  # reset by our checkpoint
    assert s0["pendingCheckpoint"]["S"] == s0["checkpoint"]["S"]
    assert "N" in s0["pendingCheckpointSubSequenceNumber"]
    assert s0["pendingCheckpointState"] == {"B": b"app-state"}
    for child in (S2, S3):
        assert items[child]["parentShardId"] == {"SS": [S1]}
        assert items[child]["checkpoint"]["S"].isdigit()
    # The Java KCL's attributes, plus ours, which Java ignores (kcl.expiry, kcl.leases): renewalCounter and the
    # figures kcl-worker status reads, all numbers.
    assert json.dumps(sorted(items[S3])) == json.dumps(sorted(
        ["leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber", "ownerSwitchesSinceCheckpoint",
         "parentShardId", "startingHashKey", "endingHashKey", "pendingCheckpoint",
         "pendingCheckpointSubSequenceNumber", "pendingCheckpointState", *EXTRA_ATTRIBUTES]))
    assert all(set(items[S3][name]) == {"N"} for name in EXTRA_ATTRIBUTES)
