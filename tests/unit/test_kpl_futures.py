"""The sync producer's futures behave as any ``concurrent.futures.Future`` does, while sharing one condition."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from kpl.futures import ThreadFutures, resolve_all


def test_result_done_and_callbacks() -> None:
    futures = ThreadFutures()
    future = futures.new()
    seen: list[object] = []
    future.add_done_callback(lambda f: seen.append(f.result()))
    assert not future.done() and not future.running()
    futures.resolve_all([future], "ok")
    assert future.done() and future.result() == "ok" and future.exception() is None
    assert seen == ["ok"]
    late: list[object] = []
    future.add_done_callback(lambda f: late.append(f.result()))  # runs at once on a done future
    assert late == ["ok"]


def test_result_times_out_while_pending() -> None:
    future = ThreadFutures().new()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.01)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0)


def test_a_cancelled_future_is_skipped_by_bulk_resolution() -> None:
    futures = ThreadFutures()
    kept, cancelled = futures.new(), futures.new()
    assert cancelled.cancel() and cancelled.cancelled()
    futures.resolve_all([kept, cancelled], 1)
    assert kept.result() == 1
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.result()
    with pytest.raises(concurrent.futures.InvalidStateError):
        cancelled.set_result(2)
    assert not kept.cancel(), "a finished future cannot be cancelled"


def test_set_result_twice_is_an_invalid_state() -> None:
    future = ThreadFutures().new()
    future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(2)


def test_set_exception_reaches_result() -> None:
    future = ThreadFutures().new()
    future.set_exception(RuntimeError("boom"))
    assert isinstance(future.exception(), RuntimeError)
    with pytest.raises(RuntimeError, match="boom"):
        future.result()


def test_waiting_threads_wake_for_their_own_future_only() -> None:
    futures = ThreadFutures()
    first, second = futures.new(), futures.new()
    results: dict[str, object] = {}

    def wait(name: str, future: concurrent.futures.Future[object]) -> None:
        results[name] = future.result(timeout=30)

    threads = [threading.Thread(target=wait, args=("first", first)),
               threading.Thread(target=wait, args=("second", second))]
    for thread in threads:
        thread.start()
    futures.resolve_all([first], "a")  # wakes both waiters; the second goes back to waiting
    threads[0].join(30)
    assert results == {"first": "a"} and threads[1].is_alive()
    futures.resolve_all([second], "b")
    threads[1].join(30)
    assert results == {"first": "a", "second": "b"}


def test_wait_and_as_completed() -> None:
    futures = ThreadFutures()
    items = [futures.new() for _ in range(3)]
    done, not_done = concurrent.futures.wait(items, timeout=0)
    assert not done and len(not_done) == 3
    resolver = threading.Thread(target=futures.resolve_all, args=(items[:2], "x"))
    resolver.start()
    done, not_done = concurrent.futures.wait(items, timeout=30, return_when=concurrent.futures.FIRST_COMPLETED)
    resolver.join(30)
    assert done and done <= set(items[:2])
    futures.resolve_all(items[2:], "y")
    assert sorted(f.result() for f in concurrent.futures.as_completed(items, timeout=30)) == ["x", "x", "y"]
    done, not_done = concurrent.futures.wait(items, timeout=30)
    assert done == set(items) and not not_done


def test_resolve_all_skips_cancelled_asyncio_futures() -> None:
    loop = asyncio.new_event_loop()
    try:
        kept, cancelled = loop.create_future(), loop.create_future()
        cancelled.cancel()
        resolve_all([kept, cancelled], 5)
        assert kept.result() == 5 and cancelled.cancelled()
    finally:
        loop.close()
