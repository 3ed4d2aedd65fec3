"""How the lease table retries (issue 12): one request per hop to a table thread, the backoff awaited on the
event loop, a refused condition never retried, and the attempt budgets of each operation.

No request leaves the process: the callables below stand in for one DynamoDB request each.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import botocore.exceptions
import pytest
from tenacity import stop_after_attempt

from kcl.leases import ATTEMPTS, ConditionFailed, LeaseTable, TableSettings
from kpl.retry import stop_when


def throttled() -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
         "ResponseMetadata": {"HTTPStatusCode": 400}}, "UpdateItem")


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[LeaseTable]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    table = LeaseTable(TableSettings(table_name="unit-retry"), threads=1)
    yield table
    table.close()


async def test_a_throttled_call_does_not_hold_the_table_thread_while_it_waits(table: LeaseTable) -> None:
    events: list[str] = []
    failures = iter([throttled(), throttled()])

    def throttled_twice() -> str:
        error = next(failures, None)
        events.append("throttled" if error is not None else "first done")
        if error is not None:
            raise error
        return "first"

    def quick() -> str:
        events.append("second done")
        return "second"

    first = asyncio.create_task(table.call(throttled_twice, attempts=3))
    await asyncio.sleep(0)  # the first call is on the table's only thread
    second = asyncio.create_task(table.call(quick))
    assert await asyncio.wait_for(asyncio.gather(first, second), 10) == ["first", "second"]
    assert events.index("second done") < events.index("first done")
    assert events[:2] == ["throttled", "second done"], "the second call ran during the first one's wait"


async def test_a_refused_condition_is_never_retried(table: LeaseTable) -> None:
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConditionFailed("leaseCounter moved")

    with pytest.raises(ConditionFailed):
        await table.call(refused, attempts=3)
    assert calls == 1


async def test_retries_end_with_the_budget_and_the_last_error(table: LeaseTable) -> None:
    calls = 0

    def always_throttled() -> None:
        nonlocal calls
        calls += 1
        raise throttled()

    with pytest.raises(botocore.exceptions.ClientError, match="ProvisionedThroughputExceeded"):
        await table.call(always_throttled, attempts=3)
    assert calls == 3


def test_a_blocking_call_stops_retrying_once_the_lease_is_lost(table: LeaseTable) -> None:
    calls = 0
    lost = threading.Event()

    def write() -> None:
        nonlocal calls
        calls += 1
        lost.set()  # the lease is lost while this write fails
        raise throttled()

    with pytest.raises(botocore.exceptions.ClientError):
        table.call_blocking(write, attempts=3, stop=stop_when(lost.is_set))
    assert calls == 1


def test_renewals_takes_and_handoff_requests_are_sent_once_everything_else_three_times(table: LeaseTable) -> None:
    for once in ("renew", "take", "initiate_handoff", "ensure_exists"):
        assert table._stop(getattr(table, once), None, None).max_attempt_number == 1  # type: ignore[attr-defined]
    for name in ("list_leases", "get", "get_many", "create_if_absent", "checkpoint", "prepare_checkpoint",
                 "release", "complete_handoff", "set_child_shards", "delete_finished"):
        assert ATTEMPTS[name] == 3 and hasattr(table, name)
        assert table._stop(getattr(table, name), None, None).max_attempt_number == 3  # type: ignore[attr-defined]
    assert isinstance(table._stop(table.get, None, None), stop_after_attempt)
