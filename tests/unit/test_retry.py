from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from kpl.retry import Backoff, ErrorKind, classify, error_code


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


def test_backoff_is_bounded_and_grows() -> None:
    backoff = Backoff(0.1, 2.0)
    for attempt in range(1, 30):
        assert 0 <= backoff.delay(attempt) <= min(2.0, 0.1 * 2 ** (attempt - 1))
    with pytest.raises(ValueError):
        Backoff(0, 1)
