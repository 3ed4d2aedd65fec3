"""A checkpoint never moves past records that were not processed.

A processor whose ``process_records`` raises, stopped (SIGTERM), losing the shard to a rebalance, or at
the end of a closed shard, while its ``shutdown_requested`` calls ``checkpointer.checkpoint()`` as the
docs' examples do: the checkpoint stays on the last record of the last batch that succeeded, and the
next worker sees every record the failing one did not process.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kcl
from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    read_events,
    start_worker,
    watched,
    write_properties,
)
from tests.support.kinesis import create_stream, list_shards, wait_for_active
from tests.support.waiting import async_wait_for, wait_for

FAST = kcl.WorkerConfig(
    failover_time_ms=3000, idle_time_between_reads_ms=200, task_backoff_time_ms=50,
    max_task_backoff_time_ms=200, initial_position_in_stream=kcl.InitialPosition.TRIM_HORIZON,
    parent_shard_poll_interval_ms=500, shard_sync_interval_ms=3000, metrics_level=kcl.MetricsLevel.NONE,
    graceful_shutdown_timeout_ms=10_000, graceful_lease_handoff_timeout_ms=10_000,
)


def lease_item(dynamodb: Any, table: str, shard: str) -> dict[str, Any]:
    return dynamodb.get_item(TableName=table, Key={"leaseKey": {"S": shard}}, ConsistentRead=True)["Item"]


def put(kinesis: Any, stream: str, payloads: list[str], key: str = "k") -> None:
    result = kinesis.put_records(StreamName=stream, Records=[{"Data": p.encode(), "PartitionKey": key}
                                                             for p in payloads])
    assert not result["FailedRecordCount"]


def cleanup(aws_clients: Callable[[str], Any], stream: str) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    with contextlib.suppress(Exception):
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    with contextlib.suppress(Exception):
        dynamodb.delete_table(TableName=stream)


def test_sigterm_while_every_batch_fails_leaves_the_records_to_the_next_worker(
    tmp_path: Path, aws_clients: Callable[[str], Any],
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-safe-term-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 1)
    properties = write_properties(tmp_path / "app.properties", streamName=stream, applicationName=stream,
                                  initialPositionInStream="TRIM_HORIZON", **FAST_TIMINGS)
    out = tmp_path / "events"
    try:
        payloads = [f"r{n}" for n in range(10)]
        put(kinesis, stream, payloads)
        failing = start_worker(out, "F", "--config", str(properties),
                               processor="tests.integration.kcl_processors:FailingProcessor")
        wait_for(watched(lambda: sum(1 for e in read_events(out) if e["e"] == "fail") >= 2, failing), 60,
                 interval=0.2, message="the batch failed twice")
        assert failing.terminate(timeout=60) == 0, failing.log_text()[-3000:]
        events = read_events(out)
        assert any(e["e"] == "shutdown" for e in events)  # shutdown_requested ran and called checkpoint()
        assert not [e for e in events if e["e"] == "rec"]
        assert lease_item(dynamodb, stream, "shardId-000000000000")["checkpoint"]["S"] == "TRIM_HORIZON"

        recording = start_worker(out, "R", "--config", str(properties))

        def delivered() -> list[str]:
            return [e["d"] for e in read_events(out) if e["e"] == "rec" and e["w"] == "R"]

        wait_for(watched(lambda: len(delivered()) >= len(payloads), recording), 60, interval=0.2,
                 message="every record delivered to the next worker")
        assert delivered() == payloads
        assert recording.terminate(timeout=60) == 0
    finally:
        cleanup(aws_clients, stream)


class Recorder(kcl.RecordProcessor):
    """Collects every record; checkpoints after each batch."""

    seen: list[tuple[str, str]]
    inits: list[tuple[str, str]]

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int,
                   pending_checkpoint: kcl.PendingCheckpoint | None = None) -> None:
        self.shard = shard_id
        type(self).inits.append((shard_id, sequence_number))

    def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                        millis_behind_latest: int) -> None:
        type(self).seen.extend((self.shard, record.data.decode()) for record in records)
        checkpointer.checkpoint()


def recorder_class() -> type[Recorder]:
    return type("Recorder", (Recorder,), {"seen": [], "inits": []})


class FailsOn(kcl.RecordProcessor):
    """Raises on every batch holding a record that contains ``marker``; checkpoints the others, and in
    shutdown_requested, as the docs' examples do."""

    marker = b"bad"
    failures: list[str]
    shutdowns: list[str]

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.shard = shard_id

    def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                        millis_behind_latest: int) -> None:
        if any(self.marker in record.data for record in records):
            type(self).failures.append(self.shard)
            raise RuntimeError("cannot process")
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: kcl.Checkpointer) -> None:
        type(self).shutdowns.append(self.shard)
        checkpointer.checkpoint()


def failing_class() -> type[FailsOn]:
    return type("FailsOn", (FailsOn,), {"failures": [], "shutdowns": []})


