"""What /healthz and /readyz decide for a worker (kcl.health), from the state it reads; no I/O."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import botocore.exceptions
import pytest

from kcl import health
from kcl.config import WorkerConfig
from kcl.leases import ConditionFailed, LeaseTable, TableSettings


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    table = LeaseTable(TableSettings(table_name="unit-health"))
    yield table
    table.close()


def fail(exc: BaseException) -> Any:
    def call() -> None:
        raise exc
    return call


def test_the_table_answers_until_a_request_fails_and_again_after_an_answer(table: LeaseTable) -> None:
    assert table.unanswered_since is None
    table._request("UpdateItem:renew", lambda: None)
    answered = time.monotonic()
    with pytest.raises(ConditionFailed):
        table._request("UpdateItem:renew", fail(ConditionFailed("s")))
    assert table.unanswered_since is None, "a refused condition is an answer"
    timeout = botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1")
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        table._request("Scan", fail(timeout))
    since = table.unanswered_since
    assert since is not None and since >= answered
    assert table.failures == {("Scan", "ReadTimeoutError"): 1}
    assert table.last_error is not None and table.last_error.startswith("Scan: ")
    table._request("Scan", lambda: None)
    assert table.unanswered_since is None


def worker(table: Any, **state: Any) -> Any:
    config = WorkerConfig(failover_time_ms=3000)
    fields: dict[str, Any] = {"lease_table": table, "config": config, "running": True, "stopping": False,
                              "coordinator": None}
    fields.update(state)
    return SimpleNamespace(**fields)


def test_not_alive_once_the_table_has_not_answered_for_the_failover_time(table: LeaseTable) -> None:
    timeout = botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1")
    with pytest.raises(botocore.exceptions.ConnectTimeoutError):
        table._request("UpdateItem:renew", fail(timeout))
    w = worker(table)
    assert health.lease_table_answers(w) is None  # failed just now, answered a moment ago
    table._last_answer -= 3.5  # the last answer is now 3.5 s old
    reason = health.lease_table_answers(w)
    assert reason is not None and reason.startswith("the lease table unit-health has not answered for 3.5 s")
    assert "failover time, 3 s); last error UpdateItem:renew: " in reason


def test_readiness_reasons() -> None:
    assert health.started(worker(None, running=False)).startswith("starting: ")  # type: ignore[union-attr]
    assert health.started(worker(None, stopping=True, running=False)).startswith("stopping: ")  # type: ignore[union-attr]
    assert health.started(worker(None)) is None
    coordinator = SimpleNamespace(last_sync_ok=None, last_sync_error="AccessDeniedException: no")
    reason = health.shard_sync(worker(None, coordinator=coordinator))
    assert reason == "no shard sync succeeded yet (one is due every 60 s); last error AccessDeniedException: no"
    coordinator.last_sync_ok = time.monotonic() - 100  # type: ignore[attr-defined]
    assert health.shard_sync(worker(None, coordinator=coordinator)) is None  # within two intervals
