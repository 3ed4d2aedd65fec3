"""The response classifier: what a PutRecords outcome means for each Kinesis record of its batch.

The sender hands over a response or an error; the classifier logs the attempt on every Kinesis
record of the batch and tells the result router (:mod:`kpl.router`) what happened, in one of
four shapes: a response read entry by entry (:func:`read_response`), a whole-request failure with
its class from :mod:`kpl.retry`, a batch never sent (:class:`kpl.sender.NotSent`), or a request
cancelled in flight.

Reading a response checks more than the error codes.  An entry delivered to a shard other than the
predicted one has each user record's hash key checked against the range of the shard that took
it: after a reshard, an aggregate predicted with a stale map can land on a child shard that owns
only some of its sub-records, and a KCL consumer silently drops sub-records outside its shard's
range.  Those records must be sent again (the KPL's "Wrong Shard" retry).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import botocore.exceptions

from kpl.accumulator import HASH_KEY, KinesisRecord
from kpl.records import Unanswered
from kpl.retry import ErrorKind, classify, classify_code, error_code, error_message
from kpl.sender import NotSent
from kpl.setup_errors import setup_error
from kpl.shard_map import ShardMap


@dataclass(slots=True)
class ResponseOutcome:
    """A PutRecords response, entry by entry, in request order within each list."""

    #: (Kinesis record, shard, sequence number): every user record is where it belongs.
    delivered: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)
    #: (Kinesis record, shard, sequence number): some user records are outside the shard's range.
    misrouted: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)
    #: Delivered to a shard the map does not know yet: decide once the map is refreshed.
    unverified: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)
    #: (Kinesis record, error code, error message, kind).
    failed: list[tuple[KinesisRecord, str, str, ErrorKind]] = field(default_factory=list)
    #: Predictions were made with a stale map (a refresh is due).
    stale_map: bool = False


@dataclass(frozen=True, slots=True)
class RequestFailure:
    """A PutRecords request that failed as a whole: no entry has an outcome of its own."""

    code: str
    message: str
    kind: ErrorKind
    #: No answer came, so the request may have written its records (see :func:`unanswered`).
    unanswered: bool = False


def read_response(
    batch: list[KinesisRecord], response: dict[str, Any], shard_map: ShardMap, start: float, end: float
) -> ResponseOutcome:
    """Classify each entry of a PutRecords response and log the attempt on its Kinesis record.

    Raises ValueError when the response does not have one result per entry (never seen from the
    service; the caller retries the whole batch rather than guess).
    """
    results = response.get("Records") or []
    if len(results) != len(batch):
        raise ValueError(f"PutRecords returned {len(results)} results for {len(batch)} entries")
    outcome = ResponseOutcome()
    for kr, result in zip(batch, results, strict=True):
        sequence_number = result.get("SequenceNumber")
        if sequence_number is None:
            code = result.get("ErrorCode") or "UnknownError"
            message = result.get("ErrorMessage") or ""
            kr.log.append((start, end, code, message))
            outcome.failed.append((kr, code, message, classify_code(code)))
            continue
        shard_id = result["ShardId"]
        kr.log.append((start, end, None, None))
        predicted = kr.shard_id
        if shard_id == predicted or predicted is None:
            outcome.delivered.append((kr, shard_id, sequence_number))
            continue
        outcome.stale_map = True
        if len(kr.records) == 1:
            # A plain record is routed by its own hash key, so it is where it belongs.
            outcome.delivered.append((kr, shard_id, sequence_number))
            continue
        hash_range = shard_map.range_of(shard_id)
        if hash_range is None:
            outcome.unverified.append((kr, shard_id, sequence_number))
            continue
        low, high = hash_range.start, hash_range.end
        if all(low <= record[HASH_KEY] <= high for record in kr.records):
            outcome.delivered.append((kr, shard_id, sequence_number))
        else:
            outcome.misrouted.append((kr, shard_id, sequence_number))
    return outcome


#: Errors raised before a request reached the service: it wrote nothing.
_BEFORE_SENDING: tuple[type[BaseException], ...] = (
    botocore.exceptions.EndpointConnectionError,  # connect refused, DNS, unreachable
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.SSLError,
    ConnectionRefusedError,
)


def unanswered(error: BaseException) -> bool:
    """Whether a failed request may nevertheless have been written: it got no answer.

    A service error with a 4xx status rejected the request; errors raised while connecting, or
    before sending (credentials, parameters), never reached the service.  Everything else — a
    timeout, a connection closed or reset mid-request, a 5xx — leaves the outcome unknown.
    """
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return not isinstance(status, int) or status >= 500
    if isinstance(error, _BEFORE_SENDING):
        return False
    if isinstance(error, botocore.exceptions.BotoCoreError) and not isinstance(
            error, (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)):
        return False  # NoCredentialsError, ParamValidationError, ...: raised before anything was sent
    return not isinstance(error, ValueError)  # ValueError: a response came, unreadable (read_response)


def request_failure(error: BaseException, request_timeout: float) -> RequestFailure:
    """The code, message and class of a whole-request failure."""
    problem = setup_error(error)
    if problem is not None:  # credentials gone (say, a role that can no longer be assumed)
        return RequestFailure(problem.code, problem.message, ErrorKind.FATAL)
    code, message = error_code(error), error_message(error)
    if isinstance(error, TimeoutError) and not str(error):
        code, message = "RequestTimeout", f"no response within {request_timeout:g} s"
    return RequestFailure(code, message, classify(error), unanswered(error))


class OutcomeRouter(Protocol):
    """The next stage: what the result router takes from the classifier."""

    def response(self, batch: list[KinesisRecord], outcome: ResponseOutcome, start: float, end: float) -> None: ...

    def request_failed(self, batch: list[KinesisRecord], failure: RequestFailure, start: float, end: float) -> None:
        ...

    def not_sent(self, batch: list[KinesisRecord], reason: NotSent) -> None: ...

    def cancelled(self, batch: list[KinesisRecord]) -> None:
        """A request cancelled in flight (its records' last attempt is marked :class:`Unanswered`)."""


class ResponseClassifier:
    """Receives one stream's request outcomes from the sender and hands them, classified, to the router."""

    def __init__(self, shard_map: ShardMap, router: OutcomeRouter, *, request_timeout: float) -> None:
        self._map = shard_map
        self._router = router
        self._request_timeout = request_timeout

    def receive(self, batch: list[KinesisRecord], response: dict[str, Any] | None,
                error: BaseException | NotSent | None, start: float, end: float) -> None:
        router = self._router
        if isinstance(error, NotSent):
            router.not_sent(batch, error)
        elif isinstance(error, asyncio.CancelledError):
            attempt = Unanswered((start, end, "RequestCancelled", "cancelled in flight when the producer shut down"))
            for kr in batch:
                kr.log.append(attempt)
            router.cancelled(batch)
        elif error is not None:
            self._failed(batch, request_failure(error, self._request_timeout), start, end)
        else:
            assert response is not None
            try:
                outcome = read_response(batch, response, self._map, start, end)
            except ValueError as exc:
                self._failed(batch, request_failure(exc, self._request_timeout), start, end)
                return
            router.response(batch, outcome, start, end)

    def _failed(self, batch: list[KinesisRecord], failure: RequestFailure, start: float, end: float) -> None:
        attempt: tuple[float, float, str | None, str | None] = (start, end, failure.code, failure.message)
        if failure.unanswered:
            attempt = Unanswered(attempt)
        for kr in batch:
            kr.log.append(attempt)
        self._router.request_failed(batch, failure, start, end)