async def test_a_rebalance_handoff_after_failing_batches_hands_over_the_unprocessed_records(
    aws_clients: Callable[[str], Any],
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-safe-hand-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 2)
    failing, recording = failing_class(), recorder_class()
    first = kcl.Worker(stream, stream, failing, FAST.with_(worker_id="A"))
    second = kcl.Worker(stream, stream, recording, FAST.with_(worker_id="B"))
    shards = {shard["ShardId"]: shard["HashKeyRange"]["StartingHashKey"] for shard in list_shards(kinesis, stream)}

    def put_on_every_shard(kind: str) -> None:
        for shard, low in shards.items():
            kinesis.put_records(StreamName=stream, Records=[
                {"Data": f"{kind}-{shard}-{n}".encode(), "PartitionKey": "k", "ExplicitHashKey": low}
                for n in range(3)])

    try:
        put_on_every_shard("good")
        await first.start()
        await async_wait_for(lambda: all(lease_item(dynamodb, stream, shard)["checkpoint"]["S"].isdigit()
                                         for shard in shards), 60, interval=0.1, message="good records checkpointed")
        put_on_every_shard("bad")
        await async_wait_for(lambda: set(failing.failures) == {"shardId-000000000000", "shardId-000000000001"},
                             60, interval=0.1, message="both shards failing on A")
        await second.start()
        await async_wait_for(lambda: len(recording.inits) >= 1, 60, interval=0.1, message="B took a shard over")
        moved = recording.inits[0][0]
        assert moved in failing.shutdowns  # the handoff asked A's processor to checkpoint first
        expected = [f"bad-{moved}-{n}" for n in range(3)]
        await async_wait_for(lambda: [d for s, d in recording.seen if s == moved][-3:] == expected, 60,
                             interval=0.1, message="B saw the records A could not process")
        # A's checkpoint in shutdown_requested covered its good records only: B resumed after them.
        assert not [d for s, d in recording.seen if s == moved and d.startswith("good")]
    finally:
        await second.stop()
        await first.stop()
        cleanup(aws_clients, stream)


async def test_a_closed_shard_whose_last_batch_fails_is_not_finished_and_its_children_wait(
    aws_clients: Callable[[str], Any],
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-safe-end-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 1)
    parent = "shardId-000000000000"
    failing, recording = failing_class(), recorder_class()
    worker = kcl.Worker(stream, stream, failing, FAST.with_(worker_id="A"))
    try:
        put(kinesis, stream, ["good-0", "good-1"])
        shard = list_shards(kinesis, stream)[0]
        low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
        await worker.start()
        def checkpointed() -> bool:
            return str(lease_item(dynamodb, stream, parent)["checkpoint"]["S"]).isdigit()

        await async_wait_for(checkpointed, 60, interval=0.1, message="the good records checkpointed")
        good_checkpoint = lease_item(dynamodb, stream, parent)["checkpoint"]["S"]
        put(kinesis, stream, ["bad-0", "bad-1"])
        kinesis.split_shard(StreamName=stream, ShardToSplit=parent, NewStartingHashKey=str((low + high) // 2))
        wait_for_active(kinesis, stream)
        await async_wait_for(lambda: len(failing.failures) >= 2, 60, interval=0.1, message="the last batch failing")
        await worker.stop()
        assert failing.shutdowns == [parent]
        item = lease_item(dynamodb, stream, parent)
        assert item["checkpoint"]["S"] == good_checkpoint  # neither past the failed batch nor SHARD_END

        children = [s["ShardId"] for s in list_shards(kinesis, stream) if s["ShardId"] != parent]
        for index, child in enumerate(children):
            child_range = next(s for s in list_shards(kinesis, stream) if s["ShardId"] == child)["HashKeyRange"]
            kinesis.put_record(StreamName=stream, Data=f"child-{index}".encode(), PartitionKey="k",
                               ExplicitHashKey=child_range["StartingHashKey"])
        worker = kcl.Worker(stream, stream, recording, FAST.with_(worker_id="B"))
        await worker.start()
        await async_wait_for(lambda: {d for _, d in recording.seen} >= {"bad-0", "bad-1", "child-0", "child-1"},
                             60, interval=0.1, message="B finished the parent, then read the children")
        order = [d for _, d in recording.seen]
        assert order[:2] == ["bad-0", "bad-1"]  # the parent's unprocessed records first, then its children
        assert "good-0" not in order
        assert lease_item(dynamodb, stream, parent)["checkpoint"]["S"] == "SHARD_END"
    finally:
        await worker.stop()
        cleanup(aws_clients, stream)


async def test_initialize_receives_the_pending_checkpoint(aws_clients: Callable[[str], Any]) -> None:
    kinesis = aws_clients("kinesis")
    stream = f"kt-kcl-safe-pend-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 1)
    prepared: list[str] = []
    pending: list[kcl.PendingCheckpoint | None] = []

    class Preparing(kcl.RecordProcessor):
        def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                            millis_behind_latest: int) -> None:
            checkpointer.checkpoint(records[0])
            checkpointer.prepare_checkpoint(records[-1], state=json.dumps({"window": 7}).encode())
            prepared.append(records[-1].sequence_number)

    class Resuming(kcl.RecordProcessor):
        def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int,
                       pending_checkpoint: kcl.PendingCheckpoint | None = None) -> None:
            pending.append(pending_checkpoint)

        def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                            millis_behind_latest: int) -> None: ...

    worker = kcl.Worker(stream, stream, Preparing, FAST.with_(worker_id="A"))
    try:
        put(kinesis, stream, ["a", "b", "c"])
        await worker.start()
        await async_wait_for(lambda: prepared, 60, interval=0.1, message="a prepared checkpoint")
        await worker.stop()
        worker = kcl.Worker(stream, stream, Resuming, FAST.with_(worker_id="B"))
        await worker.start()
        await async_wait_for(lambda: pending, 60, interval=0.1, message="initialize on B")
        assert pending == [kcl.PendingCheckpoint(prepared[0], 0, b'{"window": 7}')]
    finally:
        await worker.stop()
        cleanup(aws_clients, stream)
