"""Retrieval logic: the bounded prefetch queue, starting positions, and the polling loop's reactions to
expired iterators, throttling and shard end — driven by a scripted client (no I/O in these tests;
the real GetRecords paths run against LocalStack in the integration tests)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest
from tenacity import wait_none

from kcl.config import WorkerConfig
from kcl.errors import ShardReadError
from kcl.metrics import KclMetrics
from kcl.retrieval import BatchQueue, FanOutFetcher, FetchedBatch, PollingFetcher, StartingPosition
from kcl.sequence import ESN_AT_TIMESTAMP, ESN_LATEST, ESN_TRIM_HORIZON, ExtendedSequenceNumber
from kpl.cloudwatch import MetricsRegistry
from kpl.logs import EVENT_ATTRIBUTE


def client_error(code: str, status: int = 400) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetRecords")


class ScriptedKinesis:
    """Answers GetShardIterator with numbered iterators and GetRecords from a script of outcomes."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.iterator_requests: list[dict[str, Any]] = []
        self.get_records_calls: list[str] = []

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    async def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        self.get_records_calls.append(ShardIterator)
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def record(sequence: str) -> dict[str, Any]:
    return {"SequenceNumber": sequence, "Data": b"x" * 10, "PartitionKey": "k",
            "ApproximateArrivalTimestamp": datetime(2024, 1, 1, tzinfo=UTC)}


CONFIG = WorkerConfig(idle_time_between_reads_ms=200)


async def run_fetcher(script: list[Any], start: StartingPosition) -> tuple[ScriptedKinesis, list[FetchedBatch]]:
    client = ScriptedKinesis(script)
    queue = BatchQueue(100, 10**9)
    fetcher = PollingFetcher(client, "s", "shardId-000000000000", start, config=CONFIG,
                             metrics=KclMetrics(MetricsRegistry(), "w"), queue=queue,
                             wait=wait_none())  # no real waiting in a unit test
    await asyncio.wait_for(fetcher.run(), 10)
    return client, [await queue.get() for _ in range(len(queue))]


