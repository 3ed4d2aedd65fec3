"""Both benchmark sinks speak Kinesis' CBOR protocol: the same routing and answers as in JSON, errors in CBOR,
and kpl's CBOR PutRecords (its default) verified record by record by bench.sink.

The sinks read CBOR with the cbor2 package, not with kpl's own codec, so kpl's encoder is checked
against an independent decoder.  Each sink runs as its own process; these tests take a few seconds.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import cbor2
import pytest

import kpl
from bench.sink_process import MiniSinkProcess, SinkBase, SinkProcess
from kpl.hashing import partition_key_hash

CBOR = "application/x-amz-cbor-1.1"
JSON = "application/x-amz-json-1.1"


def call(sink: SinkBase, operation: str, body: dict[str, Any], *, cbor: bool) -> tuple[int, str, Any]:
    payload = cbor2.dumps(body) if cbor else json.dumps(body).encode()
    request = urllib.request.Request(sink.url + "/", data=payload, method="POST", headers={
        "Content-Type": CBOR if cbor else JSON, "X-Amz-Target": f"Kinesis_20131202.{operation}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, content_type, raw = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        status, content_type, raw = error.code, error.headers["Content-Type"], error.read()
    return status, content_type, cbor2.loads(raw) if content_type.startswith(CBOR) else json.loads(raw)


@pytest.mark.parametrize("make_sink", [lambda: SinkProcess(streams={"s": 4}, verify="route"),
                                       lambda: MiniSinkProcess(streams={"s": 4})], ids=["bench.sink", "minisink"])
def test_put_records_in_cbor_route_and_answer_as_in_json(make_sink: Any) -> None:
    keys = [f"user-{i}" for i in range(40)]
    with make_sink() as sink:
        status, content_type, cbor_result = call(sink, "PutRecords", {
            "StreamName": "s", "Records": [{"Data": f"event {k}".encode(), "PartitionKey": k} for k in keys]},
            cbor=True)
        assert (status, content_type.split(";")[0]) == (200, CBOR)
        _, _, json_result = call(sink, "PutRecords", {
            "StreamName": "s",
            "Records": [{"Data": base64.b64encode(f"event {k}".encode()).decode(), "PartitionKey": k} for k in keys]},
            cbor=False)
        assert cbor_result["FailedRecordCount"] == 0
        shards = [entry["ShardId"] for entry in cbor_result["Records"]]
        assert shards == [entry["ShardId"] for entry in json_result["Records"]]
        assert len(set(shards)) == 4  # 40 keys spread over the 4 evenly split ranges
        bounds = [i * (2**128 // 4) for i in range(4)]
        expected = [f"shardId-{sum(partition_key_hash(k) >= b for b in bounds) - 1:012d}" for k in keys]
        assert shards == expected

        status, content_type, error = call(sink, "PutRecords", {"StreamName": "nope", "Records": [
            {"Data": b"x", "PartitionKey": "k"}]}, cbor=True)
        assert (status, content_type.split(";")[0], error["__type"]) == (400, CBOR, "ResourceNotFoundException")


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
