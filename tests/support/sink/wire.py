"""Kinesis requests sent raw (JSON or CBOR, no SDK) to a local sink, and the CBOR check every sink must pass.

Two sinks speak Kinesis' CBOR protocol: this package's and the benchmarks' independent minisink.  Both
must route CBOR PutRecords exactly as the same records in JSON, so the check lives here once and the
tests of each sink run it (tests/unit/test_support_sink_cbor.py, bench/tests/test_minisink.py).  The
requests are decoded with the cbor2 package, not with kpl's codec, so kpl's encoder is checked against
an independent decoder wherever it meets a sink.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import cbor2

from kpl.hashing import partition_key_hash
from tests.support.sink.process import SinkBase

CBOR = "application/x-amz-cbor-1.1"
JSON = "application/x-amz-json-1.1"


def kinesis_call(sink: SinkBase, operation: str, body: dict[str, Any], *, cbor: bool) -> tuple[int, str, Any]:
    """``operation`` sent to ``sink`` in CBOR or JSON: (HTTP status, content type, decoded answer)."""
    payload = cbor2.dumps(body) if cbor else json.dumps(body).encode()
    request = urllib.request.Request(sink.url + "/", data=payload, method="POST", headers={
        "Content-Type": CBOR if cbor else JSON, "X-Amz-Target": f"Kinesis_20131202.{operation}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, content_type, raw = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        status, content_type, raw = error.code, error.headers["Content-Type"], error.read()
    return status, content_type, cbor2.loads(raw) if content_type.startswith(CBOR) else json.loads(raw)


def check_cbor_put_records_route_as_json(sink: SinkBase, stream: str = "s") -> None:
    """PutRecords in CBOR is answered in CBOR and routed as in JSON, to the shard kpl.hashing names.

    ``stream`` must have 4 shards; errors come back in CBOR too.
    """
    keys = [f"user-{i}" for i in range(40)]
    status, content_type, cbor_result = kinesis_call(sink, "PutRecords", {
        "StreamName": stream, "Records": [{"Data": f"event {k}".encode(), "PartitionKey": k} for k in keys]},
        cbor=True)
    assert (status, content_type.split(";")[0]) == (200, CBOR)
    _, _, json_result = kinesis_call(sink, "PutRecords", {
        "StreamName": stream,
        "Records": [{"Data": base64.b64encode(f"event {k}".encode()).decode(), "PartitionKey": k} for k in keys]},
        cbor=False)
    assert cbor_result["FailedRecordCount"] == 0
    shards = [entry["ShardId"] for entry in cbor_result["Records"]]
    assert shards == [entry["ShardId"] for entry in json_result["Records"]]
    assert len(set(shards)) == 4  # 40 keys spread over the 4 evenly split ranges
    bounds = [i * (2**128 // 4) for i in range(4)]
    expected = [f"shardId-{sum(partition_key_hash(k) >= b for b in bounds) - 1:012d}" for k in keys]
    assert shards == expected

    status, content_type, error = kinesis_call(sink, "PutRecords", {"StreamName": "nope", "Records": [
        {"Data": b"x", "PartitionKey": "k"}]}, cbor=True)
    assert (status, content_type.split(";")[0], error["__type"]) == (400, CBOR, "ResourceNotFoundException")
