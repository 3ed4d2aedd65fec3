"""A Firehose flow into S3, and the example agent.json for an Apache access log."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.config
import pytest

from agent.config import strip_comments
from kpl.aws import ClientConfig
from tests.integration.test_agent_support import AgentProcess, agent_config, all_checkpointed, wait_for_lines
from tests.support.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent" / "agent.json"


@pytest.fixture
def s3(aws_clients: Callable[[str], Any]) -> Any:
    import boto3

    from kpl.aws import resolve_region

    # Buckets are addressed by path: LocalStack has no wildcard DNS here.
    session = boto3.session.Session()
    return session.client("s3", region_name=resolve_region(),
                          config=botocore.config.Config(s3={"addressing_style": "path"},
                                                        **ClientConfig().botocore_kwargs()))


@pytest.fixture
def delivery_stream(s3: Any, aws_clients: Callable[[str], Any], unique_name: Callable[[str], str]) -> Iterator[
        tuple[str, str]]:
    firehose = aws_clients("firehose")
    bucket = unique_name("bucket").lower()
    name = unique_name("firehose")
    s3.create_bucket(Bucket=bucket)
    firehose.create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": f"arn:aws:s3:::{bucket}",
            "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 1},
        },
    )
    wait_for(lambda: firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
        "DeliveryStreamStatus"] == "ACTIVE", 60, interval=0.2, message="delivery stream ACTIVE")
    yield name, bucket
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def s3_bytes(s3: Any, bucket: str) -> bytes:
    chunks = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            chunks.append(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    return b"".join(chunks)


def test_delivery_stream_lines_arrive_in_s3(tmp_path: Path, s3: Any, delivery_stream: tuple[str, str]) -> None:
    name, bucket = delivery_stream
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [f"firehose line {n:05d} {'z' * 40}\n".encode() for n in range(3000)]
    (logs / "app.log").write_bytes(b"".join(lines[:1000]))
    agent = AgentProcess(tmp_path, agent_config(tmp_path, {
        "filePattern": str(logs / "app.log"), "deliveryStream": name, "maxBufferSizeRecords": "200",
    }))
    try:
        agent.start()
        with (logs / "app.log").open("ab") as log:
            log.write(b"".join(lines[1000:]))
        wait_for(lambda: all_checkpointed(agent, logs), 60, interval=0.2, message="file checkpointed to its end")

        def delivered() -> Counter[bytes]:
            got = Counter(s3_bytes(s3, bucket).splitlines(keepends=True))
            return got if set(lines) <= set(got) else Counter()

        got = wait_for(delivered, 120, interval=1.0, message="every line in S3")
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert got == Counter(lines)
    events = agent.events()
    assert any(event.get("event") == "checkpoints saved; agent stopped" for event in events)


ACCESS_LINES = [
    '192.0.2.10 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8.5.0"',
    '198.51.100.7 - alice [21/Nov/2026:10:00:01 +0000] "POST /login HTTP/1.1" 302 - '
    '"https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)"',
    "this is not an access log line",
    '203.0.113.5 - - [21/Nov/2026:10:00:02 +0000] "GET /missing HTTP/1.1" 404 153 "-" "Mozilla/5.0"',
]


def test_example_configuration_ships_an_apache_access_log(tmp_path: Path, make_stream: Callable[..., str],
                                                           kinesis: Any) -> None:
    stream = make_stream(shards=1)
    logs = tmp_path / "httpd"
    logs.mkdir()
    (logs / "access_log").write_text("".join(line + "\n" for line in ACCESS_LINES[:2]))
    text = EXAMPLE.read_text()
    text = text.replace("/var/log/httpd/access_log*", str(logs / "access_log*"))
    text = text.replace("/var/lib/aws-kinesis-agent/checkpoints", str(tmp_path / "state" / "checkpoints"))
    text = text.replace('"apache-access-log"', json.dumps(stream))
    text = text.replace('"cloudwatch.emitMetrics": true', '"cloudwatch.emitMetrics": false')
    config = json.loads(strip_comments(text))
    assert config["flows"][0]["initialPosition"] == "END_OF_FILE"
    agent = AgentProcess(tmp_path, config)
    agent.config_path.write_text(text)  # run the example's own text, comments included
    try:
        agent.start()
        agent.wait_for_event(lambda e: e.get("event", "").startswith("tracking file from its end"), 60,
                             "example tracking the access log from its end")
        with (logs / "access_log").open("a") as log:
            log.write("".join(line + "\n" for line in ACCESS_LINES))
        wait_for(lambda: all_checkpointed(agent, logs), 60, interval=0.2, message="access log checkpointed")
        got = wait_for_lines(kinesis, stream, [], timeout=30, agent=agent)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    records = sorted((json.loads(data) for data in got.elements()), key=lambda record: record["host"])
    assert [record["host"] for record in records] == ["192.0.2.10", "198.51.100.7", "203.0.113.5"]
    post = next(record for record in records if record["host"] == "198.51.100.7")
    assert post == {
        "host": "198.51.100.7", "ident": None, "authuser": "alice", "datetime": "21/Nov/2026:10:00:01 +0000",
        "request": "POST /login HTTP/1.1", "response": "302", "bytes": None, "referer": "https://example.com/",
        "agent": "Mozilla/5.0 (X11; Linux x86_64)",
    }
    assert all(re.fullmatch(rb'\{.*\}\n', data) for data in got.elements())
