"""The retry policy shared by the producer, the consumer and the agent.

Two questions recur wherever the toolkit calls AWS: *may this failure be retried*, and *how long to
wait before the next try*.  Both are answered here, once.

Classification follows the service's semantics rather than botocore's: throttling, internal failures,
5xx and network trouble are transient; a missing stream, denied access or a malformed request will
fail the same way every time, so retrying them only hides the problem (the Java KPL retries a deleted
stream for the whole record TTL; users asked for years for it to stop).

Waits are jittered exponential backoff ("full jitter": attempt n waits uniformly in
[0, min(maximum, initial * 2**(n-1))]), which spreads retries of many clients apart after a shared outage.

Every retry *loop* in the toolkit runs on tenacity through :func:`retrying` (async) or
:func:`retrying_blocking` (worker threads only), and each names its stop: a deadline, an attempt budget,
a lost lease, shutdown. A loop that is meant to go on until it is cancelled says so with ``stop_never``
and a comment naming the promise it keeps. :class:`Backoff` is the same window for the few places that
schedule a retry on a timer instead of looping (the producer's record retries, a MultiLang child restart).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable

import botocore.exceptions
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

__all__ = [
    "FATAL_CODES",
    "NETWORK_ERRORS",
    "THROTTLING_CODES",
    "TRANSIENT_CODES",
    "Backoff",
    "ErrorKind",
    "any_error",
    "classify",
    "classify_code",
    "error_code",
    "error_message",
    "is_retryable",
    "last_error",
    "retrying",
    "retrying_blocking",
    "stop_when"
]

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
    """Jittered exponential backoff: attempt n waits uniformly in [minimum, min(maximum, initial * factor**(n-1))]."""

    __slots__ = ("factor", "initial", "maximum", "minimum")

    def __init__(self, initial: float = 0.1, maximum: float = 10.0, *, factor: float = 2.0,
                 minimum: float = 0.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= minimum <= initial:
            raise ValueError(f"backoff needs 0 <= minimum <= initial <= maximum and factor >= 1, got "
                             f"initial={initial} maximum={maximum} factor={factor} minimum={minimum}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.minimum = minimum

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (1 for the first retry)."""
        try:
            return min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        except OverflowError:  # far past any maximum
            return self.maximum

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt``, for callers that schedule retries on a timer."""
        return random.uniform(self.minimum, self.ceiling(attempt))

    @property
    def wait(self) -> wait_base:
        """The same window as a tenacity wait strategy, for :func:`retrying` loops."""
        return self.wait_after(0)

    def wait_after(self, failures: int) -> wait_base:
        """The window of a loop that goes on after ``failures`` earlier ones: its attempt n waits as attempt
        ``failures + n`` would."""
        return wait_random_exponential(multiplier=self.ceiling(failures + 1), exp_base=self.factor,
                                       min=self.minimum, max=self.maximum)


class stop_when(stop_base):
    """Stop retrying once ``predicate()`` is true: the lease is lost, the worker is stopping, nobody waits.

    Named like tenacity's stop conditions, as it is combined with them: ``stop_after_attempt(3) | stop_when(...)``.
    """

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate()


def any_error(error: BaseException) -> bool:
    """A ``retry_on`` for loops that retry every failure: any Exception, never cancellation or an exit."""
    return isinstance(error, Exception)


def last_error(retry_state: RetryCallState) -> BaseException | None:
    """The error the attempt just made failed with (None after a success), for waits and ``before_sleep``."""
    return retry_state.outcome.exception() if retry_state.outcome is not None else None


def retrying(*, wait: wait_base, stop: stop_base, retry_on: Callable[[BaseException], bool] = is_retryable,
             before_sleep: Callable[[RetryCallState], None] | None = None,
             sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> AsyncRetrying:
    """An async retry loop: ``async for attempt in retrying(...): with attempt: ...``.

    ``stop`` has no default on purpose: every caller states when it gives up. The last error is re-raised
    as itself (not wrapped in tenacity's RetryError), so callers handle the exception they know.
    ``sleep`` may be the caller's own pause, which can end the loop by raising (a shard consumer's tenure).
    """
    return AsyncRetrying(wait=wait, stop=stop, retry=retry_if_exception(retry_on), reraise=True, sleep=sleep,
                         before_sleep=before_sleep)


def retrying_blocking(*, wait: wait_base, stop: stop_base, retry_on: Callable[[BaseException], bool] = is_retryable,
                      before_sleep: Callable[[RetryCallState], None] | None = None) -> Retrying:
    """The same loop for code already on a worker thread; never call it on the event loop."""
    return Retrying(wait=wait, stop=stop, retry=retry_if_exception(retry_on), reraise=True, before_sleep=before_sleep)
