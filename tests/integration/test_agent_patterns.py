"""One flow following several live files at once, found through directory globs and ``**``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_agent_support import AgentProcess, agent_config, wait_for_lines


def test_several_live_files_in_nested_directories(tmp_path: Path, make_stream: Callable[..., str],
                                                  kinesis: Any) -> None:
    stream = make_stream(shards=2)
    logs = tmp_path / "logs"
    paths = [logs / "web" / "access.log", logs / "api" / "v1" / "requests.log", logs / "top.log"]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (logs / "web" / "ignored.txt").write_bytes(b"not matched\n")
    (logs / "web" / "old.log.gz").write_bytes(b"compressed rotations are skipped\n")
    agent = AgentProcess(tmp_path, agent_config(tmp_path, {
        "filePattern": str(logs / "**" / "*.log"), "kinesisStream": stream, "aggregationEnabled": "true",
    }))
    written: list[bytes] = []
    try:
        agent.start()
        agent.wait_for_event(lambda e: e.get("event", "").startswith("tracking file") and
                             e.get("path") == str(paths[1]), 60, "agent tracking the nested file")
        handles = [path.open("ab", buffering=0) for path in paths]
        for round_number in range(2000):
            for index, handle in enumerate(handles):  # all three files grow at the same time
                line = f"file {index} line {round_number:05d}\n".encode()
                handle.write(line)
                written.append(line)
        for handle in handles:
            handle.close()
        got = wait_for_lines(kinesis, stream, written, timeout=120, agent=agent, logs=paths)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert got == Counter(written)
