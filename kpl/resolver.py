"""Where every user record leaves the producer: its future resolved, its share of the bounds released.

A record leaves exactly once, through :meth:`Resolver.deliver` or :meth:`Resolver.fail`, whichever
stage decides its fate (the result router for outcomes, the retrier for expiry, the intake for a
missing stream, shutdown for what is left).  Results are built once per Kinesis record for the
records delivered together and set on all their futures in one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from kpl.accumulator import (
    ARRIVAL,
    DATA,
    EXPLICIT_HASH_KEY,
    LOG,
    PARTITION_KEY,
    SIZE,
    KinesisRecord,
    PendingRecord,
    split,
)
from kpl.backpressure import Budget
from kpl.futures import INVALID_STATE
from kpl.metrics import ProducerMetrics
from kpl.records import (
    EXPIRED,
    OUTCOME_UNKNOWN,
    PRODUCER_CLOSED,
    AttemptLog,
    RecordError,
    RecordResult,
    UserRecord,
    last_unanswered,
    maybe_written,
)

_size = itemgetter(SIZE)


class Resolver:
    """Resolves the futures of one stream's records and releases what they held of the budget."""

    def __init__(self, stream_name: str, resolve: Callable[[list[Any], RecordResult], None], budget: Budget,
                 metrics: ProducerMetrics) -> None:
        self.stream_name = stream_name
        #: Sets one result on many futures of the producer's face (skipping cancelled ones).
        self._resolve = resolve
        self._budget = budget
        self._metrics = metrics

    def deliver(
        self, kr: KinesisRecord, records: list[PendingRecord], futures: list[Any], shard_id: str,
        sequence_number: str,
    ) -> None:
        """``records`` (all or some of ``kr``'s) are in ``shard_id`` under ``sequence_number``."""
        kr_log = tuple(kr.log)
        if not kr.regrouped:
            # The common case: one result for all, resolved in one call.
            self._resolve(futures, RecordResult(True, shard_id, sequence_number, kr_log, records[0][ARRIVAL]))
            size = kr.user_bytes if records is kr.records else sum(map(_size, records))
        else:
            shared: RecordResult | None = None
            size = 0
            for record, future in zip(records, futures, strict=True):
                size += record[SIZE]
                if record[LOG]:  # regrouped on a retry: it has attempts of its own
                    result = RecordResult(True, shard_id, sequence_number, record[LOG] + kr_log, record[ARRIVAL])
                else:
                    if shared is None:
                        shared = RecordResult(True, shard_id, sequence_number, kr_log, record[ARRIVAL])
                    result = shared
                with contextlib.suppress(*INVALID_STATE):  # the caller cancelled its future
                    future.set_result(result)
        self._budget.release(len(records), size)

    def delivered_after_check(self, records: list[PendingRecord], shard_id: str | None) -> None:
        """User-record metrics for records delivered outside the per-request summary (after a check)."""
        metrics = self._metrics
        if metrics.enabled:
            metrics.user_records(self.stream_name, shard_id, len(records), 0, sum(map(_size, records)))

    def give_up(self, records: list[PendingRecord], futures: list[Any], kr_log: AttemptLog, reason: str, *,
                shard_id: str | None) -> None:
        """The producer closes with ``records`` undelivered: say what is known of each.

        A record none of whose requests went unanswered is not in the stream: ``ProducerClosed``,
        safe to send again.  One that a request without an answer carried may be:
        ``OutcomeUnknown``, not retryable (sending it again may write it twice).
        """
        if not records:
            return
        if maybe_written(kr_log):
            self.fail(records, futures, kr_log, OUTCOME_UNKNOWN, _unknown_message(reason, kr_log),
                      retryable=False, shard_id=shard_id)
            return
        unknown, closed = split(records, futures, lambda record: maybe_written(record[LOG]))
        last_error = next((f"{code}: {message}" for _, _, code, message in reversed(kr_log) if code), None)
        self.fail(*closed, kr_log, PRODUCER_CLOSED,
                  f"the producer closed before the record was written ({reason})"
                  + (f"; its last attempt failed with {last_error}" if last_error else ""),
                  retryable=True, shard_id=shard_id)
        for record, future in zip(*unknown, strict=True):
            self.fail([record], [future], kr_log, OUTCOME_UNKNOWN, _unknown_message(reason, record[LOG]),
                      retryable=False, shard_id=shard_id)

    def give_up_kinesis_record(self, kr: KinesisRecord, reason: str) -> None:
        self.give_up(kr.records, kr.futures, tuple(kr.log), reason, shard_id=kr.shard_id)

    def fail_kinesis_record(self, kr: KinesisRecord, code: str, message: str, *, retryable: bool) -> None:
        self.fail(kr.records, kr.futures, tuple(kr.log), code, message, retryable=retryable, shard_id=kr.shard_id)

    def fail(
        self, records: list[PendingRecord], futures: list[Any], kr_log: AttemptLog, code: str, message: str, *,
        retryable: bool, shard_id: str | None,
    ) -> None:
        """``records`` failed for good: each gets a result with the error, its attempts and itself."""
        if not records:
            return
        error = RecordError(code, message)
        stream = self.stream_name
        size = 0
        for record, future in zip(records, futures, strict=True):
            size += record[SIZE]
            result = RecordResult(
                False, None, None, record[LOG] + kr_log, record[ARRIVAL], error,
                UserRecord(stream, record[PARTITION_KEY], record[EXPLICIT_HASH_KEY], record[DATA]), retryable,
            )
            try:  # noqa: SIM105
                future.set_result(result)
            except INVALID_STATE:
                pass
        self._budget.release(len(records), size)
        metrics = self._metrics
        if metrics.enabled:
            metrics.user_records(stream, shard_id, 0, len(records), 0)
            if code == EXPIRED:
                metrics.expired(stream, len(records))


def _unknown_message(reason: str, log: AttemptLog) -> str:
    return (f"the producer closed before learning whether the record was written ({reason}): a request that "
            f"carried it got no answer ({last_unanswered(log)}); it may be in the stream, and sending it again "
            "may write it twice")
