"""Pure parts of the sinks: Firehose record packing and how retries are classified and logged."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.sinks import Retrier, _Undelivered, pack_records
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


def _deliver(retrier: Retrier, *failures: _Undelivered) -> list[list[bytes]]:
    """A delivery whose attempts fail with ``failures`` in turn, then succeed; what each attempt sent."""
    sent: list[list[bytes]] = []

    async def put(records: list[bytes]) -> None:
        sent.append(records)
        if len(sent) <= len(failures):
            raise failures[len(sent) - 1]

    asyncio.run(retrier.deliver([b"a", b"b", b"c"], put))
    return sent


class Retries:
    def __init__(self) -> None:
        self.codes: list[str] = []

    def retry(self, code: str) -> None:
        self.codes.append(code)


def test_fatal_errors_are_logged_as_errors_once_a_minute(retrier: Retrier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent")
    missing = _Undelivered([b"a"] * 10, ErrorKind.FATAL, "ResourceNotFoundException", "no such stream")
    assert len(_deliver(retrier, missing, missing, missing)) == 4
    assert [record.levelname for record in caplog.records] == ["ERROR"]
    event = getattr(caplog.records[0], EVENT_ATTRIBUTE)
    assert "checkpoints do not move" in event["event"]
    assert event["retry_in_seconds"] == 0.002  # fatal errors wait the maximum backoff
    assert event["records"] == 10


def test_transient_errors_are_warnings(retrier: Retrier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent")
    retrier.metrics = Retries()  # type: ignore[assignment]
    _deliver(retrier, _Undelivered([b"a"], ErrorKind.THROTTLED, "ProvisionedThroughputExceededException", "slow"))
    _deliver(retrier, _Undelivered([b"b"], ErrorKind.TRANSIENT, "InternalFailure", "oops"))
    assert [(record.levelname, record.error) for record in caplog.records] == [  # type: ignore[attr-defined]
        ("WARNING", "ProvisionedThroughputExceededException"), ("WARNING", "InternalFailure"),
    ]
    assert all(0 <= getattr(record, EVENT_ATTRIBUTE)["retry_in_seconds"] <= 0.002 for record in caplog.records)
    assert retrier.metrics.codes == ["ProvisionedThroughputExceededException", "InternalFailure"]  # type: ignore[attr-defined]


def test_only_the_failed_records_are_sent_again(retrier: Retrier) -> None:
    sent = _deliver(retrier, _Undelivered([b"b", b"c"], ErrorKind.THROTTLED, "Throttled", "slow"),
                    _Undelivered([b"c"], ErrorKind.TRANSIENT, "InternalFailure", "oops"))
    assert sent == [[b"a", b"b", b"c"], [b"b", b"c"], [b"c"]]


def test_an_unexpected_error_ends_the_delivery_loop(retrier: Retrier) -> None:
    """Only rejected records are retried by the sink; anything else goes to the flow (which logs it as a bug)."""
    async def put(records: list[bytes]) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        asyncio.run(retrier.deliver([b"a"], put))


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


def test_a_flow_sends_a_batch_again_after_an_unexpected_sink_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The flow's last line of defence: a failure the sink did not expect is logged, and the batch kept and sent
    again (never dropped, never acknowledged before it is delivered)."""
    from types import SimpleNamespace

    from agent.checkpoints import CheckpointStore
    from agent.flow import Flow

    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"flows": [{"filePattern": "/a", "kinesisStream": "s", "retryInitialBackoffMillis": 1,
                                           "retryMaxBackoffMillis": 1}]}))
    calls: list[Any] = []

    class BuggySink:
        async def deliver(self, batch: Any) -> None:
            calls.append(batch)
            if len(calls) == 1:
                raise RuntimeError("a bug")

    flow = Flow(load_config(path).flows[0], BuggySink(), CheckpointStore(tmp_path / "checkpoints"), [])  # type: ignore[arg-type]
    acknowledged: list[Any] = []
    flow._acknowledge = lambda batch, charged: acknowledged.append(batch)  # type: ignore[method-assign]
    batch = SimpleNamespace(records=[b"x"], source=SimpleNamespace(path="/a"))
    caplog.set_level(logging.ERROR, logger="agent")
    asyncio.run(flow._deliver(batch))  # type: ignore[arg-type]
    assert calls == [batch, batch] and acknowledged == [batch]
    events = [getattr(record, EVENT_ATTRIBUTE) for record in caplog.records]
    assert [(event["event"], event["error"]) for event in events] == [
        ("sending a batch failed unexpectedly; retrying it", "RuntimeError('a bug')")]
