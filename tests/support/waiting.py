"""Waiting for a condition with a deadline: the only way tests synchronise with asynchronous work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    pass


def wait_for(
    condition: Callable[[], T | None], timeout: float, *, interval: float = 0.05, message: str = "condition"
) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{message} not met within {timeout:.1f}s (last value: {value!r})")
        time.sleep(interval)


async def async_wait_for(
    condition: Callable[[], T | Awaitable[T]], timeout: float, *, interval: float = 0.05, message: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{message} not met within {timeout:.1f}s (last value: {value!r})")
        await asyncio.sleep(interval)
