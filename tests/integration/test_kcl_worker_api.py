"""kcl.Worker from asyncio: coroutine processors, retries of a failing batch, the dead-letter callback,
metrics read locally and uploaded to CloudWatch.  In process, against LocalStack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import kcl
from tests.integration.kcl_processors import data_of, put_user_records
from tests.support.kinesis import create_stream
from tests.support.waiting import async_wait_for

FAST = kcl.WorkerConfig(
    failover_time_ms=3000, idle_time_between_reads_ms=200, task_backoff_time_ms=50,
    max_task_backoff_time_ms=200, initial_position_in_stream=kcl.InitialPosition.TRIM_HORIZON,
    metrics_buffer_time_ms=1000, graceful_shutdown_timeout_ms=10_000,
)


class Stream:
    def __init__(self, aws_clients: Callable[[str], Any], shards: int = 1) -> None:
        self.kinesis, self.dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
        self.cloudwatch = aws_clients("cloudwatch")
        self.name = f"kt-kcl-api-{uuid.uuid4().hex[:8]}"
        create_stream(self.kinesis, self.name, shards)

    def put(self, records: list[tuple[str, bytes]], aggregate: bool = True) -> None:
        put_user_records(self.kinesis, self.name, records, aggregate=aggregate)

    def close(self, *tables: str) -> None:
        self.kinesis.delete_stream(StreamName=self.name, EnforceConsumerDeletion=True)
        for table in tables:
            with contextlib.suppress(self.dynamodb.exceptions.ResourceNotFoundException):
                self.dynamodb.delete_table(TableName=table)


async def test_async_processor_retries_a_failing_batch_and_reports_metrics(aws_clients: Callable[[str], Any]) -> None:
    stream = Stream(aws_clients)
    application = stream.name
    delivered: list[str] = []
    failures = Counter[str]()

    class Flaky(kcl.RecordProcessor):
        async def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                                  millis_behind_latest: int) -> None:
            for record in records:
                text = record.data.decode()
                if "poison" in text and failures[text] < 2:
                    failures[text] += 1
                    raise RuntimeError("transient trouble")
            delivered.extend(record.data.decode() for record in records)
            await checkpointer.acheckpoint()

    worker = kcl.Worker(stream.name, application, Flaky, FAST)
    task = asyncio.create_task(worker.run())
    try:
        stream.put([("k", data_of("k", n)) for n in range(5)] + [("k", b"poison")] +
                   [("k", data_of("k", n)) for n in range(5, 10)])
        await async_wait_for(lambda: len(delivered) >= 11, 60, interval=0.1, message="every record delivered")
        assert failures == {"poison": 2}
        assert delivered.count("poison") == 1  # the batch was retried until it succeeded, then never again
        assert [json.loads(d)["n"] for d in delivered if d != "poison"] == list(range(10))
        assert worker.held_shards == {"shardId-000000000000"}
        assert worker.shard_states == {"shardId-000000000000": "processing"}

        def processed() -> float:
            return sum(entry["sum"] for entry in worker.registry.snapshot().get("RecordsProcessed", []))

        await async_wait_for(lambda: processed() == 11, 30, interval=0.05, message="RecordsProcessed == 11")
        expected = {"MillisBehindLatest", "DataBytesProcessed", "RenewLease.Success", "CurrentLeases", "TotalLeases",
                    "NumWorkers", "TakenLeases"}
        await async_wait_for(lambda: expected <= set(worker.registry.snapshot()), 30, interval=0.1,
                             message="lease metrics after a renewal")
        snapshot = worker.registry.snapshot()
        assert sum(entry["count"] for entry in snapshot["RecordProcessor.processRecords.Failure"]) == 2
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 60)
    names = {metric["MetricName"] for metric in
             stream.cloudwatch.list_metrics(Namespace=application)["Metrics"]}
    assert {"RecordsProcessed", "MillisBehindLatest", "RenewLease.Success", "TakenLeases"} <= names
    table = stream.dynamodb.get_item(TableName=application, Key={"leaseKey": {"S": "shardId-000000000000"}},
                                     ConsistentRead=True)["Item"]
    assert "leaseOwner" not in table  # released on stop
    stream.close(application)


async def test_dead_letter_callback_receives_the_batch_and_processing_moves_on(
    aws_clients: Callable[[str], Any],
) -> None:
    stream = Stream(aws_clients)
    dead: list[kcl.DeadLetter] = []
    delivered: list[bytes] = []
    attempts = Counter[bytes]()

    class Strict(kcl.RecordProcessor):
        def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                            millis_behind_latest: int) -> None:
            for record in records:
                if record.data == b"poison":
                    attempts[record.data] += 1
                    raise ValueError("cannot parse")
            delivered.extend(record.data for record in records)
            checkpointer.checkpoint()

    config = FAST.with_(dead_letter=dead.append, max_processing_attempts=3)
    worker = kcl.Worker(stream.name, stream.name, Strict, config)
    await worker.start()
    try:
        stream.put([("k", b"poison")], aggregate=False)
        await async_wait_for(lambda: dead, 60, interval=0.1, message="dead letter")
        stream.put([("k", b"after")], aggregate=False)
        await async_wait_for(lambda: b"after" in delivered, 60, interval=0.1, message="processing moved on")
    finally:
        await worker.stop()
        stream.close(stream.name)
    assert attempts[b"poison"] == 3
    [letter] = dead
    assert [record.data for record in letter.records] == [b"poison"]
    assert isinstance(letter.error, ValueError) and letter.attempts == 3 and letter.shard_id == "shardId-000000000000"
    assert sum(e["sum"] for e in worker.registry.snapshot()["DeadLetteredRecords"]) == 1


async def test_worker_refuses_a_missing_stream_without_creating_a_table(aws_clients: Callable[[str], Any]) -> None:
    application = f"kt-kcl-api-{uuid.uuid4().hex[:8]}"
    worker = kcl.Worker("kt-no-such-stream", application, kcl.RecordProcessor, FAST)
    try:
        await worker.start()
    except kcl.StreamNotFoundError as error:
        assert "kt-no-such-stream" in str(error)
    else:
        raise AssertionError("a missing stream was not reported")
    assert application not in aws_clients("dynamodb").list_tables()["TableNames"]


async def test_a_processor_blocking_the_event_loop_does_not_cost_the_lease(aws_clients: Callable[[str], Any]) -> None:
    """Renewal runs on its own thread: a coroutine processor that blocks the loop for longer than the
    failover time (a bug, but a common one) keeps its lease."""
    stream = Stream(aws_clients)
    dynamodb = stream.dynamodb
    counters: list[int] = []
    lost: list[str] = []
    delivered: list[bytes] = []
    block = FAST.failover_time * 1.5

    def lease_counter() -> int:
        item = dynamodb.get_item(TableName=stream.name, Key={"leaseKey": {"S": "shardId-000000000000"}},
                                 ConsistentRead=True)["Item"]
        return int(item["leaseCounter"]["N"])

    class Blocking(kcl.RecordProcessor):
        async def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                                  millis_behind_latest: int) -> None:
            if b"block" in [record.data for record in records]:
                counters.append(lease_counter())
                time.sleep(block)  # noqa: ASYNC251 - deliberately blocks the event loop
                counters.append(lease_counter())
            delivered.extend(record.data for record in records)
            await checkpointer.acheckpoint()

        def lease_lost(self) -> None:
            lost.append("lost")

    worker = kcl.Worker(stream.name, stream.name, Blocking, FAST)
    await worker.start()
    try:
        stream.put([("k", b"block")], aggregate=False)
        await async_wait_for(lambda: b"block" in delivered, 60, interval=0.1, message="blocking batch done")
        stream.put([("k", b"later")], aggregate=False)
        await async_wait_for(lambda: b"later" in delivered, 60, interval=0.1, message="processing continued")
        assert not lost
        assert worker.held_shards == {"shardId-000000000000"}
    finally:
        await worker.stop()
        stream.close(stream.name)
    renewals_during_block = counters[1] - counters[0]
    assert renewals_during_block >= int(block / FAST.renewal_interval) - 1, counters
