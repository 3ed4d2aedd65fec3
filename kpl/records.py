"""What goes in (a user record) and what comes out (a result with its attempts) of the producer.

Results are built when records are resolved, once per Kinesis record for the records delivered
together (see :class:`RecordResult`), so the per-record cost of a result is one ``set_result``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kpl.errors import RecordFailedError

#: One attempt as the producer logs it: (start, end, error code or None, error message or None),
#: times on the event loop's monotonic clock.  Shared by every user record of a Kinesis record.
AttemptLog = tuple[tuple[float, float, str | None, str | None], ...]

#: Error code of a record whose RecordTtl passed before it was delivered (the KPL's code).
EXPIRED = "Expired"
#: Error code of a record the producer closed before sending it (or after attempts that were all
#: answered with a failure): it is not in the stream, so sending it again is safe.
PRODUCER_CLOSED = "ProducerClosed"
#: Error code of a record the producer closed before learning whether it was written: a request
#: that carried it got no answer (timed out, connection lost, 5xx, cancelled in flight).  It may be
#: in the stream; sending it again may write it twice.
OUTCOME_UNKNOWN = "OutcomeUnknown"
#: Attempt error of a record that reached a shard whose hash range excludes it (the KPL's message).
WRONG_SHARD = "Wrong Shard"


class Unanswered(tuple[float, float, str | None, str | None]):
    """An attempt whose request got no answer, so the record may have been written by it.

    Logged like any attempt (start, end, error code, error message); its type is the mark, which
    travels with the record when it is re-aggregated for a retry.
    """

    __slots__ = ()


def maybe_written(log: Iterable[tuple[float, float, str | None, str | None]]) -> bool:
    """Whether an attempt of ``log`` got no answer (the record may be in the stream)."""
    return any(type(attempt) is Unanswered for attempt in log)


def last_unanswered(log: Iterable[tuple[float, float, str | None, str | None]]) -> str:
    """'code: message' of the last attempt of ``log`` that got no answer."""
    for _, _, code, message in reversed([a for a in log if type(a) is Unanswered]):
        return f"{code}: {message}"
    return ""


@dataclass(frozen=True, slots=True)
class UserRecord:
    """The record as the caller put it, returned with a failed result so it can be re-submitted."""

    stream_name: str
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """One PutRecords attempt for a user record.

    ``delay`` is the time (seconds) from the record's arrival, or from the end of the previous
    attempt, to the start of this one; ``duration`` is the request time in seconds.
    ``outcome_unknown``: the request got no answer (a timeout, a lost connection, a 5xx), so it may
    have written the record although the attempt failed.
    """

    delay: float
    duration: float
    error_code: str | None
    error_message: str | None
    outcome_unknown: bool = False

    @property
    def success(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why a record failed: the service's error code (or ``Expired``, ``ProducerClosed``) and message."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def attempts_from_log(since: float, log: AttemptLog) -> tuple[Attempt, ...]:
    """Attempts from a log, each delay measured from ``since`` or from the end of the previous attempt."""
    attempts = []
    previous_end = since
    for attempt in log:
        start, end, code, message = attempt
        attempts.append(Attempt(max(0.0, start - previous_end), end - start, code, message,
                                type(attempt) is Unanswered))
        previous_end = end
    return tuple(attempts)


class RecordResult:
    """The outcome of one ``put_record``: where it landed, or why it did not, and every attempt.

    User records that travelled in the same Kinesis record and were delivered together share one
    (read-only) result object: their shard, sequence number and attempts are the same, and one
    object per Kinesis record instead of one per user record halves what the garbage collector
    has to track in a busy producer.  The first attempt's ``delay`` is then measured from when that
    Kinesis record started collecting (the arrival of its first user record).

    ``retryable`` (failures only) says whether re-submitting the same record may succeed: true for
    expiry, throttling and ``ProducerClosed``, false for errors that will repeat (a missing stream,
    denied access, invalid input) and for ``OutcomeUnknown`` (the record may be in the stream
    already).  A failed result carries the ``record`` as it was put.
    """

    __slots__ = ("_attempts", "_error", "_log", "_record", "_retryable", "_sequence_number", "_shard_id", "_since",
                 "_success")

    # Positional on purpose: built once per Kinesis record on the hot path.
    def __init__(  # noqa: PLR0917
        self, success: bool, shard_id: str | None, sequence_number: str | None, log: AttemptLog, since: float,
        error: RecordError | None = None, record: UserRecord | None = None, retryable: bool = False,
    ) -> None:
        self._success = success
        self._shard_id = shard_id
        self._sequence_number = sequence_number
        self._log = log
        self._since = since
        self._error = error
        self._record = record
        self._retryable = retryable
        self._attempts: tuple[Attempt, ...] | None = None

    @property
    def success(self) -> bool:
        return self._success

    @property
    def shard_id(self) -> str | None:
        return self._shard_id

    @property
    def sequence_number(self) -> str | None:
        return self._sequence_number

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """Every PutRecords attempt, oldest first (built when first read)."""
        if self._attempts is None:
            self._attempts = attempts_from_log(self._since, self._log)
        return self._attempts

    @property
    def error(self) -> RecordError | None:
        return self._error

    @property
    def record(self) -> UserRecord | None:
        return self._record

    @property
    def retryable(self) -> bool:
        return self._retryable

    def raise_for_error(self) -> RecordResult:
        """Raise :class:`RecordFailedError` when the record failed; return the result otherwise."""
        if not self._success:
            raise RecordFailedError(self)
        return self

    def __repr__(self) -> str:
        if self._success:
            return (f"RecordResult(success=True, shard_id={self._shard_id!r}, "
                    f"sequence_number={self._sequence_number!r}, attempts={len(self._log)})")
        return (f"RecordResult(success=False, error={self._error!r}, retryable={self._retryable}, "
                f"attempts={len(self._log)}, record={self._record!r})")
