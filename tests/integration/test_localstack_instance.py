"""The test LocalStack runs kinesis-mock without persistence.

With persistence on (LocalStack's default for Kinesis, whatever PERSISTENCE says), kinesis-mock rewrites
its whole state to disk every few seconds; after ~40 MB written it grows to gigabytes and 100 % CPU and
stops answering.  localstack/ctl.py sets KINESIS_PERSISTENCE=0: this checks the running processes."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil

from tests.support import localstack
from tests.support.waiting import wait_for


def ctl() -> ModuleType:
    spec = importlib.util.spec_from_file_location("localstack_ctl", localstack.CTL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kinesis_mock_runs_without_persistence(localstack_url: str, aws_clients: Callable[[str], Any]) -> None:
    module = ctl()
    assert module.Instance(localstack.port()).environment()["KINESIS_PERSISTENCE"] == "0"

    aws_clients("kinesis").list_streams()  # kinesis-mock is running
    pid = module.Instance(localstack.port()).pid()
    assert pid is not None, "the LocalStack on this port was not started by localstack/ctl.py"
    process = psutil.Process(pid)
    assert process.environ().get("KINESIS_PERSISTENCE") == "0"

    def kinesis_mock() -> psutil.Process | None:
        return next((child for child in process.children(recursive=True)
                     if any("kinesis-local" in part for part in child.cmdline())), None)

    mock = wait_for(kinesis_mock, 30, interval=0.5, message="kinesis-mock among LocalStack's children")
    assert mock is not None
    environment = mock.environ()
    assert environment.get("SHOULD_PERSIST_DATA") != "true", "kinesis-mock persists its state"
    assert "PERSIST_PATH" not in environment


def test_changed_instance_settings_restart_a_running_instance(monkeypatch: Any) -> None:
    # `start` restarts an instance started from another installation digest: the settings are part of it.
    module = ctl()
    before = module.installation_digest()
    monkeypatch.setitem(module.INSTANCE_SETTINGS, "KINESIS_PERSISTENCE", "1")
    assert module.installation_digest() != before
