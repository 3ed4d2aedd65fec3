"""Records that span lines, header lines, and unterminated last lines of files rotated out of the pattern."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_agent_support import AgentProcess, agent_config, records_of, wait_for_lines
from tests.support.waiting import wait_for


def test_multiline_records_headers_and_partial_lines_survive_rotation(
    tmp_path: Path, make_stream: Callable[..., str], kinesis: Any,
) -> None:
    traces, plain = make_stream(shards=1, purpose="traces"), make_stream(shards=1, purpose="plain")
    trace_logs, plain_logs = tmp_path / "traces", tmp_path / "plain"
    trace_logs.mkdir()
    plain_logs.mkdir()
    config = agent_config(tmp_path, {
        # No "*": the rotated file leaves the pattern and is read to its end through its open descriptor.
        "filePattern": str(trace_logs / "app.log"), "kinesisStream": traces,
        "multiLineStartPattern": "\\d{4}-\\d{2}-\\d{2} ", "multiLineFlushTimeoutMillis": "1000",
        "skipHeaderLines": "1",
    })
    config["flows"].append({**config["flows"][0], "filePattern": str(plain_logs / "app.log"), "kinesisStream": plain,
                            "multiLineStartPattern": None, "skipHeaderLines": "0"})
    (trace_logs / "app.log").write_bytes(b"# header line\n")
    (plain_logs / "app.log").write_bytes(b"")
    agent = AgentProcess(tmp_path, config)
    try:
        agent.start()
        agent.wait_for_event(lambda e: e.get("event", "").startswith("tracking file"), 60, "agent tracking")
        with (trace_logs / "app.log").open("ab") as log:
            log.write(b"2026-11-21 10:00:00 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n")
            log.write(b"2026-11-21 10:00:01 INFO fine\n2026-11-21 10:00:02 WARN last, unterminated")
        with (plain_logs / "app.log").open("ab") as log:
            log.write(b"plain one\nplain two\nplain three, unterminated")
        wait_for(lambda: len(records_of(kinesis, traces)) >= 2, 60, interval=1.0, message="first trace records")
        (trace_logs / "app.log").rename(trace_logs / "app.log.1")
        (plain_logs / "app.log").rename(plain_logs / "app.log.1")
        (trace_logs / "app.log").write_bytes(b"# header of the new file\n2026-11-21 10:00:03 INFO new file\n")
        (plain_logs / "app.log").write_bytes(b"plain four\n")
        trace_records = wait_for_lines(kinesis, traces, [
            b"2026-11-21 10:00:00 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n",
            b"2026-11-21 10:00:01 INFO fine\n",
            b"2026-11-21 10:00:02 WARN last, unterminated",
            b"2026-11-21 10:00:03 INFO new file\n",
        ], timeout=60, agent=agent, logs=trace_logs)
        plain_records = wait_for_lines(kinesis, plain, [
            b"plain one\n", b"plain two\n", b"plain three, unterminated", b"plain four\n",
        ], timeout=60, agent=agent, logs=plain_logs)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert sum(trace_records.values()) == 4, trace_records
    assert plain_records == Counter([b"plain one\n", b"plain two\n", b"plain three, unterminated", b"plain four\n"])
    moved = [event for event in agent.events() if event.get("event", "").startswith("file renamed out of")]
    assert len(moved) == 2, json.dumps(moved)
