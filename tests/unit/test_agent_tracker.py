"""The file tracker's log lines (a pattern that matches nothing, truncations) and private files (real files only)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.batch import BatchBuilder
from agent.checkpoints import CheckpointStore
from agent.config import load_config
from agent.private_files import open_log_file
from agent.records import LineCutter
from agent.tracker import FileTracker
from agent.tracking import Seen, TrackedFile
from kpl.logs import EVENT_ATTRIBUTE


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    found = [getattr(record, EVENT_ATTRIBUTE, None) for record in caplog.records]
    caplog.clear()
    return [event for event in found if event is not None]


class Harness:
    """A FileTracker on a real directory and checkpoint database; retired files are collected."""

    def __init__(self, tmp_path: Path, pattern: str) -> None:
        path = tmp_path / "agent.json"
        path.write_text(json.dumps({"checkpointFile": str(tmp_path / "state" / "checkpoints"),
                                    "flows": [{"filePattern": pattern, "kinesisStream": "s"}]}))
        self.config = load_config(path)
        self.store = CheckpointStore(self.config.checkpoint_file)
        self.store.open()
        self.retired: list[TrackedFile] = []
        self.tracker = FileTracker(self.config.flows[0], self.store, [], self._new_file, self.retired.append)

    def _new_file(self, seen: Seen, offset: int) -> TrackedFile:
        return TrackedFile(path=seen.path, key=seen.key, prefix=seen.prefix or b"", offset=offset, size=seen.size,
                           mtime_ns=seen.mtime_ns, cutter=LineCutter(1000),
                           builder=BatchBuilder(offset, 500, 1 << 20, 0))

    def refresh(self) -> None:
        asyncio.run(self.tracker.refresh())


@pytest.fixture
def harness(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Harness]:
    caplog.set_level(logging.INFO, logger="agent")
    (tmp_path / "logs").mkdir()
    made = Harness(tmp_path, str(tmp_path / "logs" / "*.log"))
    yield made
    asyncio.run(made.store.close())


def test_a_pattern_that_matches_nothing_is_warned_about_at_start_and_while_it_stays_so(
    harness: Harness, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    harness.refresh()
    (start,) = [e for e in events(caplog) if e["event"].startswith("the file pattern matches no file")]
    assert start["file_pattern"] == str(tmp_path / "logs" / "*.log") and start["empty_for_seconds"] is None
    harness.refresh()
    assert not events(caplog), "rate-limited"
    harness.tracker.empty_pattern_warn_interval = 0.0
    harness.refresh()
    (again,) = events(caplog)
    assert again["event"].startswith("the file pattern matches no file") and again["empty_for_seconds"] >= 0
    (tmp_path / "logs" / "app.log").write_bytes(b"hello\n")
    harness.refresh()
    assert [e["event"] for e in events(caplog)] == ["tracking new file"]
    (tmp_path / "logs" / "app.log").unlink()
    harness.refresh()  # the listing may be empty for a moment during a rotation: no warning yet
    assert [e["event"] for e in events(caplog)] == ["file is gone"]
    harness.refresh()
    assert next(e["event"] for e in events(caplog)).startswith("the file pattern matches no file")


def test_a_missing_directory_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent")
    made = Harness(tmp_path, str(tmp_path / "not-yet" / "*.log"))
    try:
        made.refresh()
    finally:
        asyncio.run(made.store.close())
    (warning,) = events(caplog)
    assert warning["event"].startswith("the directory of the file pattern does not exist")
    assert warning["directory"] == str(tmp_path / "not-yet")


def test_a_truncation_is_logged_with_the_path_and_the_offset_kept_or_lost(
    harness: Harness, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(b"0123456789\n" * 10)
    harness.refresh()
    (tracked,) = harness.tracker.files.values()
    tracked.read_offset = 55  # read half of it, then it is truncated without a copy
    events(caplog)
    log.write_bytes(b"new\n")
    harness.refresh()
    (warning,) = [e for e in events(caplog) if e["event"].startswith("file was truncated")]
    assert (warning["path"], warning["offset"], warning["lost_bytes"]) == (str(log), 55, 55)
    assert harness.retired == [tracked]
    (restarted,) = harness.tracker.files.values()
    restarted.read_offset = 4
    log.write_bytes(b"")
    harness.refresh()
    (info,) = [e for e in events(caplog) if e["event"].startswith("file was truncated")]
    assert (info["path"], info["offset"], info["lost_bytes"]) == (str(log), 4, 0)


def test_a_new_log_file_is_0640_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        with open_log_file(tmp_path / "agent.log") as stream:
            stream.write("line\n")
        (tmp_path / "existing.log").write_text("")
        (tmp_path / "existing.log").chmod(0o600)
        open_log_file(tmp_path / "existing.log").close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "agent.log").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "existing.log").stat().st_mode) == 0o600  # the operator's choice stays
