"""ProducerConfig: KPL names and defaults, properties files, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpl import ConfigurationError, ProducerConfig

KPL_SAMPLE = """\
# The Java KPL's own sample file (java/amazon-kinesis-producer-sample/default_config.properties), values only.
AggregationEnabled = true
AggregationMaxCount = 4294967295
AggregationMaxSize = 51200
CollectionMaxCount = 500
CollectionMaxSize = 5242880
ConnectTimeout = 6000
FailIfThrottled = false
LogLevel = info
MaxConnections = 24
MaxUserRecordSize = 1048576;
MetricsGranularity = shard
MetricsLevel = detailed
MetricsNamespace = KinesisProducerLibrary
MetricsUploadDelay = 60000
MinConnections = 1
KinesisPort = 443
RateLimit = 150
RecordMaxBufferedTime = 100
RecordTtl = 30000
RequestTimeout = 6000
VerifyCertificate = true
ThreadingModel = PER_REQUEST
#ThreadPoolSize = 0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "producer.properties"
    path.write_text(text)
    return path


def test_defaults_are_the_kpl_defaults() -> None:
    config = ProducerConfig()
    assert (config.aggregation_enabled, config.aggregation_max_count, config.aggregation_max_size) == (
        True, 4294967295, 51200)
    assert (config.collection_max_count, config.collection_max_size) == (500, 5 * 1024 * 1024)
    assert (config.record_max_buffered_time_ms, config.record_ttl_ms, config.rate_limit) == (100, 30000, 150)
    assert (config.fail_if_throttled, config.max_connections, config.request_timeout_ms) == (False, 24, 6000)
    assert (config.metrics_level, config.metrics_granularity, config.metrics_namespace,
            config.metrics_upload_delay_ms) == ("detailed", "shard", "KinesisProducerLibrary", 60000)


def test_the_kpl_sample_file_loads_unchanged(tmp_path: Path) -> None:
    config = ProducerConfig.from_properties(write(tmp_path, KPL_SAMPLE))
    assert config == ProducerConfig(
        max_user_record_size=1048576,
        ignored_settings=(("LogLevel", "info"), ("MinConnections", "1"), ("VerifyCertificate", "true"),
                          ("ThreadingModel", "PER_REQUEST")),
    )


def test_properties_values_are_applied_and_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, "RecordTtl: 60000\nAggregationEnabled=FALSE\n  RateLimit   =   80  \n! comment\n"
                           "MetricsLevel = summary\nOrderedPerShard = true\n")
    config = ProducerConfig.from_properties(path, rate_limit=90)
    assert (config.record_ttl_ms, config.aggregation_enabled, config.rate_limit) == (60000, False, 90)
    assert config.metrics_level == "summary" and config.ordered_per_shard


@pytest.mark.parametrize(("line", "fragment"), [
    ("RecordTTL = 100", "RecordTTL"),                      # unknown key (case matters, as in Java)
    ("AggregationEnabled = yes", "AggregationEnabled"),    # not a boolean
    ("CollectionMaxCount = 501", "CollectionMaxCount"),    # over the KPL's range
    ("RecordTtl = 99", "RecordTtl"),
    ("RateLimit = fast", "RateLimit"),
    ("MetricsLevel = verbose", "MetricsLevel"),
    ("MetricsNamespace = AWS/Kinesis", "MetricsNamespace"),
    ("Region = Europe", "Region"),
])
def test_bad_keys_and_values_name_the_key_and_the_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = write(tmp_path, f"# first line\n{line}\n")
    with pytest.raises(ConfigurationError) as caught:
        ProducerConfig.from_properties(path)
    message = str(caught.value)
    assert fragment in message
    assert f"{path}:2" in message


def test_legacy_endpoint_keys_and_urls() -> None:
    config = ProducerConfig.from_kpl_settings({"CustomEndpoint": "kinesis.internal", "Port": "8443"})
    assert config.kinesis_client_config().endpoint_url == "https://kinesis.internal:8443"
    url = ProducerConfig(kinesis_endpoint="http://127.0.0.1:4566").kinesis_client_config().endpoint_url
    assert url == "http://127.0.0.1:4566"
    assert ProducerConfig().kinesis_client_config().endpoint_url is None


def test_client_configs_follow_the_settings() -> None:
    config = ProducerConfig(max_connections=7, request_timeout_ms=2500, connect_timeout_ms=800, region="eu-west-1")
    data = config.kinesis_client_config()
    assert (data.max_pool_connections, data.read_timeout, data.connect_timeout, data.region) == (
        7, 2.5, 0.8, "eu-west-1")
    assert data.max_attempts == 1, "botocore must not retry PutRecords underneath the producer"


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigurationError, match="collection_max_count"):
        ProducerConfig(collection_max_count=0)
    with pytest.raises(ConfigurationError, match="aggregation_enabled"):
        ProducerConfig(aggregation_enabled="true")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a ProducerConfig setting"):
        ProducerConfig.from_kpl_settings({}, record_ttl=5)


