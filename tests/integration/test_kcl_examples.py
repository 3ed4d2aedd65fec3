"""The two real-time analytics examples, run by ``kcl-worker`` against LocalStack.

Three minutes of page views (in event time) in both record shapes: the producer example's JSON and
the agent's COMBINEDAPACHELOG JSON.  Two users exceed 100 events in the 5-minute window: one named
by ``user_id``/``authuser``, one known only by its host.  A last record, six minutes later, moves the
watermark past every window so that they close.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.kcl_processors import FAST_TIMINGS, start_worker, watched, write_properties
from tests.support.kinesis import create_stream
from tests.support.waiting import wait_for

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAGES = ["/home", "/products", "/cart", "/checkout"]


def producer_event(second: int, user: str, page: str) -> tuple[str, dict[str, Any]]:
    moment = (T0 + timedelta(seconds=second)).isoformat()
    return user, {"timestamp": moment, "user_id": user, "event": "page_view", "page": page}


def agent_event(second: int, host: str, authuser: str | None, path: str) -> tuple[str, dict[str, Any]]:
    moment = (T0 + timedelta(seconds=second)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return authuser or host, {"host": host, "ident": None, "authuser": authuser, "datetime": moment,
                              "request": f"GET {path}?ref=mail HTTP/1.1", "response": "200", "bytes": "512",
                              "referer": None, "agent": "Mozilla/5.0"}


def page_views() -> list[tuple[str, dict[str, Any]]]:
    events = []
    for second in range(0, 180, 2):  # 90 ordinary views over three minutes
        events.append(producer_event(second, f"user_{second % 9}", PAGES[second % 4]))
    for index in range(100):  # crawler-1: 100 views as JSON and 30 as access-log lines
        events.append(producer_event(index, "crawler-1", "/products"))
    for index in range(30):
        events.append(agent_event(100 + index, "10.1.1.1", "crawler-1", "/products/42"))
    for index in range(120):  # a host without a user name
        events.append(agent_event(index, "10.9.9.9", None, "/search"))
    events.sort(key=lambda item: json.dumps(item[1]))
    events.sort(key=lambda item: _second_of(item[1]))
    events.append(producer_event(360, "late-user", "/home"))  # closes every window
    return events


def _second_of(fields: dict[str, Any]) -> float:
    if "timestamp" in fields:
        return datetime.fromisoformat(fields["timestamp"]).timestamp()
    return datetime.strptime(fields["datetime"], "%d/%b/%Y:%H:%M:%S %z").timestamp()


def expected_page_counts(events: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], int]:
    counts: Counter[tuple[str, str]] = Counter()
    for _, fields in events:
        page = fields.get("page") or fields["request"].split()[1].split("?")[0]
        start = int(_second_of(fields) // 60) * 60
        counts[(datetime.fromtimestamp(start, UTC).isoformat(), page)] += 1
    return dict(counts)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_page_counts_and_anomalies(tmp_path: Path, aws_clients: Callable[[str], Any]) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-examples-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 1)
    events = page_views()
    for start in range(0, len(events), 200):
        chunk = events[start:start + 200]
        result = kinesis.put_records(StreamName=stream, Records=[
            {"Data": json.dumps(fields).encode() + b"\n", "PartitionKey": key} for key, fields in chunk])
        assert not result["FailedRecordCount"]
    properties = write_properties(tmp_path / "app.properties", **FAST_TIMINGS)
    counts_out, anomalies_out = tmp_path / "counts.jsonl", tmp_path / "anomalies.jsonl"
    common = ["--stream", stream, "--initial-position", "TRIM_HORIZON", "--config", str(properties)]
    workers = []
    try:
        workers.append(start_worker(tmp_path / "logs", "counts", *common, "--application", f"{stream}-counts",
                                    processor="examples.consumers.page_counts:PageCountProcessor",
                                    env={"PAGE_COUNTS_OUTPUT": str(counts_out)}))
        workers.append(start_worker(tmp_path / "logs", "anomalies", *common, "--application", f"{stream}-anomalies",
                                    processor="examples.consumers.anomalies:AnomalyProcessor",
                                    env={"ANOMALIES_OUTPUT": str(anomalies_out)}))
        wait_for(watched(lambda: len({line["window_start"] for line in read_json_lines(counts_out)}) >= 3,
                         *workers), 90, interval=0.3, message="three closed page-count windows")
        wait_for(watched(lambda: len(read_json_lines(anomalies_out)) >= 2, *workers), 90, interval=0.3,
                 message="two anomalies")
        for worker in workers:
            assert worker.terminate(timeout=60) == 0, worker.log_text()[-3000:]
    finally:
        for worker in workers:
            if worker.alive:
                worker.kill()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        for table in (f"{stream}-counts", f"{stream}-anomalies"):
            with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
                dynamodb.delete_table(TableName=table)

    totals: dict[tuple[str, str], int] = defaultdict(int)
    for line in read_json_lines(counts_out):
        totals[(line["window_start"], line["page"])] += line["event_count"]
    assert dict(totals) == expected_page_counts(events)
    closed = {line["window_start"] for line in read_json_lines(counts_out) if line["closed"]}
    assert closed == {(T0 + timedelta(minutes=minute)).isoformat() for minute in range(3)}

    anomalies = read_json_lines(anomalies_out)
    assert {(line["user"], line["event_count"], line["window_start"], line["closed"]) for line in anomalies} == {
        ("crawler-1", 130, T0.isoformat(), True), ("10.9.9.9", 120, T0.isoformat(), True)}
