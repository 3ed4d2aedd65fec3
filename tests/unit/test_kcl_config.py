"""WorkerConfig defaults and validation, and KCL/MultiLangDaemon properties files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kcl.config import InitialPosition, MetricsLevel, RetrievalMode, WorkerConfig, property_key
from kcl.properties import IGNORED_KCL_KEYS, load_properties
from kpl.errors import ConfigurationError
from kpl.logs import EVENT_ATTRIBUTE
from kpl.properties import parse_properties


def test_defaults_follow_the_kcl() -> None:
    config = WorkerConfig()
    assert config.failover_time_ms == 10_000
    assert config.renewal_interval == pytest.approx(10 / 3 - 0.025)
    assert config.assignment_interval == pytest.approx(20.05)
    assert config.max_records == 10_000
    assert config.idle_time_between_reads_ms == 1_500
    assert config.initial_position_in_stream is InitialPosition.LATEST
    assert config.shard_sync_interval_ms == 60_000
    assert config.parent_shard_poll_interval_ms == 10_000
    assert config.max_pending_process_records_input == 3
    assert config.max_cache_byte_size == 8 * 1024 * 1024
    assert config.metrics_level is MetricsLevel.DETAILED
    assert config.dead_letter is None


def test_scan_interval_defaults_to_the_taker_interval_as_in_the_kcl() -> None:
    config = WorkerConfig(failover_time_ms=3000)
    assert config.scan_interval == config.assignment_interval == pytest.approx(2 * 3.025)
    assert WorkerConfig(lease_scan_interval_ms=700).scan_interval == 0.7


def test_worker_ids_are_unique_per_config() -> None:
    assert WorkerConfig().worker_id != WorkerConfig().worker_id


def test_property_keys_are_the_kcl_names() -> None:
    assert property_key("failover_time_ms") == "failoverTimeMillis"
    assert property_key("idle_time_between_reads_ms") == "idleTimeBetweenReadsInMillis"
    assert property_key("initial_position_in_stream") == "initialPositionInStream"
    assert property_key("initial_timestamp") == "initialPositionInStreamExtended"
    assert property_key("dynamo_db_endpoint") == "dynamoDBEndpoint"


@pytest.mark.parametrize(("changes", "named"), [
    ({"failover_time_ms": 0}, "failoverTimeMillis"),
    ({"failover_time_ms": 100}, "failoverTimeMillis"),
    ({"max_records": 10_001}, "maxRecords"),
    ({"idle_time_between_reads_ms": 199}, "idleTimeBetweenReadsInMillis"),
    ({"max_leases_to_steal_at_one_time": 0}, "maxLeasesToStealAtOneTime"),
    ({"worker_id": ""}, "workerId"),
    ({"table_name": "x"}, "tableName"),
    ({"initial_position_in_stream": InitialPosition.AT_TIMESTAMP}, "initialPositionInStreamExtended"),
    ({"initial_timestamp": datetime(2024, 1, 1, tzinfo=UTC)}, "initialPositionInStreamExtended"),
    ({"task_backoff_time_ms": 60_000}, "taskBackoffTimeMillis"),
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
    assert [(key, value) for _, key, value in parse_properties(text)] == [
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
    assert set(loaded.ignored_keys) == {"processingLanguage", "AwsCredentialsProvider"}
    # executableName runs in MultiLang mode; next to a processor it is reported as without effect.
    assert set(loaded.keys_without_effect(native=True)) == {"executableName", "processingLanguage",
                                                            "AwsCredentialsProvider"}
    assert loaded.directory == tmp_path.resolve()
    config = loaded.worker_config()
    assert config.executable_name == "sample_kclpy_app.py"
    assert config.timeout_in_seconds is None
    assert config.initial_position_in_stream is InitialPosition.TRIM_HORIZON
    assert config.region_name == "eu-west-1"
    assert config.failover_time_ms == 20_000
    assert config.max_records == 500
    assert config.idle_time_between_reads_ms == 250
    assert config.cleanup_leases_upon_shard_completion is False
    assert config.retrieval_mode is RetrievalMode.FANOUT
    assert config.metrics_level is MetricsLevel.SUMMARY


def test_initial_position_extended_means_at_timestamp(tmp_path: Path) -> None:
    config = load_properties(write(tmp_path, "initialPositionInStreamExtended = 1700000000\n")).worker_config()
    assert config.initial_position_in_stream is InitialPosition.AT_TIMESTAMP
    assert config.initial_timestamp == datetime.fromtimestamp(1_700_000_000, UTC)


def test_stream_arn_gives_the_stream_name_and_is_kept_whole(tmp_path: Path) -> None:
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"
    loaded = load_properties(write(tmp_path, f"streamName = other\nstreamArn = {arn}\n"))
    assert loaded.stream_name == "clicks"
    assert loaded.stream_arn == arn and loaded.stream == arn  # the ARN wins, as in the KCL


#: Every key of the KCL 3.5 MultiLangDaemon (MultiLangDaemonConfiguration, its delegated config beans,
#: and MultiLangDaemonConfig's own), with a value of the kind it takes.
KCL3_KEYS = {
    "executableName": "app.py", "processingLanguage": "python/3.11", "maxActiveThreads": "-1",
    "streamName": "s", "applicationName": "a", "tableName": "lease-table", "workerId": "w1",
    "AwsCredentialsProvider": "DefaultCredentialsProvider",
    "AwsCredentialsProviderDynamoDB": "DefaultCredentialsProvider",
    "AwsCredentialsProviderCloudWatch": "DefaultCredentialsProvider",
    "regionName": "us-east-1", "kinesisEndpoint": "https://kinesis.us-east-1.amazonaws.com",
    "dynamoDBEndpoint": "https://dynamodb.us-east-1.amazonaws.com",
    "failoverTimeMillis": "10000", "leaseAssignmentIntervalMillis": "20000", "enablePriorityLeaseAssignment": "true",
    "leaseTableDeletionProtectionEnabled": "true", "leaseTablePitrEnabled": "true", "shardSyncIntervalMillis": "60000",
    "cleanupLeasesUponShardCompletion": "true", "ignoreUnexpectedChildShards": "false", "maxLeasesForWorker": "100",
    "maxLeasesToStealAtOneTime": "1", "initialLeaseTableReadCapacity": "10", "initialLeaseTableWriteCapacity": "10",
    "leaseTableScanTotalSegments": "4", "initialPositionInStream": "TRIM_HORIZON", "maxLeaseRenewalThreads": "20",
    "listShardsBackoffTimeInMillis": "1500", "maxListShardsRetryAttempts": "50",
    "callProcessRecordsEvenForEmptyRecordList": "false", "parentShardPollIntervalMillis": "10000",
    "shardPrioritization": "NoOpShardPrioritization", "skipShardSyncAtWorkerInitializationIfLeasesExist": "false",
    "schedulerInitializationBackoffTimeMillis": "1000", "clientVersionConfig": "CLIENT_VERSION_CONFIG_3x",
    "migrateAllEntitiesToLeaseTable": "false", "tableMigrationCompleteBakeTimeSeconds": "86400",
    "taskBackoffTimeMillis": "500", "metricsBufferTimeMillis": "10000", "metricsMaxQueueSize": "10000",
    "metricsLevel": "DETAILED", "logWarningForTaskAfterMillis": "60000", "metricsEnabledDimensions": "Operation",
    "retrievalMode": "POLLING", "retryGetRecordsInSeconds": "10", "maxGetRecordsThreadPool": "4",
    "idleTimeBetweenReadsInMillis": "1000", "millisBehindLatestThresholdForReducedTps": "0", "maxRecords": "10000",
    "gracefulLeaseHandoffTimeoutMillis": "30000", "isGracefulLeaseHandoffEnabled": "true",
    "inMemoryWorkerMetricsCaptureFrequencyMillis": "1000", "workerMetricsReporterFreqInMillis": "30000",
    "noOfPersistedMetricsPerWorkerMetrics": "10", "disableWorkerMetrics": "false", "maxThroughputPerHostKBps": "100.5",
    "dampeningPercentage": "60", "reBalanceThresholdPercentage": "10", "allowThroughputOvershoot": "true",
    "varianceBalancingFrequency": "3", "workerMetricsEMAAlpha": "0.5", "staleWorkerMetricsEntryCleanupDuration": "P1D",
    "workerMetricsTableName": "wm", "workerMetricsBillingMode": "PAY_PER_REQUEST", "workerMetricsReadCapacity": "10",
    "workerMetricsWriteCapacity": "10", "workerMetricsPointInTimeRecoveryEnabled": "false",
    "workerMetricsDeletionProtectionEnabled": "false", "workerMetricsTags": "team=a",
    "coordinatorStateTableName": "cs", "coordinatorStateBillingMode": "PROVISIONED",
    "coordinatorStateReadCapacity": "10", "coordinatorStateWriteCapacity": "10",
    "coordinatorStatePointInTimeRecoveryEnabled": "false", "coordinatorStateDeletionProtectionEnabled": "false",
    "coordinatorStateTags": "team=a", "validateSequenceNumberBeforeCheckpointing": "true",
    "shutdownGraceMillis": "5000", "timeoutInSeconds": "60",
    "fanoutConfig.consumerName": "c", "fanoutConfig.maxDescribeStreamSummaryRetries": "10",
    "fanoutConfig.maxDescribeStreamConsumerRetries": "10", "fanoutConfig.registerStreamConsumerRetries": "10",
    "fanoutConfig.retryBackoffMillis": "1000",
}


def test_every_kcl_3_multilang_key_is_accepted(tmp_path: Path) -> None:
    text = "".join(f"{key} = {value}\n" for key, value in KCL3_KEYS.items())
    loaded = load_properties(write(tmp_path, text))
    config = loaded.worker_config()
    assert config.lease_table_deletion_protection_enabled is True
    assert config.lease_table_pitr_enabled is True
    assert config.consumer_name == "c"
    tables = {f"{prefix}{suffix}" for prefix in ("coordinatorState", "workerMetrics") for suffix in (
        "TableName", "BillingMode", "ReadCapacity", "WriteCapacity", "PointInTimeRecoveryEnabled",
        "DeletionProtectionEnabled", "Tags")}
    assert len(tables) == 14 and tables <= set(KCL3_KEYS)
    assert tables <= set(loaded.ignored_keys)
    honoured = {"streamName", "applicationName", "leaseTableDeletionProtectionEnabled", "leaseTablePitrEnabled",
                "failoverTimeMillis", "maxRecords", "fanoutConfig.consumerName", "regionName", "executableName",
                "timeoutInSeconds", "shutdownGraceMillis"}
    assert not honoured & set(loaded.ignored_keys)
    assert config.executable_name == "app.py" and config.timeout_in_seconds == 60
    assert config.graceful_shutdown_timeout_ms == 5000


def test_multilang_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"timeoutInSeconds: 0 is outside the valid range 1\.\."):
        load_properties(write(tmp_path, "timeoutInSeconds = 0\n"))
    with pytest.raises(ConfigurationError, match=r"executableName.* must not be empty"):
        load_properties(write(tmp_path, "executableName =\n"))


def test_aliases_and_default_retrieval_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_properties(write(tmp_path, "workerIdentifier = w7\nfanoutConfig.consumerArn = arn:x\n"
                                             "retrievalMode = DEFAULT\n")).worker_config()
    assert config.worker_id == "w7" and config.consumer_arn == "arn:x"
    assert config.retrieval_mode is RetrievalMode.POLLING
    with caplog.at_level("WARNING", logger="kpl.properties"):
        config = load_properties(write(tmp_path, "workerId = a\nworkerIdentifier = b\n")).worker_config()
    assert config.worker_id == "b", "a key and its alias are one setting: the last wins"
    [warning] = set_twice_warnings(caplog)
    assert (warning["key"], warning["earlier_key"], warning["lines"]) == ("workerIdentifier", "workerId", [1, 2])


def test_an_assume_role_credentials_provider_names_the_kinesis_role(tmp_path: Path) -> None:
    role = "arn:aws:iam::111122223333:role/reader"
    config = load_properties(write(tmp_path, f"AWSCredentialsProvider = StsAssumeRoleCredentialsProvider|{role}|"
                                             "sess|endpointRegion=us-east-1|externalId=ext\n")).worker_config()
    assert (config.kinesis_role_arn, config.kinesis_role_session_name, config.kinesis_role_external_id) == (
        role, "sess", "ext")
    client = config.kinesis_client_config()
    assert client.assume_role_arn == role and client.assume_role_external_id == "ext"
    config = load_properties(write(tmp_path, f"AwsCredentialsProvider = "
                                             f"software.amazon.kinesis.multilang.auth.KclStsAssumeRoleCredentialsProvider"
                                             f"|{role}\n")).worker_config()
    assert config.kinesis_role_arn == role and config.kinesis_role_session_name == "kcl-worker"


@pytest.mark.parametrize(("line", "message"), [
    ("AwsCredentialsProvider = StsAssumeRoleCredentialsProvider", "needs a role ARN"),
    ("AwsCredentialsProvider = StsAssumeRoleCredentialsProvider|not-a-role|s", "is not an IAM role ARN"),
    ("AwsCredentialsProviderDynamoDB = StsAssumeRoleCredentialsProvider|arn:aws:iam::111122223333:role/r|s",
     "a role for the lease table or metrics is not supported"),
])
def test_unusable_credentials_providers_are_clear_errors(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_properties(write(tmp_path, line + "\n"))


def test_unknown_key_is_an_error_naming_it_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"app.properties:2: unknown setting 'failoverTimeMilis'.*"
                                                 r"did you mean 'failoverTimeMillis'"):
        load_properties(write(tmp_path, "maxRecords = 10\nfailoverTimeMilis = 5000\n"))


@pytest.mark.parametrize(("line", "message"), [
    ("maxRecords = many", "maxRecords: expected an integer"),
    ("maxRecords = 500;", "maxRecords: expected an integer, got '500;'"),  # no KPL-style leniency for ;
    ("maxRecords = 20000", "maxRecords"),
    ("cleanupLeasesUponShardCompletion = yes", "cleanupLeasesUponShardCompletion: expected true or false, got 'yes'"),
    ("initialPositionInStream = EARLIEST", "initialPositionInStream: 'EARLIEST' is not one of LATEST, TRIM_HORIZON"),
    ("initialPositionInStreamExtended = soon", "epoch seconds"),
    ("streamArn = clicks", "not a Kinesis stream ARN"),
    ("idleTimeBetweenReadsInMillis = 50", "idleTimeBetweenReadsInMillis"),
])
def test_invalid_values_are_errors_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_properties(write(tmp_path, line + "\n"))


def set_twice_warnings(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [getattr(record, EVENT_ATTRIBUTE) for record in caplog.records
            if record.getMessage().startswith("properties key set twice; the last value wins")]


@pytest.mark.parametrize(("text", "expected"), [
    # (field, its value, the earlier key, the later key, their lines)
    ("maxRecords = 1\nmaxRecords = 2\n", ("max_records", 2, "maxRecords", "maxRecords", [1, 2])),
    # an alias and its key are one setting: the last of them wins, as Java's Properties would have it
    ("workerIdentifier = b\n\nworkerId = a\n", ("worker_id", "a", "workerIdentifier", "workerId", [1, 3])),
    ("gracefulShutdownTimeoutMillis = 1000\nshutdownGraceMillis = 2000\n",
     ("graceful_shutdown_timeout_ms", 2000, "gracefulShutdownTimeoutMillis", "shutdownGraceMillis", [1, 2])),
    # the value of the entry that lost is not even read (as in Java): no error for it
    ("maxRecords = many\nmaxRecords = 7\n", ("max_records", 7, "maxRecords", "maxRecords", [1, 2])),
])
def test_duplicate_keys_take_the_last_value_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, expected: tuple[object, ...]) -> None:
    field, value, earlier_key, key, lines = expected
    path = write(tmp_path, text)
    with caplog.at_level("WARNING", logger="kpl.properties"):
        loaded = load_properties(path)
    assert loaded.settings[str(field)] == value
    [warning] = set_twice_warnings(caplog)
    assert (warning["earlier_key"], warning["key"], warning["lines"], warning["file"]) == (
        earlier_key, key, lines, str(path))


def test_a_target_and_a_credentials_provider_given_twice_take_the_last_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    role = "arn:aws:iam::111122223333:role/reader"
    with caplog.at_level("WARNING", logger="kpl.properties"):
        loaded = load_properties(write(tmp_path, f"streamName = a\nstreamName = b\n"
                                                 f"AwsCredentialsProvider = StsAssumeRoleCredentialsProvider|{role}\n"
                                                 "AWSCredentialsProvider = DefaultCredentialsProvider\n"))
    assert loaded.stream_name == "b"
    assert "kinesis_role_arn" not in loaded.settings, "the later default chain replaces the role"
    assert loaded.ignored_keys == ("AwsCredentialsProvider",)
    assert [warning["lines"] for warning in set_twice_warnings(caplog)] == [[1, 2], [3, 4]]


def test_a_bom_windows_line_ends_and_escapes_load(tmp_path: Path) -> None:
    path = tmp_path / "app.properties"
    path.write_bytes(b"\xef\xbb\xbfapplicationName = caf\\u00e9\r\nstreamName = clicks;\r\nworkerId = w\\:1\r\n")
    loaded = load_properties(path)
    assert (loaded.application_name, loaded.stream_name) == ("caf\u00e9", "clicks;")
    assert loaded.settings["worker_id"] == "w:1"


def test_a_malformed_unicode_escape_names_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"app.properties:2: malformed \\uXXXX escape"):
        load_properties(write(tmp_path, "maxRecords = 1\nworkerId = \\u12g4\n"))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read properties file"):
        load_properties(tmp_path / "absent.properties")


def test_every_field_except_callbacks_has_a_property_key() -> None:
    from dataclasses import fields

    keys = {property_key(item.name) for item in fields(WorkerConfig)
            if item.name != "dead_letter" and not item.name.startswith("kinesis_role")}
    assert not keys & IGNORED_KCL_KEYS


def test_metrics_port_and_address_keys(tmp_path: Path) -> None:
    config = load_properties(write(tmp_path, "metricsPort = 9102\nmetricsAddress = 0.0.0.0\n")).worker_config()
    assert (config.metrics_port, config.metrics_address) == (9102, "0.0.0.0")
    assert WorkerConfig().metrics_port is None  # nothing served unless asked
    with pytest.raises(ConfigurationError, match=r"metrics_address \(metricsAddress\) needs a port: set metrics_port"):
        load_properties(write(tmp_path, "metricsAddress = 0.0.0.0\n")).worker_config()
    with pytest.raises(ConfigurationError, match="70000 is outside the range 0-65535"):
        load_properties(write(tmp_path, "metricsPort = 70000\n")).worker_config()
    with pytest.raises(ConfigurationError, match="'not an address!' is not an IP address"):
        WorkerConfig(metrics_port=0, metrics_address="not an address!")
