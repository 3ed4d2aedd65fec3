"""The retry policy shared by the producer, the consumer and the agent.

Two questions recur wherever the toolkit calls AWS: *may this failure be retried*, and *how long to
wait before the next try*.  Both are answered here, once.

Classification follows the service's semantics rather than botocore's: throttling, internal failures,
5xx and network trouble are transient; a missing stream, denied access or a malformed request will
fail the same way every time, so retrying them only hides the problem (the Java KPL retries a deleted
stream for the whole record TTL; users asked for years for it to stop).

Waits are jittered exponential backoff computed by tenacity's ``wait_random_exponential`` ("full
jitter"), which spreads retries of many clients apart after a shared outage.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import botocore.exceptions
from tenacity import RetryCallState, wait_random_exponential

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "SlowDown",
    "KMSThrottlingException",
    "ServiceQuotaExceededException",
})

TRANSIENT_CODES = frozenset({
    "InternalFailure",
    "InternalFailureException",
    "InternalError",
    "InternalServerError",
    "InternalServiceError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "RequestExpired",
    "PriorRequestNotComplete",
    "IDPCommunicationError",
    "EC2ThrottledException",
    "TransactionInProgressException",
})

#: Errors that repeat identically on every attempt: fail at once and say why.
FATAL_CODES = frozenset({
    "ResourceNotFoundException",
    "ResourceInUseException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "ValidationException",
    "ValidationError",
    "InvalidArgumentException",
    "InvalidParameterValueException",
    "InvalidParameterException",
    "SerializationException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "KMSInvalidKeyUsageException",
})

NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,  # connect timeouts, refused, DNS, proxy
    botocore.exceptions.HTTPClientError,  # read timeouts, connection closed/reset
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
)


class ErrorKind(enum.Enum):
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    FATAL = "fatal"


def error_code(error: BaseException) -> str:
    """The service error code of a botocore ClientError, else the exception's class name."""
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


def error_message(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        message = error.response.get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(error) or type(error).__name__


def classify_code(code: str, http_status: int | None = None) -> ErrorKind:
    if code in THROTTLING_CODES:
        return ErrorKind.THROTTLED
    if code in FATAL_CODES:
        return ErrorKind.FATAL
    if code in TRANSIENT_CODES:
        return ErrorKind.TRANSIENT
    if http_status is not None and http_status < 500:
        return ErrorKind.FATAL
    # Unknown codes are retried: a wrong guess costs a few retries within the deadline, while
    # failing a record that would have gone through on the next attempt loses it for the caller.
    return ErrorKind.TRANSIENT


def classify(error: BaseException) -> ErrorKind:
    """Whether ``error`` from an AWS call is throttling, transient or fatal."""
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return classify_code(error_code(error), status if isinstance(status, int) else None)
    if isinstance(error, NETWORK_ERRORS):
        return ErrorKind.TRANSIENT
    if isinstance(error, botocore.exceptions.BotoCoreError):
        # NoCredentialsError, ParamValidationError, NoRegionError ...: configuration, not luck.
        return ErrorKind.FATAL
    return ErrorKind.TRANSIENT if isinstance(error, OSError) else ErrorKind.FATAL


def is_retryable(error: BaseException) -> bool:
    return classify(error) is not ErrorKind.FATAL


class Backoff:
    """Jittered exponential backoff: attempt n waits uniformly in [0, min(maximum, initial * 2**(n-1))]."""

    __slots__ = ("_state", "_wait", "initial", "maximum")

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got initial={initial} maximum={maximum}")
        self.initial = initial
        self.maximum = maximum
        self._wait: Any = wait_random_exponential(multiplier=initial, max=maximum)
        self._state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        self._state.attempt_number = max(1, attempt)
        return float(self._wait(self._state))
