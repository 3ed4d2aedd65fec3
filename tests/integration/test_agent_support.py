"""Helpers for the agent's integration tests (this module holds no tests).

* :class:`AgentProcess` runs the real ``kinesis-agent`` command on a generated agent.json, with the AWS
  endpoint given through the environment only, and reads its JSON log lines;
* :class:`LogWriter` appends unique lines to a log file at a steady rate from a thread and rotates it
  the way logrotate and applications do (rename-and-create, copytruncate, create);
* :func:`stream_lines` reads a whole stream back and de-aggregates KPL aggregates.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from kpl.aggregation import decode, is_aggregated
from tests.support.kinesis import read_all
from tests.support.waiting import wait_for

AGENT_COMMAND = str(Path(sys.executable).parent / "kinesis-agent")


class AgentProcess:
    """One ``kinesis-agent`` child process."""

    def __init__(self, directory: Path, config: dict[str, Any], endpoint: str | None = None,
                 args: list[str] | None = None, umask: int = -1) -> None:
        self.directory = directory
        self.args = args or []
        #: The child's umask (-1: inherited).
        self.umask = umask
        self.config_path = directory / "agent.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = directory / "agent.log"
        self.checkpoint_path = Path(config["checkpointFile"])
        self.env = dict(os.environ)
        if endpoint is not None:
            self.env["AWS_ENDPOINT_URL"] = endpoint
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> AgentProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [AGENT_COMMAND, "-c", str(self.config_path), "-L", "info", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, umask=self.umask,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def events(self, since_start: bool = True) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as log:
            if since_start:
                log.seek(self._log_offset)
            lines = log.read().splitlines()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": line.decode(errors="replace"), "level": "raw"})
        return events

    def wait_for_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                       message: str) -> dict[str, Any]:
        def found() -> dict[str, Any]:
            self.assert_running()
            return next((event for event in self.events() if predicate(event)), {})

        return wait_for(found, timeout, interval=0.1, message=message)

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"kinesis-agent exited with {self.process.returncode}:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def agent_config(directory: Path, flow: dict[str, Any], **global_settings: Any) -> dict[str, Any]:
    """An agent.json for one flow with settings that keep tests quick (1 s batches, status every 2 s)."""
    settings: dict[str, Any] = {
        "checkpointFile": str(directory / "state" / "checkpoints"),
        "cloudwatch.emitMetrics": "false",
        "log.statusReportingPeriodSeconds": "2",
        "shutdownTimeoutMillis": "20000",
    }
    settings.update(global_settings)
    # kinesis-mock drops PutRecords requests of several MiB: keep requests at 512 KiB.
    defaults = {"maxBufferAgeMillis": "1000", "initialPosition": "START_OF_FILE", "retryMaxBackoffMillis": "2000",
                "maxBufferSizeBytes": str(512 * 1024)}
    return {**settings, "flows": [{**defaults, **flow}]}


class LogWriter(threading.Thread):
    """Appends numbered lines at ``rate`` lines/s and rotates the file every ``rotate_every`` lines.

    ``style``: "rename" (app.log -> app.log.1, the writer keeps writing a few lines to the renamed file
    before it reopens app.log), "copytruncate" (app.log copied to app.log.1, then truncated in place;
    nothing is written between the copy and the truncation, as logrotate assumes), "create" (a new
    numbered file app-N.log, the old one is left alone), or None (never rotate).
    """

    def __init__(self, directory: Path, *, rate: int, total: int, style: str | None = None,
                 rotate_every: int = 0, line_bytes: int = 60, tag: str = "w") -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.rate = rate
        self.total = total
        self.style = style
        self.rotate_every = rotate_every
        self.line_bytes = line_bytes
        self.tag = tag
        self.written: list[bytes] = []
        self.rotations = 0
        self.error: BaseException | None = None
        self.pause = threading.Event()
        self.finished = threading.Event()
        self._generation = 0

    @property
    def current_path(self) -> Path:
        if self.style == "create":
            return self.directory / f"app-{self._generation:04d}.log"
        return self.directory / "app.log"

    def line(self, number: int) -> bytes:
        head = f"{self.tag} {number:09d} "
        return (head + "x" * max(0, self.line_bytes - len(head) - 1) + "\n").encode()

    def run(self) -> None:
        try:
            self._write_all()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def _write_all(self) -> None:
        handle = self.current_path.open("ab", buffering=0)
        started = time.monotonic()
        number = 0
        burst = max(1, self.rate // 100)
        while number < self.total:
            if self.pause.is_set():
                time.sleep(0.01)
                started = time.monotonic() - number / self.rate
                continue
            chunk = [self.line(n) for n in range(number, min(self.total, number + burst))]
            handle.write(b"".join(chunk))
            self.written.extend(chunk)
            number += len(chunk)
            if self.rotate_every and number % self.rotate_every < burst and number < self.total:
                handle = self._rotate(handle, number)
            ahead = number / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # pacing the writer, not synchronising with the agent
        handle.close()

    def _rotate(self, handle: Any, number: int) -> Any:
        self.rotations += 1
        if self.style == "rename":
            for index in range(self.rotations - 1, 0, -1):
                older = self.directory / f"app.log.{index}"
                if older.exists():
                    older.rename(self.directory / f"app.log.{index + 1}")
            (self.directory / "app.log").rename(self.directory / "app.log.1")
            late = [self.line(n) for n in range(number, min(self.total, number + 5))]
            # The application has not reopened its log yet: these lines land in the renamed file.
            handle.write(b"".join(late))
            self.written.extend(late)
            handle.close()
            return (self.directory / "app.log").open("ab", buffering=0)
        if self.style == "copytruncate":
            for index in range(self.rotations - 1, 0, -1):
                older = self.directory / f"app.log.{index}"
                if older.exists():
                    older.rename(self.directory / f"app.log.{index + 1}")
            shutil.copyfile(self.directory / "app.log", self.directory / "app.log.1")
            os.truncate(self.directory / "app.log", 0)
            return handle
        if self.style == "create":
            handle.close()
            self._generation += 1
            return self.current_path.open("ab", buffering=0)
        return handle

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"log writer failed: {self.error!r}")


def records_of(client: Any, stream: str) -> list[bytes]:
    """Every user record in the stream, KPL aggregates de-aggregated."""
    out: list[bytes] = []
    for records in read_all(client, stream).values():
        for record in records:
            data = record["Data"]
            if is_aggregated(data):
                out.extend(sub.data for sub in decode(data))
            else:
                out.append(data)
    return out


def wait_for_lines(client: Any, stream: str, expected: list[bytes], *, timeout: float,
                   agent: AgentProcess | None = None, logs: Path | list[Path] | None = None) -> Counter[bytes]:
    """Wait until every expected line is in the stream; the multiset of what the stream holds.

    Reading a whole stream is expensive for kinesis-mock and would slow the agent under test, so when
    ``logs`` (a directory, or a list of files) is given the wait is on the agent's checkpoints (every
    file acknowledged to its end) and the stream is read only then.
    """
    wanted = set(expected)
    deadline = time.monotonic() + timeout
    if agent is not None and logs is not None:
        wait_for(lambda: all_checkpointed(agent, logs), timeout, interval=0.5,
                 message=f"{logs} checkpointed to the end")

    def complete() -> Counter[bytes]:
        if agent is not None:
            agent.assert_running()
        got = Counter(records_of(client, stream))
        return got if got and wanted.issubset(got) else Counter()

    try:
        return wait_for(complete, max(5.0, deadline - time.monotonic()), interval=3.0,
                        message=f"all {len(wanted)} lines in {stream}")
    except AssertionError:
        got = Counter(records_of(client, stream))
        missing = sorted(wanted - set(got))
        log = f"\nagent log:\n{agent.log_text()}" if agent is not None else ""
        raise AssertionError(f"{len(missing)} of {len(wanted)} lines missing from {stream}, first: "
                             f"{missing[:5]!r}{log}") from None


def all_checkpointed(agent: AgentProcess, logs: Path | list[Path]) -> bool:
    """Every file (in ``logs``, a directory or a list) has a checkpoint row at its current size."""
    agent.assert_running()
    offsets = {path: offset for path, _, offset, _ in checkpoint_rows(agent.checkpoint_path)}
    files = [path for path in logs.iterdir() if path.is_file()] if isinstance(logs, Path) else logs
    return bool(files) and all(offsets.get(str(path)) == path.stat().st_size for path in files)


def checkpoint_rows(path: Path) -> list[tuple[Any, ...]]:
    import sqlite3

    if not path.exists():
        return []
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("select path, fileId, offset, fingerprint from FILE_CHECKPOINTS").fetchall()
    except sqlite3.OperationalError:  # the agent is creating the database (empty file, then the table)
        return []
    finally:
        connection.close()
