"""The clickstream example runs as a program against LocalStack and its page views arrive."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_producer_helpers import read_back

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clickstream_producer.py"


def test_clickstream_example_delivers_every_page_view(unique_name: Callable[[str], str], kinesis: Any) -> None:
    stream = unique_name("clicks")
    try:
        completed = subprocess.run(
            [sys.executable, str(EXAMPLE), "--stream", stream, "--create", "--count", "500", "--users", "40"],
            capture_output=True, text=True, timeout=240, check=False,
        )
        assert completed.returncode == 0, completed.stderr + completed.stdout
        assert "500 of 500 page views delivered" in completed.stdout
        landed, _ = read_back(kinesis, stream)
        events = [json.loads(record.data) for record in landed]
        assert len(events) == 500
        assert all(e["event"] == "page_view" and e["page"].startswith("/page_") for e in events)
        assert all(record.partition_key == json.loads(record.data)["user_id"] for record in landed)
        assert len({e["user_id"] for e in events}) == 40
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