def test_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        ProducerConfig.from_properties(tmp_path / "missing.properties")


def test_client_config_base_carries_credentials_to_every_client() -> None:
    from kpl.aws import ClientConfig, StaticCredentials

    base = ClientConfig(credentials=StaticCredentials("AKID", "secret"), assume_role_arn="arn:aws:iam::1:role/r",
                        region="eu-west-1", endpoint_url="https://kinesis.example:8443")
    config = ProducerConfig(client_config=base)
    data, control, cloudwatch = (config.kinesis_client_config(), config.control_client_config(),
                                 config.cloudwatch_client_config())
    for client in (data, control, cloudwatch):
        assert client.credentials == base.credentials
        assert client.assume_role_arn == base.assume_role_arn
        assert client.region == "eu-west-1"
    assert data.endpoint_url == control.endpoint_url == "https://kinesis.example:8443"
    assert cloudwatch.endpoint_url is None, "a Kinesis endpoint must not leak into the CloudWatch client"
    assert data.max_attempts == 1 and control.max_attempts == 3
    assert ProducerConfig(client_config=base, region="us-west-2").kinesis_client_config().region == "us-west-2"


def test_the_kpl_sample_file_loads_with_a_byte_order_mark_and_windows_line_ends(tmp_path: Path) -> None:
    # Editors on Windows save properties files as UTF-8 with a BOM and CRLF line ends.
    path = tmp_path / "producer.properties"
    path.write_bytes(b"\xef\xbb\xbf" + KPL_SAMPLE.replace("\n", "\r\n").encode())
    assert ProducerConfig.from_properties(path) == ProducerConfig.from_properties(write(tmp_path, KPL_SAMPLE))
    path.write_bytes(b"\xef\xbb\xbfRecordTtl = 60000\n")
    assert ProducerConfig.from_properties(path).record_ttl_ms == 60000, "a key on the first line, after the BOM"


def test_one_trailing_semicolon_is_dropped_from_numbers_and_booleans_only(tmp_path: Path) -> None:
    # The KPL sample's ``MaxUserRecordSize = 1048576;``: a KPL leniency, so only where ``;`` cannot be meant.
    config = ProducerConfig.from_properties(write(tmp_path, "RecordTtl = 60000 ;\nAggregationEnabled = false;\n"))
    assert (config.record_ttl_ms, config.aggregation_enabled) == (60000, False)
    config = ProducerConfig.from_properties(write(tmp_path, "MetricsNamespace = Clicks;\n"))
    assert config.metrics_namespace == "Clicks;", "a string value keeps its semicolon"
    path = write(tmp_path, "\nRecordTtl = 60000;;\n")
    with pytest.raises(ConfigurationError, match=rf"RecordTtl \({path}:2\): expected an integer, got '60000;;'"):
        ProducerConfig.from_properties(path)


@pytest.mark.parametrize(("text", "expected"), [
    # (field, its value, the earlier key, the later key, their lines)
    ("RecordTtl = 1000\n# again\nRecordTtl = 2000\n", ("record_ttl_ms", 2000, "RecordTtl", "RecordTtl", [1, 3])),
    # a key of earlier releases and its current name are one setting
    ("KinesisEndpoint = a.example\nCustomEndpoint = b.example\n",
     ("kinesis_endpoint", "b.example", "KinesisEndpoint", "CustomEndpoint", [1, 2])),
    # the overridden value is never read (as in Java): no error for it
    ("RateLimit = fast\nRateLimit = 80\n", ("rate_limit", 80, "RateLimit", "RateLimit", [1, 2])),
])
def test_a_key_set_twice_takes_the_last_value_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, expected: tuple[object, ...]) -> None:
    from kpl.logs import EVENT_ATTRIBUTE

    field, value, earlier_key, key, lines = expected
    path = write(tmp_path, text)
    with caplog.at_level("WARNING", logger="kpl.properties"):
        config = ProducerConfig.from_properties(path)
    assert getattr(config, str(field)) == value
    [warning] = [getattr(record, EVENT_ATTRIBUTE) for record in caplog.records]
    assert warning["event"] == "properties key set twice; the last value wins"
    assert (warning["earlier_key"], warning["key"], warning["lines"], warning["file"]) == (
        earlier_key, key, lines, str(path))


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "producer.properties"
    # ISO-8859-1, which Java's load(InputStream) reads; this reader says so instead of reading mojibake
    path.write_bytes(b"RecordTtl = 60000\nMetricsNamespace = caf\xe9\n")
    with pytest.raises(ConfigurationError, match=rf"{path}:2: KPL properties file is not UTF-8 text \(byte 0xe9\)"):
        ProducerConfig.from_properties(path)