async def test_expired_iterator_resumes_after_the_last_record_fetched() -> None:
    script = [
        {"Records": [record("10"), record("11")], "NextShardIterator": "n1", "MillisBehindLatest": 5},
        client_error("ExpiredIteratorException"),
        {"Records": [record("12")], "NextShardIterator": None, "ChildShards": [{"ShardId": "c"}]},
    ]
    client, batches = await run_fetcher(script, StartingPosition("AT_SEQUENCE_NUMBER", "10"))
    assert client.iterator_requests[1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert client.iterator_requests[1]["StartingSequenceNumber"] == "11"
    assert [[r["SequenceNumber"] for r in b.records] for b in batches] == [["10", "11"], ["12"]]
    assert batches[-1].at_shard_end and batches[-1].child_shards == [{"ShardId": "c"}]


async def test_throttling_and_transient_errors_are_retried() -> None:
    script = [
        client_error("ProvisionedThroughputExceededException"),
        client_error("InternalFailure", 500),
        {"Records": [record("1")], "NextShardIterator": None, "ChildShards": []},
    ]
    client, batches = await run_fetcher(script, StartingPosition("TRIM_HORIZON"))
    assert len(client.get_records_calls) == 3 and client.get_records_calls[0] == client.get_records_calls[2]
    assert [r["SequenceNumber"] for r in batches[0].records] == ["1"]


async def test_errors_that_will_not_go_away_stop_the_fetcher() -> None:
    with pytest.raises(ShardReadError, match="AccessDeniedException"):
        await run_fetcher([client_error("AccessDeniedException")], StartingPosition("TRIM_HORIZON"))


async def test_the_retry_count_starts_afresh_after_a_read_that_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    script = [
        client_error("ProvisionedThroughputExceededException"),
        client_error("ProvisionedThroughputExceededException"),
        {"Records": [record("1")], "NextShardIterator": "n1", "MillisBehindLatest": 0},
        client_error("ProvisionedThroughputExceededException"),
        {"Records": [record("2")], "NextShardIterator": None, "ChildShards": []},
    ]
    with caplog.at_level("WARNING", logger="kcl.retrieval"):
        await run_fetcher(script, StartingPosition("TRIM_HORIZON"))
    retries = [getattr(r, EVENT_ATTRIBUTE) for r in caplog.records
               if getattr(r, EVENT_ATTRIBUTE, {}).get("event") == "shard read failed; retrying"]
    assert [retry["attempt"] for retry in retries] == [1, 2, 1]
    assert {retry["error"] for retry in retries} == {"ProvisionedThroughputExceededException"}


async def test_an_iterator_that_cannot_be_had_stops_the_fetcher_with_a_shard_read_error() -> None:
    class NoIterator(ScriptedKinesis):
        async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
            raise client_error("ResourceNotFoundException")

    fetcher = PollingFetcher(NoIterator([]), "s", "shardId-000000000000", StartingPosition("LATEST"), config=CONFIG,
                             metrics=KclMetrics(MetricsRegistry(), "w"), queue=BatchQueue(1, 10), wait=wait_none())
    with pytest.raises(ShardReadError, match="GetShardIterator on shardId-000000000000 failed: ResourceNotFound"):
        await asyncio.wait_for(fetcher.run(), 10)


async def test_empty_reads_are_not_queued_but_the_end_of_a_shard_is() -> None:
    script = [
        {"Records": [], "NextShardIterator": "n1", "MillisBehindLatest": 0},
        {"Records": [], "NextShardIterator": None, "ChildShards": [{"ShardId": "c"}]},
    ]
    _, batches = await run_fetcher(script, StartingPosition("LATEST"))
    assert len(batches) == 1 and batches[0].at_shard_end and batches[0].records == []


async def test_queue_is_bounded_in_batches_and_bytes() -> None:
    queue = BatchQueue(max_batches=2, max_bytes=100)
    await queue.put(FetchedBatch([], 0, None, 60))
    blocked = asyncio.ensure_future(queue.put(FetchedBatch([], 0, None, 60)))  # would exceed 100 bytes
    await asyncio.sleep(0)
    assert not blocked.done()
    await queue.get()
    await asyncio.wait_for(blocked, 1)
    big = asyncio.ensure_future(queue.put(FetchedBatch([], 0, None, 1000)))
    await queue.get()
    await asyncio.wait_for(big, 1)  # a batch larger than the bound passes alone
    assert len(queue) == 1 and queue.bytes == 1000


@pytest.mark.parametrize(("checkpoint", "expected"), [
    (ExtendedSequenceNumber("123", 4), {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": "123"}),
    (ESN_TRIM_HORIZON, {"ShardIteratorType": "TRIM_HORIZON"}),
    (ESN_LATEST, {"ShardIteratorType": "LATEST"}),
])
def test_starting_position_from_checkpoint(checkpoint: ExtendedSequenceNumber, expected: dict[str, Any]) -> None:
    assert StartingPosition.from_checkpoint(checkpoint, None).get_shard_iterator_args() == expected


def test_at_timestamp_uses_the_configured_time_and_falls_back_to_trim_horizon() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert StartingPosition.from_checkpoint(ESN_AT_TIMESTAMP, moment).subscribe_args() == {
        "Type": "AT_TIMESTAMP", "Timestamp": moment}
    assert StartingPosition.from_checkpoint(ESN_AT_TIMESTAMP, None).type == "TRIM_HORIZON"


class ScriptedFanOut:
    """Answers SubscribeToShard from a script: an exception, or the events of one subscription (an event that
    is an exception breaks the subscription there)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.positions: list[dict[str, Any]] = []

    async def subscribe_to_shard(self, ConsumerARN: str, ShardId: str, StartingPosition: dict[str, Any]) -> Any:
        self.positions.append(StartingPosition)
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {"EventStream": EventStream(outcome)}


class EventStream:
    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self.events:
            raise StopAsyncIteration
        event = self.events.pop(0)
        if isinstance(event, Exception):
            raise event
        return {"SubscribeToShardEvent": event}

    def close(self) -> None:
        pass


def fan_out_fetcher(client: ScriptedFanOut, queue: BatchQueue) -> FanOutFetcher:
    return FanOutFetcher(client, "s", "shardId-000000000000", StartingPosition("TRIM_HORIZON"), config=CONFIG,
                         metrics=KclMetrics(MetricsRegistry(), "w"), queue=queue, wait=wait_none(), consumer_arn="c")


async def test_fan_out_resubscribes_after_in_use_and_after_a_failure_following_events(
        caplog: pytest.LogCaptureFixture) -> None:
    client = ScriptedFanOut([
        client_error("ResourceInUseException"),  # subscribed again too soon: waited out quietly
        [{"Records": [record("1")], "ContinuationSequenceNumber": "1", "MillisBehindLatest": 0},
         client_error("InternalFailure", 500)],
        [{"Records": [record("2")], "ContinuationSequenceNumber": None, "ChildShards": [{"ShardId": "c"}],
          "MillisBehindLatest": 0}],
    ])
    queue = BatchQueue(100, 10**9)
    with caplog.at_level("WARNING", logger="kcl.retrieval"):
        await asyncio.wait_for(fan_out_fetcher(client, queue).run(), 10)
    assert client.positions[2] == {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "1"}
    assert [[r["SequenceNumber"] for r in (await queue.get()).records] for _ in range(2)] == [["1"], ["2"]]
    retries = [getattr(r, EVENT_ATTRIBUTE) for r in caplog.records]
    assert [(retry["event"], retry["error"], retry["attempt"]) for retry in retries] == [
        ("shard read failed; retrying", "InternalFailure", 1)]


async def test_fan_out_stops_with_a_shard_read_error_on_errors_that_will_not_go_away() -> None:
    client = ScriptedFanOut([client_error("AccessDeniedException")])
    with pytest.raises(ShardReadError, match="SubscribeToShard on shardId-000000000000 failed: AccessDenied"):
        await asyncio.wait_for(fan_out_fetcher(client, BatchQueue(1, 10)).run(), 10)
