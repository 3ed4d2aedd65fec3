"""Resolving the futures ``put_record`` returns, many at a time.

User records that travelled in one Kinesis record get one shared result, so resolving them is one
call per Kinesis record: :func:`resolve_all` for asyncio futures, :meth:`ThreadFutures.resolve_all`
for the sync producer's.

:class:`ThreadFuture` is a ``concurrent.futures.Future`` (``result(timeout)``, ``exception()``,
``done()``, ``cancel()``, ``add_done_callback``, ``concurrent.futures.wait`` and ``as_completed``
behave as for any other) built for a producer that makes one per record.  The stock class creates a
``threading.Condition`` (a lock and a waiter list) and two lists per future, which cost more than
the rest of the producer's work per record and multiply what the garbage collector must track.
Here the futures of one producer share one condition, the lists are created only when a waiter or a
callback needs them, and a whole Kinesis record's futures are resolved under one acquisition of
the lock with one ``notify_all``.  Because a notification may now be for another future, waiting
re-checks its own state until its deadline.  The base class's private attributes this relies on are
named in :mod:`kpl._cpython`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kpl._cpython import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, FUTURES_LOGGER, PENDING, RUNNING

T = TypeVar("T")

#: What ``set_result`` raises on a future the caller cancelled (either kind of future).
INVALID_STATE = (asyncio.InvalidStateError, concurrent.futures.InvalidStateError)
_DONE = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))
_OPEN = frozenset((PENDING, RUNNING))


def resolve_all(futures: Iterable[Any], result: object) -> None:
    """Set ``result`` on every future that the caller has not cancelled."""
    for future in futures:
        try:  # noqa: SIM105  (contextlib.suppress costs a context manager per future)
            future.set_result(result)
        except INVALID_STATE:
            pass


class ThreadFuture(concurrent.futures.Future[T]):
    """A ``concurrent.futures.Future`` sharing its producer's condition (see the module docstring)."""

    # Defaults of the attributes the base class reads: set on an instance only when they change.
    _state: str = PENDING
    _result: T | None = None
    _exception: BaseException | None = None
    _waiter_list: list[Any] | None = None
    _callback_list: list[Callable[[concurrent.futures.Future[T]], object]] | None = None

    # Not the base __init__: it makes the per-future condition and lists this class avoids.
    def __init__(self, condition: threading.Condition) -> None:
        self._condition = condition

    # concurrent.futures.wait() and as_completed() append to and remove from ``_waiters``, and the
    # base class runs ``_done_callbacks``: lists made when first asked for.
    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        if self._waiter_list is None:
            self._waiter_list = []
        return self._waiter_list

    @property
    def _done_callbacks(self) -> list[Callable[[concurrent.futures.Future[T]], object]]:
        if self._callback_list is None:
            self._callback_list = []
        return self._callback_list

    def done(self) -> bool:
        return self._state in _DONE  # one read of one attribute: no lock needed

    def result(self, timeout: float | None = None) -> T:
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]  # set before the state, so complete
        with self._condition:
            self._wait(timeout)
            return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with self._condition:
            self._wait(timeout)
            return super().exception(0)

    def _wait(self, timeout: float | None) -> None:
        """With the condition held: wait until done, or until ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state not in _DONE:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._condition.wait(remaining)

    def set_result(self, result: T) -> None:
        if not _resolve(self._condition, (self,), result):
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")


class ThreadFutures:
    """Makes the futures of one sync producer, which share one condition, and resolves them in bulk."""

    def __init__(self) -> None:
        self.condition = threading.Condition()

    def new(self) -> ThreadFuture[Any]:
        return ThreadFuture(self.condition)

    def resolve_all(self, futures: Iterable[ThreadFuture[Any]], result: object) -> None:
        """Set ``result`` on every future that is not cancelled, under one acquisition of the lock."""
        _resolve(self.condition, futures, result)


def _resolve(condition: threading.Condition, futures: Iterable[ThreadFuture[Any]], result: object) -> int:
    """What ``set_result`` does, for many futures at once; how many were set (cancelled ones are not)."""
    notified: list[ThreadFuture[Any]] = []
    resolved = 0
    with condition:
        for future in futures:
            if future._state in _OPEN:
                future._result = result  # before the state: ThreadFuture.result reads them without the lock
                future._state = FINISHED
                resolved += 1
                if future._waiter_list or future._callback_list:
                    notified.append(future)
        for future in notified:
            for waiter in future._waiter_list or ():
                waiter.add_result(future)
        condition.notify_all()
    for future in notified:
        for callback in future._callback_list or ():
            try:
                callback(future)
            except Exception:
                FUTURES_LOGGER.exception("exception calling callback for %r", future)
    return resolved
