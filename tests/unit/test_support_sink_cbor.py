"""The sink speaks Kinesis' CBOR protocol: the same routing and answers as in JSON, errors in CBOR, and
kpl's CBOR PutRecords (its default) verified record by record.

The sink reads CBOR with the cbor2 package, not with kpl's own codec, so kpl's encoder is checked
against an independent decoder.  The sink runs as its own process; these tests take a few seconds.
"""

from __future__ import annotations

import kpl
from tests.support.sink import SinkProcess
from tests.support.sink.wire import check_cbor_put_records_route_as_json


def test_put_records_in_cbor_route_and_answer_as_in_json() -> None:
    with SinkProcess(streams={"s": 4}, verify="route") as sink:
        check_cbor_put_records_route_as_json(sink)


async def test_kpl_cbor_aggregates_are_verified_by_the_sink() -> None:
    records = 3000
    with SinkProcess(streams={"s": 4}, verify="route") as sink:
        config = kpl.ProducerConfig(kinesis_endpoint=sink.url, metrics_level="none", record_max_buffered_time_ms=20)
        assert config.cbor_protocol  # the default
        async with kpl.AsyncProducer(config) as producer:
            futures = await producer.put_records("s", [(b"%05d" % i * 20, f"user-{i % 97}") for i in range(records)])
            await producer.flush_all()
        assert all(f.result().success for f in futures)
        stream = sink.stats()["streams"]["s"]
        assert (stream["user_records"], stream["misrouted_user_records"], stream["invalid_aggregates"]) == (
            records, 0, 0)
        assert stream["aggregated_records"] > 0
