"""KPL metric names, levels and granularities; results and their attempts."""

from __future__ import annotations

import pytest

from kpl import Attempt, RecordError, RecordFailedError, RecordResult, UserRecord
from kpl.accumulator import NO_LOG, KinesisRecord, PendingRecord
from kpl.metrics import METRIC_LEVELS, ProducerMetrics, RequestSummary
from kpl.records import attempts_from_log

KPL_METRIC_NAMES = {
    "UserRecordsReceived", "UserRecordsPending", "UserRecordsPut", "UserRecordsDataPut", "KinesisRecordsPut",
    "KinesisRecordsDataPut", "ErrorsByCode", "AllErrors", "RetriesPerRecord", "UserRecordExpired", "BufferingTime",
    "RequestTime", "UserRecordsPerKinesisRecord", "KinesisRecordsPerPutRecordsRequest",
    "UserRecordsPerPutRecordsRequest",
}


def test_the_kpl_metric_set() -> None:
    assert set(METRIC_LEVELS) == KPL_METRIC_NAMES


def report(metrics: ProducerMetrics) -> None:
    metrics.request("s", 12.0, kinesis_records=2, user_records=50)
    metrics.kinesis_records("s", "shard-1", succeeded=2, failed=1, data_bytes=2000, user_per_record=(50, 20, 30))
    metrics.user_records("s", "shard-1", 50, 0, 5000)
    metrics.errors("s", "shard-1", "ProvisionedThroughputExceededException", 1)
    metrics.buffering("s", "shard-1", count=50, total_ms=500.0, min_ms=1.0, max_ms=20.0)


def test_shard_granularity_reports_every_level() -> None:
    metrics = ProducerMetrics("detailed", "shard")
    report(metrics)
    snapshot = metrics.snapshot()
    put = snapshot["KinesisRecordsPut"]
    assert {tuple(sorted(d["dimensions"].items())) for d in put} == {
        (), (("StreamName", "s"),), (("ShardId", "shard-1"), ("StreamName", "s"))}
    assert all((d["count"], d["sum"], d["min"], d["max"]) == (3, 2, 0, 1) for d in put)
    errors = snapshot["ErrorsByCode"]
    assert all(d["dimensions"]["ErrorCode"] == "ProvisionedThroughputExceededException" for d in errors)
    # Request-level metrics stop at the stream.
    assert {tuple(d["dimensions"].items()) for d in snapshot["RequestTime"]} == {(), (("StreamName", "s"),)}


def test_granularity_and_level_filter() -> None:
    metrics = ProducerMetrics("summary", "global")
    report(metrics)
    snapshot = metrics.snapshot()
    assert set(snapshot) == {"KinesisRecordsPut", "UserRecordsPut", "ErrorsByCode", "AllErrors", "BufferingTime"}
    assert all(d["dimensions"] in ({}, {"ErrorCode": "ProvisionedThroughputExceededException"})
               for entries in snapshot.values() for d in entries)


def test_level_none_records_nothing() -> None:
    metrics = ProducerMetrics("none", "shard")
    assert not metrics.enabled
    report(metrics)
    assert metrics.snapshot() == {}


def test_bad_level_or_granularity() -> None:
    with pytest.raises(ValueError, match="level"):
        ProducerMetrics("verbose", "shard")
    with pytest.raises(ValueError, match="granularity"):
        ProducerMetrics("summary", "region")


def test_attempts_measure_delay_from_arrival_then_from_the_previous_attempt() -> None:
    log = ((10.5, 10.7, "InternalFailure", "boom"), (11.0, 11.1, None, None))
    assert attempts_from_log(10.0, log) == (
        Attempt(pytest.approx(0.5), pytest.approx(0.2), "InternalFailure", "boom"),  # type: ignore[arg-type]
        Attempt(pytest.approx(0.3), pytest.approx(0.1), None, None),  # type: ignore[arg-type]
    )
    assert [a.success for a in attempts_from_log(10.0, log)] == [False, True]


def test_a_failed_result_raises_on_request() -> None:
    record = UserRecord("s", "k", None, b"d")
    failed = RecordResult(False, None, None, ((1.0, 2.0, "RequestTimeout", "slow"),), 0.5,
                          RecordError("Expired", "too late"), record, retryable=True)
    assert failed.attempts == (Attempt(0.5, 1.0, "RequestTimeout", "slow"),)
    with pytest.raises(RecordFailedError) as caught:
        failed.raise_for_error()
    assert caught.value.result is failed and "Expired: too late" in str(caught.value)
    succeeded = RecordResult(True, "shard-1", "42", (), 0.0)
    assert succeeded.raise_for_error() is succeeded


def _kinesis_record(shard_id: str, arrivals: list[float], attempts: int) -> KinesisRecord:
    records: list[PendingRecord] = [("k", None, b"data", 1, 5, arrival, NO_LOG) for arrival in arrivals]
    kr = KinesisRecord(records, [None] * len(records), {}, 20, shard_id, 1, 0.0, min(arrivals), 30.0, 5 * len(records))
    kr.log = [(0.0, 0.0, "ProvisionedThroughputExceededException", "slow")] * (attempts - 1) + [(1.0, 1.1, None, None)]
    return kr


def test_a_response_is_summed_up_per_shard_into_the_kpl_metrics() -> None:
    """What RequestSummary emits after a PutRecords response: records put, per Kinesis record, retries, buffering."""
    metrics = ProducerMetrics("detailed", "shard")
    summary = RequestSummary(start=1.0)
    summary.delivered([_kinesis_record("shard-1", [0.5, 0.75, 0.9], attempts=1),
                       _kinesis_record("shard-1", [0.25], attempts=3)])
    summary.failed(_kinesis_record("shard-1", [0.0], attempts=1), "InternalFailure")
    summary.emit(metrics, "s")

    def stats(name: str) -> tuple[float, float, float, float]:
        [entry] = [d for d in metrics.snapshot()[name] if d["dimensions"].get("ShardId") == "shard-1"]
        return entry["count"], entry["sum"], entry["min"], entry["max"]

    assert stats("UserRecordsPut") == (4, 4, 1, 1)  # one sample per user record: 1 put, 0 failed
    assert stats("UserRecordsDataPut") == (4, 20, 5, 5)
    assert stats("KinesisRecordsPut") == (3, 2, 0, 1)  # two put, one failed
    assert stats("UserRecordsPerKinesisRecord") == (2, 4, 1, 3)
    assert stats("RetriesPerRecord") == (4, 2, 0, 2)
    # Buffering counts first attempts only: the three records of the first Kinesis record waited 0.5,
    # 0.25 and 0.1 s before the send at 1.0.
    count, total, least, most = stats("BufferingTime")
    assert (count, least, most) == (3, pytest.approx(100.0), pytest.approx(500.0))
    assert total == pytest.approx(850.0)
    assert stats("ErrorsByCode")[1] == 1
