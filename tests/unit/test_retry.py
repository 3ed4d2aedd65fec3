from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from hypothesis import given
from hypothesis import strategies as st
from tenacity import stop_after_attempt, stop_never, wait_none

from kpl.retry import Backoff, ErrorKind, classify, error_code, retrying, retrying_blocking, stop_when


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_client_error("ProvisionedThroughputExceededException"), ErrorKind.THROTTLED),
        (_client_error("InternalFailure", 500), ErrorKind.TRANSIENT),
        (_client_error("SomethingNew", 503), ErrorKind.TRANSIENT),
        (_client_error("ResourceNotFoundException"), ErrorKind.FATAL),
        (_client_error("AccessDeniedException"), ErrorKind.FATAL),
        (_client_error("KMSDisabledException"), ErrorKind.FATAL),
        (_client_error("KMSThrottlingException"), ErrorKind.THROTTLED),
        (ReadTimeoutError(endpoint_url="http://x"), ErrorKind.TRANSIENT),
        (EndpointConnectionError(endpoint_url="http://x"), ErrorKind.TRANSIENT),
        (NoCredentialsError(), ErrorKind.FATAL),
    ],
)
def test_classification(error: BaseException, kind: ErrorKind) -> None:
    assert classify(error) is kind


def test_error_code() -> None:
    assert error_code(_client_error("ValidationException")) == "ValidationException"
    assert error_code(ReadTimeoutError(endpoint_url="http://x")) == "ReadTimeoutError"


@given(initial=st.floats(0.001, 5.0), spread=st.floats(1.0, 100.0), attempt=st.integers(-3, 10_000))
def test_backoff_is_bounded_and_grows(initial: float, spread: float, attempt: int) -> None:
    backoff = Backoff(initial, initial * spread)
    ceiling = min(backoff.maximum, initial * 2.0 ** min(max(attempt - 1, 0), 64))
    assert backoff.ceiling(attempt) == pytest.approx(ceiling)
    assert 0 <= backoff.delay(attempt) <= backoff.ceiling(attempt)
    assert backoff.ceiling(attempt + 1) >= backoff.ceiling(attempt)


def test_backoff_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_the_timer_window_is_tenacitys_window() -> None:
    """Timers (Backoff.delay) and loops (Backoff.wait in retrying) wait within the same bounds."""
    backoff = Backoff(0.1, 2.0)
    waits: dict[int, list[float]] = {}

    async def loop() -> None:
        async def record(delay: float) -> None:
            attempt = len(current) + 1
            current.append(delay)
            waits.setdefault(attempt, []).append(delay)

        current: list[float] = []
        with pytest.raises(ClientError):
            async for attempt in retrying(wait=backoff.wait, stop=stop_after_attempt(12), sleep=record):
                with attempt:
                    raise _client_error("InternalFailure", 500)

    for _ in range(200):
        asyncio.run(loop())
    for attempt, delays in waits.items():
        assert max(delays) <= backoff.ceiling(attempt)
        assert max(delays) > backoff.ceiling(attempt) / 2  # uniform over the window, not pinned low
    assert sorted(waits) == list(range(1, 12))


def test_a_retryable_error_is_retried_until_the_stop_and_reraised_as_itself() -> None:
    calls = []
    throttled = _client_error("ProvisionedThroughputExceededException")

    async def run() -> None:
        async for attempt in retrying(wait=wait_none(), stop=stop_after_attempt(3)):
            with attempt:
                calls.append(1)
                raise throttled

    with pytest.raises(ClientError) as raised:
        asyncio.run(run())
    assert raised.value is throttled
    assert len(calls) == 3


def test_a_fatal_error_is_not_retried() -> None:
    calls = []
    with pytest.raises(ClientError):
        for attempt in retrying_blocking(wait=wait_none(), stop=stop_never):
            with attempt:
                calls.append(1)
                raise _client_error("ResourceNotFoundException")
    assert calls == [1]


def test_stop_when_ends_the_loop_once_its_condition_holds() -> None:
    lost = False
    calls = []

    def fail() -> None:
        nonlocal lost
        calls.append(1)
        lost = len(calls) == 2
        raise _client_error("InternalFailure", 500)

    async def run() -> None:
        async for attempt in retrying(wait=wait_none(), stop=stop_after_attempt(100) | stop_when(lambda: lost)):
            with attempt:
                fail()

    with pytest.raises(ClientError):
        asyncio.run(run())
    assert len(calls) == 2


def test_the_callers_pause_can_end_the_loop() -> None:
    class Stopped(Exception):
        pass

    pauses: list[float] = []

    async def pause(delay: float) -> None:
        pauses.append(delay)
        if len(pauses) == 2:
            raise Stopped

    async def run() -> None:
        async for attempt in retrying(wait=Backoff(0.01, 0.02).wait, stop=stop_never, retry_on=lambda _: True,
                                      sleep=pause):
            with attempt:
                raise RuntimeError("processor failed")

    with pytest.raises(Stopped):
        asyncio.run(run())
    assert len(pauses) == 2 and all(0 <= delay <= 0.02 for delay in pauses)
