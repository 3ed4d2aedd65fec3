"""The outstanding-records/bytes budget: admission, first-come-first-served waiting, idleness."""

from __future__ import annotations

import asyncio

from kpl.backpressure import Budget
from tests.support.waiting import async_wait_for


def test_bounds_on_records_and_bytes() -> None:
    budget = Budget(max_records=2, max_bytes=100)
    assert budget.try_admit(40) and budget.try_admit(40)
    assert not budget.try_admit(1), "record bound"
    budget.release(1, 40)
    assert not budget.try_admit(61), "byte bound"
    assert budget.try_admit(60)
    assert (budget.outstanding_records, budget.outstanding_bytes) == (2, 100)


def test_a_record_larger_than_the_byte_bound_goes_alone() -> None:
    budget = Budget(max_records=10, max_bytes=100)
    assert budget.try_admit(500)
    assert not budget.try_admit(1)
    budget.release(1, 500)
    assert budget.try_admit(1)


async def test_waiters_get_in_first_come_first_served() -> None:
    budget = Budget(max_records=1, max_bytes=1000)
    budget.admit(10)
    order: list[str] = []

    async def put(name: str) -> None:
        await budget.wait_for_room(10)
        budget.admit(10)
        order.append(name)

    first = asyncio.create_task(put("first"))
    await async_wait_for(lambda: budget.waiters == 1, 30)
    second = asyncio.create_task(put("second"))
    await async_wait_for(lambda: budget.waiters == 2, 30)
    assert not budget.try_admit(10), "nobody overtakes waiting callers"
    budget.release(1, 10)
    await first
    assert order == ["first"] and not second.done()
    budget.release(1, 10)
    await second
    assert order == ["first", "second"]


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    budget = Budget(max_records=1, max_bytes=1000)
    budget.admit(1)
    cancelled = asyncio.create_task(budget.wait_for_room(1))
    await async_wait_for(lambda: budget.waiters == 1, 30)
    waiting = asyncio.create_task(budget.wait_for_room(1))
    await async_wait_for(lambda: budget.waiters == 2, 30)
    cancelled.cancel()
    budget.release(1, 1)
    await asyncio.wait_for(waiting, timeout=30)
    assert budget.waiters == 0


async def test_wait_idle_returns_when_everything_is_released() -> None:
    budget = Budget(max_records=10, max_bytes=1000)
    await budget.wait_idle()  # nothing outstanding: returns at once
    budget.admit(5)
    budget.admit(5)
    idle = asyncio.create_task(budget.wait_idle())
    budget.release(1, 5)
    assert not idle.done()
    budget.release(1, 5)
    await asyncio.wait_for(idle, timeout=30)


def test_release_notifies_the_sync_face() -> None:
    budget = Budget(max_records=10, max_bytes=1000)
    calls: list[int] = []
    budget.on_release = lambda: calls.append(budget.outstanding_records)
    budget.admit(1)
    budget.release(1, 1)
    assert calls == [0]
