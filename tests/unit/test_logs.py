"""kpl.logs: library events reach the application's ``logging`` handlers with their context, never stdout;
``configure_logging`` (programs only) renders them as JSON lines or console lines, to a stream or a file."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent
import kcl
import kpl
from kpl.logs import EVENT_ATTRIBUTE, configure_logging, get_logger


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("kpl")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_each_package_carries_only_a_null_handler() -> None:
    for package in (kpl, kcl, agent):
        handlers = logging.getLogger(package.__name__).handlers
        assert [type(handler) for handler in handlers] == [logging.NullHandler], package.__name__


def test_an_event_reaches_the_applications_handler_with_its_context(collect: Collect) -> None:
    get_logger("kpl.test").info("shard map updated", stream="clicks", shards=4, note="two words")
    [record] = collect.records
    assert record.name == "kpl.test"
    assert record.levelno == logging.INFO
    assert record.getMessage() == "shard map updated stream=clicks shards=4 note='two words'"
    assert (record.stream, record.shards) == ("clicks", 4)  # type: ignore[attr-defined]
    assert getattr(record, EVENT_ATTRIBUTE) == {"event": "shard map updated", "stream": "clicks", "shards": 4,
                                                "note": "two words"}
    # The record names the caller, not structlog's frames.
    assert record.pathname == __file__
    assert record.funcName == "test_an_event_reaches_the_applications_handler_with_its_context"


def test_fields_named_like_record_attributes_do_not_break_logging(collect: Collect) -> None:
    get_logger("kpl.test").warning("odd names", name="n", msg="m", args=(1,))
    [record] = collect.records
    assert record.name == "kpl.test" and record.getMessage() == "odd names name=n msg=m args=(1,)"
    assert getattr(record, EVENT_ATTRIBUTE)["msg"] == "m"


def test_exc_info_passes_through(collect: Collect) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("kpl.test").exception("failed", step="x")
    [record] = collect.records
    assert record.levelno == logging.ERROR and record.exc_info and record.exc_info[0] is RuntimeError


def test_levels_below_the_applications_threshold_cost_nothing(collect: Collect) -> None:
    logging.getLogger("kpl").setLevel(logging.WARNING)
    get_logger("kpl.test").debug("hidden", x=1)
    get_logger("kpl.test").info("hidden", x=1)
    get_logger("kpl.test").warning("shown", x=1)
    assert [record.getMessage() for record in collect.records] == ["shown x=1"]


def test_configure_logging_renders_json_lines(root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("debug", stream=out)  # not a TTY: JSON
    get_logger("kcl.test").info("took lease", shard="shardId-000000000000")
    logging.getLogger("botocore.test").warning("third-party %s", "record")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "took lease" and first["shard"] == "shardId-000000000000"
    assert first["logger"] == "kcl.test" and first["level"] == "info" and "timestamp" in first
    assert second["event"] == "third-party record" and second["logger"] == "botocore.test"


def test_configure_logging_console_lines_and_level(root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("warning", json=False, stream=out)
    get_logger("agent.test").info("not shown")
    get_logger("agent.test").warning("shown", file="/var/log/app.log")
    text = out.getvalue()
    assert "not shown" not in text
    assert "shown" in text and "file=/var/log/app.log" in text and not text.lstrip().startswith("{")


def test_configure_logging_appends_json_lines_to_a_file(root_logging: None, tmp_path: Path) -> None:
    path = tmp_path / "daemon.log"
    path.write_text('{"event": "from an earlier run"}\n')
    configure_logging("info", file=path)
    get_logger("agent.test").info("started", flows=2)
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"event": "from an earlier run"}
    assert lines[1]["event"] == "started" and lines[1]["flows"] == 2 and lines[1]["logger"] == "agent.test"


def test_configure_logging_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")


def test_unconfigured_warnings_and_errors_stay_silent() -> None:
    # Without any logging configuration Python prints WARNING and above to stderr ("last resort"): the
    # packages' NullHandler keeps the toolkit out of that.
    code = ("from kpl.logs import get_logger\n"
            "import kcl, agent\n"
            "for name in ('kpl.x', 'kcl.x', 'agent.x'):\n"
            "    get_logger(name).error('bad', detail=1)\n"
            "    get_logger(name).warning('careful')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


def test_docs_name_every_logger_the_code_uses() -> None:
    repo = Path(__file__).resolve().parents[2]
    used = set()
    for package in ("kpl", "kcl", "agent"):
        for module in (repo / package).rglob("*.py"):  # subpackages too (kcl.multilang.child)
            source = module.read_text()
            if re.search(r"get_logger\(__name__\)", source):
                parts = module.relative_to(repo).with_suffix("").parts
                used.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            used.update(re.findall(r"get_logger\(\"([\w.]+)\"\)", source))
    documented = set(re.findall(r"^\| `([\w.]+)` \|", (repo / "docs" / "logging.md").read_text(), re.M))
    assert used == documented
