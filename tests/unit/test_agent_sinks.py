"""Pure parts of the sinks: Firehose record packing and how retries are classified and logged."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.sinks import Retrier, pack_records
from kpl.logs import EVENT_ATTRIBUTE
from kpl.retry import ErrorKind


def test_packing_joins_whole_records_up_to_the_target() -> None:
    records = [b"a" * 4 + b"\n", b"b" * 4 + b"\n", b"c" * 9 + b"\n", b"d\n"]
    assert pack_records(records, 10) == [records[0] + records[1], records[2], records[3]]
    assert pack_records(records, 0) == records
    assert b"".join(pack_records(records, 12)) == b"".join(records)


def test_a_record_larger_than_the_target_travels_alone() -> None:
    assert pack_records([b"x" * 50, b"y"], 10) == [b"x" * 50, b"y"]


@pytest.fixture
def retrier(tmp_path: Path) -> Retrier:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"flows": [{"filePattern": "/a", "deliveryStream": "d", "retryInitialBackoffMillis": 1,
                                           "retryMaxBackoffMillis": 2}]}))
    return Retrier(load_config(path).flows[0])


def test_fatal_errors_are_logged_as_errors_once_a_minute(retrier: Retrier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent")
    for attempt in range(1, 4):
        asyncio.run(retrier.wait(ErrorKind.FATAL, "ResourceNotFoundException", "no such stream", attempt, 10))
    assert [record.levelname for record in caplog.records] == ["ERROR"]
    event = getattr(caplog.records[0], EVENT_ATTRIBUTE)
    assert "checkpoints do not move" in event["event"]
    assert event["retry_in_seconds"] == 0.002  # fatal errors wait the maximum backoff


def test_transient_errors_are_warnings(retrier: Retrier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent")
    asyncio.run(retrier.wait(ErrorKind.THROTTLED, "ProvisionedThroughputExceededException", "slow down", 1, 3))
    asyncio.run(retrier.wait(ErrorKind.TRANSIENT, "InternalFailure", "oops", 1, 3))
    assert [(record.levelname, record.error) for record in caplog.records] == [  # type: ignore[attr-defined]
        ("WARNING", "ProvisionedThroughputExceededException"), ("WARNING", "InternalFailure"),
    ]


def test_ordered_delivery_says_while_records_wait(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """orderedDelivery never gives a record up: while the producer retries, a warning says how many wait."""
    from agent import sinks
    from kpl import ProducerConfig, RecordResult

    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"flows": [{"filePattern": "/a", "kinesisStream": "s", "orderedDelivery": True}]}))
    flow = load_config(path).flows[0]
    sink = sinks.KinesisSink(flow, ProducerConfig(), metrics=None)  # type: ignore[arg-type]
    monkeypatch.setattr(sinks, "LOG_INTERVAL", 0.01)
    caplog.set_level(logging.WARNING, logger="agent")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[RecordResult]] = [loop.create_future() for _ in range(3)]
        delivered = RecordResult(True, "shardId-000000000000", "1", [], 0.0)
        futures[0].set_result(delivered)
        # Timers fire in deadline order: the first 10 ms wait ends before these records are delivered.
        loop.call_later(0.05, lambda: [future.set_result(delivered) for future in futures[1:]])
        await sink._wait_in_order(futures)

    asyncio.run(scenario())
    warnings = [getattr(record, EVENT_ATTRIBUTE) for record in caplog.records]
    assert warnings and all(event["records"] == 2 for event in warnings)
    assert warnings[0]["event"].startswith("records not delivered yet")


def test_ordered_delivery_keeps_batch_order_even_through_an_unexpected_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from types import SimpleNamespace

    from agent import sinks
    from kpl import ProducerConfig

    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"flows": [{"filePattern": "/a", "kinesisStream": "s", "orderedDelivery": True,
                                           "retryInitialBackoffMillis": 1, "retryMaxBackoffMillis": 1}]}))
    sink = sinks.KinesisSink(load_config(path).flows[0], ProducerConfig(), metrics=None)  # type: ignore[arg-type]
    delivered: list[str] = []

    async def deliver(batch: Any) -> None:
        delivered.append(batch.name)
        if delivered == ["first"]:
            raise RuntimeError("a bug")

    sink._deliver = deliver  # type: ignore[method-assign]

    async def scenario() -> None:
        batches = [SimpleNamespace(name=name, records=[b"x"]) for name in ("first", "second")]
        await asyncio.gather(*(sink.deliver(batch) for batch in batches))  # type: ignore[arg-type]

    caplog.set_level(logging.ERROR, logger="agent")
    asyncio.run(scenario())
    assert delivered == ["first", "first", "second"]
    assert "retrying it before any later batch" in caplog.records[0].getMessage()
