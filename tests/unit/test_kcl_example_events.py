"""The example consumers read both record shapes the toolkit carries."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from examples.consumers.events import PageEvent, parse_event
from kcl import Record

ARRIVAL = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)


def record(fields: object) -> Record:
    return Record(json.dumps(fields).encode(), "pk", "1", 0, ARRIVAL, None)


def test_producer_example_json() -> None:
    event = parse_event(record({"timestamp": "2024-05-01T11:59:01.5", "user_id": "user_7", "event": "page_view",
                                "page": "/page_3"}))
    assert event == PageEvent("/page_3", "user_7", datetime(2024, 5, 1, 11, 59, 1, 500000, tzinfo=UTC))


def test_agent_combined_apache_log_json() -> None:
    fields = {"host": "10.0.0.9", "ident": None, "authuser": "frank", "datetime": "10/Oct/2000:13:55:36 -0700",
              "request": "GET /products/42?color=red HTTP/1.1", "response": "200", "bytes": "2326",
              "referer": None, "agent": "curl/8"}
    event = parse_event(record(fields))
    assert event == PageEvent("/products/42", "frank", datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC))


def test_agent_record_without_authuser_is_attributed_to_the_host() -> None:
    fields = {"host": "10.0.0.9", "ident": None, "authuser": None, "datetime": "10/Oct/2000:13:55:36 +0000",
              "request": "GET / HTTP/1.1", "response": "200", "bytes": None, "referer": None, "agent": None}
    assert parse_event(record(fields)) == PageEvent("/", "10.0.0.9", datetime(2000, 10, 10, 13, 55, 36, tzinfo=UTC))


def test_missing_time_falls_back_to_arrival() -> None:
    event = parse_event(record({"user_id": "u", "page": "/"}))
    assert event is not None and event.time == ARRIVAL


def test_records_that_are_not_page_views_are_ignored() -> None:
    assert parse_event(Record(b"\xff\xfe", "pk", "1", 0, ARRIVAL, None)) is None
    assert parse_event(record([1, 2])) is None
    assert parse_event(record({"user_id": "u"})) is None
    assert parse_event(record({"page": "/", "request": "GET"})) is None


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_window_processors_count_and_close_by_event_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.consumers.page_counts import PageCountProcessor

    out = tmp_path / "counts.jsonl"
    monkeypatch.setenv("PAGE_COUNTS_OUTPUT", str(out))

    class Checkpoints:
        def __init__(self) -> None:
            self.values: list[tuple[str, int] | None] = []

        def checkpoint(self, sequence: str | None = None, sub: int | None = None) -> None:
            self.values.append(None if sequence is None else (sequence, sub or 0))

    processor = PageCountProcessor()
    processor.initialize("shardId-000000000000", "TRIM_HORIZON", 0)
    checkpoints = Checkpoints()

    def view(seq: int, second: int, page: str) -> Record:
        moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp() + second
        fields = {"timestamp": datetime.fromtimestamp(moment, UTC).isoformat(), "user_id": "u", "page": page}
        return Record(json.dumps(fields).encode(), "u", str(seq), 0, ARRIVAL, None)

    processor.process_records([view(1, 5, "/a"), view(2, 20, "/a"), view(3, 61, "/b")], checkpoints, 0)  # type: ignore[arg-type]
    assert checkpoints.values == []  # window 12:00 is open and holds the first record
    processor.process_records([view(4, 70, "/a")], checkpoints, 0)  # type: ignore[arg-type]
    assert checkpoints.values == [("2", 0)]  # 12:00 closed (watermark 12:01:10 >= end + 5 s lateness)
    lines = read_lines(out)
    assert [(line["page"], line["event_count"], line["closed"]) for line in lines] == [("/a", 2, True)]
    processor.shutdown_requested(checkpoints)  # type: ignore[arg-type]
    lines = read_lines(out)
    assert Counter((line["page"], line["closed"]) for line in lines) == {("/a", True): 1, ("/a", False): 1,
                                                                          ("/b", False): 1}
    assert checkpoints.values[-1] is None
