"""The KPL's producer metrics, under the names, levels and granularities the Java KPL uploads.

Names are those the KPL puts into CloudWatch (``RequestTime``; its documentation prints them as
"Request Time"), so dashboards and alarms built on KPL metrics keep working.  A level filters which
metrics exist (``summary``: UserRecordsPut, KinesisRecordsPut, ErrorsByCode, AllErrors,
UserRecordExpired, BufferingTime; ``detailed``: all); a granularity says how far down each is broken
out: ``global`` (no dimension), ``stream`` (also per StreamName) or ``shard`` (also per StreamName and
ShardId).  Stream-level metrics (UserRecordsReceived, UserRecordsPending, the per-request ones) never
go below the stream.

The producer summarises per request and per shard before calling in here (:class:`RequestSummary`):
nothing is recorded per user record.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from kpl.accumulator import ARRIVAL, KinesisRecord
from kpl.cloudwatch import Dimensions, MetricsRegistry

USER_RECORDS_RECEIVED = "UserRecordsReceived"
USER_RECORDS_PENDING = "UserRecordsPending"
USER_RECORDS_PUT = "UserRecordsPut"
USER_RECORDS_DATA_PUT = "UserRecordsDataPut"
KINESIS_RECORDS_PUT = "KinesisRecordsPut"
KINESIS_RECORDS_DATA_PUT = "KinesisRecordsDataPut"
ERRORS_BY_CODE = "ErrorsByCode"
ALL_ERRORS = "AllErrors"
RETRIES_PER_RECORD = "RetriesPerRecord"
USER_RECORD_EXPIRED = "UserRecordExpired"
BUFFERING_TIME = "BufferingTime"
REQUEST_TIME = "RequestTime"
USER_RECORDS_PER_KINESIS_RECORD = "UserRecordsPerKinesisRecord"
KINESIS_RECORDS_PER_REQUEST = "KinesisRecordsPerPutRecordsRequest"
USER_RECORDS_PER_REQUEST = "UserRecordsPerPutRecordsRequest"

_SUMMARY, _DETAILED = 1, 2
LEVELS = {"none": 0, "summary": _SUMMARY, "detailed": _DETAILED}
GRANULARITIES = {"global": 0, "stream": 1, "shard": 2}

METRIC_LEVELS = {
    USER_RECORDS_RECEIVED: _DETAILED,
    USER_RECORDS_PENDING: _DETAILED,
    USER_RECORDS_PUT: _SUMMARY,
    USER_RECORDS_DATA_PUT: _DETAILED,
    KINESIS_RECORDS_PUT: _SUMMARY,
    KINESIS_RECORDS_DATA_PUT: _DETAILED,
    ERRORS_BY_CODE: _SUMMARY,
    ALL_ERRORS: _SUMMARY,
    RETRIES_PER_RECORD: _DETAILED,
    USER_RECORD_EXPIRED: _SUMMARY,
    BUFFERING_TIME: _SUMMARY,
    REQUEST_TIME: _DETAILED,
    USER_RECORDS_PER_KINESIS_RECORD: _DETAILED,
    KINESIS_RECORDS_PER_REQUEST: _DETAILED,
    USER_RECORDS_PER_REQUEST: _DETAILED,
}

_COUNT, _BYTES, _MILLISECONDS = "Count", "Bytes", "Milliseconds"


class ProducerMetrics:
    """Summaries from the producer into a :class:`MetricsRegistry`, filtered by level and granularity."""

    def __init__(self, level: str = "detailed", granularity: str = "shard", registry: MetricsRegistry | None = None):
        if level not in LEVELS:
            raise ValueError(f"metrics level must be one of {', '.join(LEVELS)}, got {level!r}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"metrics granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
        self.registry = registry if registry is not None else MetricsRegistry()
        self.level = level
        self.granularity = granularity
        self.enabled = LEVELS[level] > 0
        self._level = LEVELS[level]
        self._depth = GRANULARITIES[granularity]
        self._dimension_sets: dict[tuple[str | None, str | None], tuple[Dimensions, ...]] = {}

    def _dimensions(self, stream: str | None, shard: str | None) -> tuple[Dimensions, ...]:
        key = (stream, shard)
        sets = self._dimension_sets.get(key)
        if sets is None:
            levels: list[Dimensions] = [()]
            if stream is not None and self._depth >= 1:
                levels.append((("StreamName", stream),))
                if shard is not None and self._depth >= 2:
                    levels.append((("StreamName", stream), ("ShardId", shard)))
            sets = self._dimension_sets[key] = tuple(levels)
        return sets

    def _emit(
        self, name: str, unit: str, stats: tuple[float, float, float, float], stream: str | None = None,
        shard: str | None = None, *, extra: Dimensions = (),
    ) -> None:
        """Record (count, sum, min, max) at every dimension level the granularity allows."""
        count, total, minimum, maximum = stats
        if METRIC_LEVELS[name] > self._level or count <= 0:
            return
        put = self.registry.put_stats
        for dims in self._dimensions(stream, shard):
            put(name, count, total, minimum, maximum, unit=unit, dims=dims + extra)

    # --- what the producer reports ----------------------------------------------------------------

    def received(self, stream: str, count: int) -> None:
        self._emit(USER_RECORDS_RECEIVED, _COUNT, (count, count, 1, 1), stream)

    def pending(self, stream: str | None, count: int) -> None:
        self._emit(USER_RECORDS_PENDING, _COUNT, (1, count, count, count), stream)

    def request(self, stream: str, duration_ms: float, kinesis_records: int, user_records: int) -> None:
        self._emit(REQUEST_TIME, _MILLISECONDS, (1, duration_ms, duration_ms, duration_ms), stream)
        self._emit(KINESIS_RECORDS_PER_REQUEST, _COUNT, (1, kinesis_records, kinesis_records, kinesis_records), stream)
        self._emit(USER_RECORDS_PER_REQUEST, _COUNT, (1, user_records, user_records, user_records), stream)

    def kinesis_records(
        self, stream: str, shard: str | None, *, succeeded: int, failed: int, data_bytes: int,
        user_per_record: tuple[int, int, int],
    ) -> None:
        """Outcome of the Kinesis records of one shard in one response (1 = put, 0 = failed)."""
        total = succeeded + failed
        self._emit(KINESIS_RECORDS_PUT, _COUNT, (total, succeeded, 0 if failed else 1, 1 if succeeded else 0),
                   stream, shard)
        if succeeded:
            average = data_bytes / succeeded
            self._emit(KINESIS_RECORDS_DATA_PUT, _BYTES, (succeeded, data_bytes, average, average), stream, shard)
            total_users, fewest, most = user_per_record
            self._emit(USER_RECORDS_PER_KINESIS_RECORD, _COUNT, (succeeded, total_users, fewest, most), stream, shard)

    def user_records(self, stream: str, shard: str | None, succeeded: int, failed: int, data_bytes: int) -> None:
        """User records that finished (1 = put, 0 = failed for good).  Data sizes are per-batch averages."""
        total = succeeded + failed
        self._emit(USER_RECORDS_PUT, _COUNT, (total, succeeded, 0 if failed else 1, 1 if succeeded else 0),
                   stream, shard)
        if succeeded:
            average = data_bytes / succeeded
            self._emit(USER_RECORDS_DATA_PUT, _BYTES, (succeeded, data_bytes, average, average), stream, shard)

    def errors(self, stream: str, shard: str | None, code: str, count: int) -> None:
        self._emit(ERRORS_BY_CODE, _COUNT, (count, count, 1, 1), stream, shard, extra=(("ErrorCode", code),))
        self._emit(ALL_ERRORS, _COUNT, (count, count, 1, 1), stream, shard)

    def retries(self, stream: str, shard: str | None, *, count: int, total: int, minimum: int, maximum: int) -> None:
        """Retries of delivered user records (attempts beyond the first)."""
        self._emit(RETRIES_PER_RECORD, _COUNT, (count, total, minimum, maximum), stream, shard)

    def expired(self, stream: str, count: int) -> None:
        self._emit(USER_RECORD_EXPIRED, _COUNT, (count, count, 1, 1), stream)

    def buffering(self, stream: str, shard: str | None, *, count: int, total_ms: float, min_ms: float,
                  max_ms: float) -> None:
        self._emit(BUFFERING_TIME, _MILLISECONDS, (count, total_ms, min_ms, max_ms), stream, shard)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return self.registry.snapshot()


_arrival = itemgetter(ARRIVAL)


class _Spread:
    """A statistic set being summed: how many samples, their total, the least and the most."""

    __slots__ = ("count", "least", "most", "total")

    def __init__(self) -> None:
        self.count: float = 0
        self.total: float = 0
        self.least: float = float("inf")
        self.most: float = 0

    def add(self, count: float, total: float, least: float, most: float) -> None:
        """``count`` samples adding up to ``total``, the least and the most of them."""
        self.count += count
        self.total += total
        self.least = min(self.least, least)
        self.most = max(self.most, most)


class _ShardReport:
    """What one response said about one shard, summed up for the metrics."""

    __slots__ = ("buffered", "errors", "kinesis_bytes", "kinesis_failed", "kinesis_put", "retries", "user_bytes",
                 "user_put", "users_per_record")

    def __init__(self) -> None:
        self.kinesis_put = 0
        self.kinesis_failed = 0
        self.kinesis_bytes = 0
        #: user records per Kinesis record put.
        self.users_per_record = _Spread()
        self.user_put = 0
        self.user_bytes = 0
        #: seconds from arrival to first send, per user record.
        self.buffered = _Spread()
        #: retries of each user record delivered.
        self.retries = _Spread()
        self.errors: dict[str, int] = {}

    def put(self, kr: KinesisRecord, start: float) -> None:
        users = len(kr.records)
        self.kinesis_put += 1
        self.kinesis_bytes += kr.size
        self.users_per_record.add(1, users, users, users)
        if len(kr.log) == 1:  # first attempt: how long its records waited
            self.buffered.add(users, users * start - sum(map(_arrival, kr.records)),
                              start - kr.records[-1][ARRIVAL], start - kr.oldest_arrival)

    def delivered(self, kr: KinesisRecord) -> None:
        users = len(kr.records)
        self.user_put += users
        self.user_bytes += kr.user_bytes
        retries = len(kr.log) - 1
        self.retries.add(users, users * retries, retries, retries)

    def emit(self, metrics: ProducerMetrics, stream: str, shard_id: str | None) -> None:
        per_record = self.users_per_record
        fewest = int(per_record.least) if per_record.count else 0
        metrics.kinesis_records(stream, shard_id, succeeded=self.kinesis_put, failed=self.kinesis_failed,
                                data_bytes=self.kinesis_bytes,
                                user_per_record=(int(per_record.total), fewest, int(per_record.most)))
        if self.user_put:
            metrics.user_records(stream, shard_id, self.user_put, 0, self.user_bytes)
            retries = self.retries
            metrics.retries(stream, shard_id, count=int(retries.count), total=int(retries.total),
                            minimum=int(retries.least), maximum=int(retries.most))
        buffered = self.buffered
        if buffered.count:
            metrics.buffering(stream, shard_id, count=int(buffered.count), total_ms=buffered.total * 1000.0,
                              min_ms=buffered.least * 1000.0, max_ms=buffered.most * 1000.0)
        for code, failures in self.errors.items():
            metrics.errors(stream, shard_id, code, failures)


class RequestSummary:
    """The KPL's per-request metrics of one PutRecords response, summed up per shard, then emitted."""

    __slots__ = ("_reports", "_start")

    def __init__(self, start: float) -> None:
        self._start = start
        self._reports: dict[str | None, _ShardReport] = {}

    def _report(self, shard_id: str | None) -> _ShardReport:
        report = self._reports.get(shard_id)
        if report is None:
            report = self._reports[shard_id] = _ShardReport()
        return report

    def delivered(self, krs: Iterable[KinesisRecord]) -> None:
        """Kinesis records put, whose user records are delivered."""
        start = self._start
        for kr in krs:
            report = self._report(kr.shard_id)
            report.put(kr, start)
            report.delivered(kr)

    def put(self, krs: Iterable[KinesisRecord]) -> None:
        """Kinesis records put, whose user records are reported once checked (the wrong-shard check)."""
        start = self._start
        for kr in krs:
            self._report(kr.shard_id).put(kr, start)

    def failed(self, kr: KinesisRecord, code: str) -> None:
        report = self._report(kr.shard_id)
        report.kinesis_failed += 1
        report.errors[code] = report.errors.get(code, 0) + 1

    def emit(self, metrics: ProducerMetrics, stream: str) -> None:
        for shard_id, report in self._reports.items():
            report.emit(metrics, stream, shard_id)
