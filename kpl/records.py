"""What goes in (a user record) and what comes out (a result with its attempts) of the producer.

Results are built once per user record on the hot path, so they are plain slotted objects whose
``attempts`` list is materialised only when read: all user records that travelled in the same
Kinesis record share one attempt log, and the per-record delays are derived from it on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpl.errors import RecordFailedError

#: One attempt as the producer logs it: (start, end, error code or None, error message or None),
#: times on the event loop's monotonic clock.  Shared by every user record of a Kinesis record.
AttemptLog = tuple[tuple[float, float, str | None, str | None], ...]

#: Error code of a record whose RecordTtl passed before it was delivered (the KPL's code).
EXPIRED = "Expired"
#: Error code of a record still outstanding when ``close(timeout)`` gave up on it.
PRODUCER_CLOSED = "ProducerClosed"
#: Attempt error of a record that reached a shard whose hash range excludes it (the KPL's message).
WRONG_SHARD = "Wrong Shard"


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
    """

    delay: float
    duration: float
    error_code: str | None
    error_message: str | None

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


class RecordResult:
    """The outcome of one ``put_record``: where it landed, or why it did not, and every attempt.

    ``retryable`` (failures only) says whether re-submitting the same record may succeed: true for
    expiry, throttling and shutdown, false for errors that will repeat (a missing stream, denied
    access, invalid input).
    """

    __slots__ = ("_arrival", "_attempts", "_log", "error", "record", "retryable", "sequence_number", "shard_id",
                 "success")

    # Positional on purpose: built once per record on the hot path (keyword calls cost ~1 µs more).
    def __init__(  # noqa: PLR0917
        self,
        success: bool,
        shard_id: str | None,
        sequence_number: str | None,
        error: RecordError | None,
        record: UserRecord | None,
        retryable: bool,
        arrival: float,
        log: AttemptLog,
    ) -> None:
        self.success = success
        self.shard_id = shard_id
        self.sequence_number = sequence_number
        self.error = error
        self.record = record
        self.retryable = retryable
        self._arrival = arrival
        self._log = log
        self._attempts: list[Attempt] | None = None

    @property
    def attempts(self) -> list[Attempt]:
        if self._attempts is None:
            attempts = []
            previous_end = self._arrival
            for start, end, code, message in self._log:
                attempts.append(Attempt(max(0.0, start - previous_end), end - start, code, message))
                previous_end = end
            self._attempts = attempts
        return self._attempts

    def raise_for_error(self) -> RecordResult:
        """Raise :class:`RecordFailedError` when the record failed; return the result otherwise."""
        if not self.success:
            raise RecordFailedError(self)
        return self

    def __repr__(self) -> str:
        if self.success:
            return (f"RecordResult(success=True, shard_id={self.shard_id!r}, "
                    f"sequence_number={self.sequence_number!r}, attempts={len(self._log)})")
        return (f"RecordResult(success=False, error={self.error!r}, retryable={self.retryable}, "
                f"attempts={len(self._log)})")
