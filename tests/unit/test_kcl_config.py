"""WorkerConfig defaults and validation, and KCL/MultiLangDaemon properties files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kcl.config import (
    IGNORED_KCL_KEYS,
    InitialPosition,
    MetricsLevel,
    RetrievalMode,
    WorkerConfig,
    load_properties,
    parse_properties_text,
    property_key,
)
from kpl.errors import ConfigurationError


def test_defaults_follow_the_kcl() -> None:
    config = WorkerConfig()
    assert config.failover_time_millis == 10_000
    assert config.renewal_interval == pytest.approx(10 / 3 - 0.025)
    assert config.assignment_interval == pytest.approx(20.05)
    assert config.max_records == 10_000
    assert config.idle_time_between_reads_in_millis == 1_500
    assert config.initial_position_in_stream is InitialPosition.LATEST
    assert config.shard_sync_interval_millis == 60_000
    assert config.parent_shard_poll_interval_millis == 10_000
    assert config.max_pending_process_records_input == 3
    assert config.max_cache_byte_size == 8 * 1024 * 1024
    assert config.metrics_level is MetricsLevel.DETAILED
    assert config.dead_letter is None


def test_scan_interval_defaults_to_half_a_renewal_interval() -> None:
    config = WorkerConfig(failover_time_millis=3000)
    assert config.scan_interval == pytest.approx((1.0 - 0.025) / 2)
    assert WorkerConfig(lease_scan_interval_millis=700).scan_interval == 0.7


def test_worker_ids_are_unique_per_config() -> None:
    assert WorkerConfig().worker_id != WorkerConfig().worker_id


def test_property_keys_are_the_kcl_names() -> None:
    assert property_key("failover_time_millis") == "failoverTimeMillis"
    assert property_key("idle_time_between_reads_in_millis") == "idleTimeBetweenReadsInMillis"
    assert property_key("initial_position_in_stream") == "initialPositionInStream"
    assert property_key("initial_timestamp") == "initialPositionInStreamExtended"
    assert property_key("dynamo_db_endpoint") == "dynamoDBEndpoint"


@pytest.mark.parametrize(("changes", "named"), [
    ({"failover_time_millis": 0}, "failoverTimeMillis"),
    ({"failover_time_millis": 100}, "failoverTimeMillis"),
    ({"max_records": 10_001}, "maxRecords"),
    ({"idle_time_between_reads_in_millis": 199}, "idleTimeBetweenReadsInMillis"),
    ({"max_leases_to_steal_at_one_time": 0}, "maxLeasesToStealAtOneTime"),
    ({"worker_id": ""}, "workerId"),
    ({"table_name": "x"}, "tableName"),
    ({"initial_position_in_stream": InitialPosition.AT_TIMESTAMP}, "initialPositionInStreamExtended"),
    ({"initial_timestamp": datetime(2024, 1, 1, tzinfo=UTC)}, "initialPositionInStreamExtended"),
    ({"task_backoff_time_millis": 60_000}, "taskBackoffTimeMillis"),
])
def test_invalid_values_are_rejected_naming_the_setting(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        WorkerConfig(**changes)  # type: ignore[arg-type]


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="timezone"):
        WorkerConfig(initial_position_in_stream=InitialPosition.AT_TIMESTAMP, initial_timestamp=datetime(2024, 1, 1))


# --- properties -----------------------------------------------------------------------------------


def test_java_properties_syntax() -> None:
    text = "# comment\n! also a comment\n\na = 1\nb: two\nc three\nlong = x\\\n   y\n  spaced   =   v  \n"
    assert [(key, value) for _, key, value in parse_properties_text(text)] == [
        ("a", "1"), ("b", "two"), ("c", "three"), ("long", "xy"), ("spaced", "v"),
    ]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.properties"
    path.write_text(text)
    return path


def test_a_kclpy_properties_file_loads(tmp_path: Path) -> None:
    loaded = load_properties(write(tmp_path, """
executableName = sample_kclpy_app.py
streamName = clicks
applicationName = click-counter
processingLanguage = python/3.11
AwsCredentialsProvider = DefaultCredentialsProvider
initialPositionInStream = TRIM_HORIZON
regionName = eu-west-1
failoverTimeMillis = 20000
maxRecords = 500
idleTimeBetweenReadsInMillis = 250
cleanupLeasesUponShardCompletion = false
retrievalMode = FANOUT
metricsLevel = summary
"""))
    assert loaded.stream_name == "clicks"
    assert loaded.application_name == "click-counter"
    assert set(loaded.ignored_keys) == {"executableName", "processingLanguage", "AwsCredentialsProvider"}
    config = loaded.worker_config()
    assert config.initial_position_in_stream is InitialPosition.TRIM_HORIZON
    assert config.region_name == "eu-west-1"
    assert config.failover_time_millis == 20_000
    assert config.max_records == 500
    assert config.idle_time_between_reads_in_millis == 250
    assert config.cleanup_leases_upon_shard_completion is False
    assert config.retrieval_mode is RetrievalMode.FANOUT
    assert config.metrics_level is MetricsLevel.SUMMARY


def test_initial_position_extended_means_at_timestamp(tmp_path: Path) -> None:
    config = load_properties(write(tmp_path, "initialPositionInStreamExtended = 1700000000\n")).worker_config()
    assert config.initial_position_in_stream is InitialPosition.AT_TIMESTAMP
    assert config.initial_timestamp == datetime.fromtimestamp(1_700_000_000, UTC)


def test_stream_arn_gives_the_stream_name(tmp_path: Path) -> None:
    loaded = load_properties(write(tmp_path, "streamArn = arn:aws:kinesis:us-east-1:123456789012:stream/clicks\n"))
    assert loaded.stream_name == "clicks"


def test_unknown_key_is_an_error_naming_it_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"app.properties:2: unknown setting 'failoverTimeMilis'.*"
                                                 r"did you mean 'failoverTimeMillis'"):
        load_properties(write(tmp_path, "maxRecords = 10\nfailoverTimeMilis = 5000\n"))


@pytest.mark.parametrize(("line", "message"), [
    ("maxRecords = many", "maxRecords must be an integer"),
    ("maxRecords = 20000", "maxRecords"),
    ("cleanupLeasesUponShardCompletion = yes", "cleanupLeasesUponShardCompletion must be true or false"),
    ("initialPositionInStream = EARLIEST", "initialPositionInStream must be one of LATEST, TRIM_HORIZON"),
    ("initialPositionInStreamExtended = soon", "epoch seconds"),
    ("streamArn = clicks", "not a Kinesis stream ARN"),
    ("idleTimeBetweenReadsInMillis = 50", "idleTimeBetweenReadsInMillis"),
])
def test_invalid_values_are_errors_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_properties(write(tmp_path, line + "\n"))


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="maxRecords is set twice"):
        load_properties(write(tmp_path, "maxRecords = 1\nmaxRecords = 2\n"))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read properties file"):
        load_properties(tmp_path / "absent.properties")


def test_every_field_except_callbacks_has_a_property_key() -> None:
    from dataclasses import fields

    keys = {property_key(item.name) for item in fields(WorkerConfig) if item.name != "dead_letter"}
    assert not keys & IGNORED_KCL_KEYS
