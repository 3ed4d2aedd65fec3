"""``--fan-out``: the at-least-once test over enhanced fan-out (RegisterStreamConsumer + SubscribeToShard).

Two workers read a 4-shard stream through one registered consumer while records are produced; one
is stopped gracefully midway so that the other re-subscribes its shards from their checkpoints.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    Producer,
    concurrent_processing,
    missing_records,
    order_violations,
    read_events,
    start_worker,
    watched,
    write_properties,
)
from tests.support.kinesis import create_stream
from tests.support.waiting import wait_for

KEYS = [f"fan-{i:03d}" for i in range(100)]


def test_fan_out_delivers_every_record_at_least_once_in_key_order(
    tmp_path: Path, aws_clients: Callable[[str], Any],
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-fanout-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 4)
    out = tmp_path / "events"
    properties = write_properties(tmp_path / "app.properties", initialPositionInStream="TRIM_HORIZON", **FAST_TIMINGS)
    producer = Producer(kinesis, stream, KEYS, rounds=100, pause=0.05)
    workers = []
    try:
        for name in ("F1", "F2"):
            workers.append(start_worker(out, name, "--stream", stream, "--application", stream, "--fan-out",
                                        "--config", str(properties)))
        producer.start()
        wait_for(lambda: {e["w"] for e in read_events(out) if e["e"] == "rec"} == {"F1", "F2"}, 90, interval=0.3,
                 message="both workers receiving records")
        assert not producer.done, "production ended before the graceful stop: produce for longer"
        assert workers[0].terminate(timeout=60) == 0, workers[0].log_text()[-3000:]
        wait_for(lambda: producer.done, 120, interval=0.5, message="production finished")
        producer.stop()
        wait_for(watched(lambda: not missing_records(read_events(out), producer.produced), workers[1]), 120,
                 interval=1.0, message="every record delivered")

        events = read_events(out)
        assert producer.total == 100 * len(KEYS)
        assert order_violations(events) == []
        assert concurrent_processing(events) == []
        survivor = {e["s"] for e in events if e["e"] == "init" and e["w"] == "F2"}
        assert len(survivor) == 4, "F2 did not take over F1's shards"
        arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
        consumer = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName=stream)["ConsumerDescription"]
        assert consumer["ConsumerStatus"] == "ACTIVE"
        assert '"retrieval": "FANOUT"' in workers[1].log_text()
        assert workers[1].terminate(timeout=60) == 0
    finally:
        producer.stop()
        for worker in workers:
            if worker.alive:
                worker.kill()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=stream)
