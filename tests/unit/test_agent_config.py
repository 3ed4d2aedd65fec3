"""agent.json in the Java agent's documented style parses; broken configurations give one clear error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.config import load_config, strip_comments
from agent.config_types import Destination, FileStartPosition, LongRecordOption, PartitionKeyOption
from agent.errors import AgentConfigurationError
from agent.producer_settings import producer_config

# The shape of the Java agent's documentation and of real-world files: comments, dotted keys, numbers and
# booleans as strings, an endpoint URL whose "//" must not be taken for a comment.
JAVA_STYLE = """
/*
 * /etc/aws-kinesis/agent.json
 */
{
  "cloudwatch.emitMetrics": "true",            // strings for booleans work
  "cloudwatch.endpoint": "https://monitoring.us-west-2.amazonaws.com",
  "kinesis.endpoint": "https://kinesis.us-west-2.amazonaws.com",
  "firehose.endpoint": "https://firehose.us-west-2.amazonaws.com",
  "kinesis.region": "us-west-2",
  "checkpointFile": "/tmp/agent-checkpoints",
  "shutdownTimeoutMillis": "20000",
  "maxSendingThreads": 8,
  "flows": [
    {
      "filePattern": "/tmp/app.log*",
      "kinesisStream": "yourkinesisstream",
      "partitionKeyOption": "DETERMINISTIC",
      "maxBufferAgeMillis": "5000",              /* numbers as strings */
      "maxBufferSizeRecords": "100",
      "initialPosition": "START_OF_FILE",
      "multiLineStartPattern": "^\\\\d{4}-",
      "dataProcessingOptions": [
        { "optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG" }
      ]
    },
    {
      "filePattern": "/tmp/web/access.log",
      "deliveryStream": "yourdeliverystream"
    }
  ]
}
"""


def write(directory: Path, text: str, name: str = "agent.json") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def config_with_flow(directory: Path, **flow: Any) -> Path:
    base = {"filePattern": "/tmp/app.log", "kinesisStream": "s"}
    return write(directory, json.dumps({"flows": [{**base, **flow}]}))


def error_of(path: Path) -> str:
    with pytest.raises(AgentConfigurationError) as caught:
        load_config(path)
    return str(caught.value)


def test_java_style_configuration_parses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, JAVA_STYLE))
    assert config.emit_metrics is True
    assert config.shutdown_timeout_ms == 20_000
    assert config.max_sending_threads == 8
    assert config.kinesis_client.endpoint_url == "https://kinesis.us-west-2.amazonaws.com"
    assert config.kinesis_client.region == "us-west-2"
    assert config.firehose_client.endpoint_url == "https://firehose.us-west-2.amazonaws.com"
    assert config.cloudwatch_client.endpoint_url == "https://monitoring.us-west-2.amazonaws.com"
    kinesis, firehose = config.flows
    assert kinesis.id == "kinesis:yourkinesisstream:/tmp/app.log*"
    assert kinesis.max_buffer_age_ms == 5_000
    assert kinesis.max_buffer_size_records == 100
    assert kinesis.partition_key_option is PartitionKeyOption.DETERMINISTIC == "DETERMINISTIC"
    assert kinesis.initial_position is FileStartPosition.START_OF_FILE
    assert kinesis.multi_line_start_pattern is not None and kinesis.multi_line_start_pattern.match(b"2024-01-01")
    assert kinesis.converters is not None and kinesis.converters.names == ["LOGTOJSON"]
    assert firehose.id == "fh:yourdeliverystream:/tmp/web/access.log"
    assert firehose.destination_kind is Destination.FIREHOSE == "firehose"


def test_endpoints_given_as_host_names_become_https_urls(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"firehose.endpoint": "firehose.eu-west-1.amazonaws.com",
                                       "flows": [{"filePattern": "/a", "deliveryStream": "d"}]}))
    assert load_config(path).firehose_client.endpoint_url == "https://firehose.eu-west-1.amazonaws.com"


def test_java_defaults(tmp_path: Path) -> None:
    config = load_config(config_with_flow(tmp_path))
    assert str(config.checkpoint_file) == "/var/lib/aws-kinesis-agent/checkpoints"
    assert config.checkpoint_ttl_days == 7
    assert config.emit_metrics is True
    assert config.cloudwatch_namespace == "AWSKinesisAgent"
    assert config.metrics_interval_ms == 30_000
    assert config.shutdown_timeout_ms == 10_000
    assert config.status_period_ms == 30_000
    assert config.checkpoint_query_timeout_ms == 30_000
    (flow,) = config.flows
    assert flow.partition_key_option is PartitionKeyOption.RANDOM
    assert flow.initial_position is FileStartPosition.END_OF_FILE
    assert flow.long_record_option is LongRecordOption.TRUNCATE and not flow.drop_long_records
    assert flow.max_buffer_age_ms == 60_000
    assert flow.multi_line_flush_timeout_ms == 5_000
    assert flow.max_buffer_size_bytes == 5 * 1024 * 1024
    assert flow.max_buffer_size_records == 500
    assert flow.poll_interval_ms == 100
    assert flow.retry_initial_backoff_ms == 100
    assert flow.retry_max_backoff_ms == 10_000
    assert flow.truncated_record_terminator == b"\n"
    assert flow.aggregation_enabled is False


def test_firehose_buffer_default_is_4_mib(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"flows": [{"filePattern": "/tmp/a", "deliveryStream": "d"}]}))
    assert load_config(path).flows[0].max_buffer_size_bytes == 4 * 1024 * 1024


def test_flows_are_merged_from_agent_d(tmp_path: Path) -> None:
    path = config_with_flow(tmp_path)
    (tmp_path / "agent.d").mkdir()
    write(tmp_path / "agent.d", '// extra flows\n{"flows": [{"filePattern": "/tmp/b.log", "deliveryStream": "d"}],'
          ' "cloudwatch.emitMetrics": false}', "b.json")
    write(tmp_path / "agent.d", '{"flows": [{"filePattern": "/tmp/c.log", "kinesisStream": "c"}]}', "c.conf")
    write(tmp_path / "agent.d", "{ broken", "d.json~")  # editor backups are skipped
    config = load_config(path)
    assert [flow.id for flow in config.flows] == [
        "kinesis:s:/tmp/app.log", "fh:d:/tmp/b.log", "kinesis:c:/tmp/c.log",
    ]
    assert config.emit_metrics is True  # only flows are read from agent.d files
    assert any("only 'flows' is read" in note for note in config.ineffective)


def test_agent_d_alone_can_hold_every_flow(tmp_path: Path) -> None:
    path = write(tmp_path, "{}")
    (tmp_path / "agent.d").mkdir()
    write(tmp_path / "agent.d", '{"flows": [{"filePattern": "/tmp/b.log", "deliveryStream": "d"}]}', "b.json")
    assert len(load_config(path).flows) == 1


def test_comments_are_removed_but_strings_are_kept() -> None:
    text = '{"a": "http://x//y", /* c1 */ "b": "/* not a comment */" // c2\n}'
    assert json.loads(strip_comments(text)) == {"a": "http://x//y", "b": "/* not a comment */"}
    assert json.loads(strip_comments('{"q": "say \\"//hi\\"" // x\n}')) == {"q": 'say "//hi"'}


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    message = error_of(config_with_flow(tmp_path, maxBufferAgeMilis=1000))
    assert "unknown key 'maxBufferAgeMilis' in flows[0]" in message
    assert "did you mean 'maxBufferAgeMillis'?" in message
    assert str(tmp_path / "agent.json") in message


def test_unknown_global_key(tmp_path: Path) -> None:
    path = write(tmp_path, '{"cloudwatch.emitMetric": true, "flows": []}')
    assert "unknown key 'cloudwatch.emitMetric' (did you mean 'cloudwatch.emitMetrics'?)" in error_of(path)


@pytest.mark.parametrize(("flow", "message"), [
    ({"maxBufferAgeMillis": "soon"}, "flows[0].maxBufferAgeMillis: expected an integer, got 'soon'"),
    ({"maxBufferAgeMillis": 1.5}, "flows[0].maxBufferAgeMillis: expected an integer"),
    ({"maxBufferAgeMillis": True}, "flows[0].maxBufferAgeMillis: expected an integer"),
    ({"maxBufferAgeMillis": "500"}, "flows[0].maxBufferAgeMillis: 500 is outside the valid range 1000..900000"),
    ({"maxBufferSizeRecords": 501}, "flows[0].maxBufferSizeRecords: 501 is outside the valid range 1..500"),
    ({"maxBufferSizeBytes": 6_000_000}, "flows[0].maxBufferSizeBytes: 6000000 is outside the valid range 1..5242880"),
    ({"aggregationEnabled": "maybe"}, "flows[0].aggregationEnabled: expected true or false, got 'maybe'"),
    ({"partitionKeyOption": "HASH"}, "flows[0].partitionKeyOption: 'HASH' is not one of RANDOM, DETERMINISTIC"),
    ({"initialPosition": "START"}, "flows[0].initialPosition: 'START' is not one of END_OF_FILE, START_OF_FILE"),
    ({"multiLineStartPattern": "(unclosed"}, "flows[0].multiLineStartPattern: not a valid regular expression"),
    ({"kinesisStream": ["a"]}, "flows[0].kinesisStream: expected a string, got a list"),
    ({"deliveryStream": "d"}, "flows[0].deliveryStream: set either kinesisStream or deliveryStream"),
    ({"aggregatedRecordSizeBytes": 10}, "flows[0].aggregatedRecordSizeBytes: applies only to deliveryStream flows"),
    ({"retryInitialBackoffMillis": 20_000}, "retryInitialBackoffMillis: 20000 is larger than retryMaxBackoffMillis"),
    ({"filePattern": "relative/app.log"}, "must be an absolute path"),
    ({"filePattern": "/var/log/"}, "names a directory"),
    ({"dataProcessingOptions": [{"optionName": "LOGTOJSON"}]},
     "flows[0].dataProcessingOptions[0].logFormat: is required"),
])
def test_invalid_flow_values_name_the_key(tmp_path: Path, flow: dict[str, Any], message: str) -> None:
    assert message in error_of(config_with_flow(tmp_path, **flow))


@pytest.mark.parametrize(("document", "message"), [
    ({"flows": [{"kinesisStream": "s"}]}, "flows[0].filePattern: is required"),
    ({"flows": [{"filePattern": "/tmp/a"}]}, "flows[0].kinesisStream: is required (or deliveryStream"),
    ({"flows": []}, "no flows configured"),
    ({}, "no flows configured"),
    ({"flows": {"filePattern": "/tmp/a"}}, "flows: expected a list of flow objects"),
    ({"flows": ["x"]}, "flows[0]: expected a flow object"),
    ({"shutdownTimeoutMillis": -1, "flows": [{"filePattern": "/a", "kinesisStream": "s"}]},
     "shutdownTimeoutMillis: -1 is outside the valid range 0.."),
    ({"awsAccessKeyId": "AKIA", "flows": [{"filePattern": "/a", "deliveryStream": "s"}]},
     "awsSecretAccessKey: is required when the other"),
    ({"userDefinedCredentialsProvider.classname": "com.x.P", "flows": []}, "not supported: it loads a Java class"),
])
def test_missing_and_malformed_configuration(tmp_path: Path, document: dict[str, Any], message: str) -> None:
    assert message in error_of(write(tmp_path, json.dumps(document)))


def test_duplicate_flows_are_rejected(tmp_path: Path) -> None:
    flow = {"filePattern": "/tmp/a.log", "kinesisStream": "s"}
    path = write(tmp_path, json.dumps({"flows": [flow, flow]}))
    assert "duplicate flow 'kinesis:s:/tmp/a.log'" in error_of(path)


def test_json_syntax_error_gives_the_position_in_the_original_file(tmp_path: Path) -> None:
    path = write(tmp_path, '// header\n/* two\nlines */\n{"flows": [\n  {"filePattern": "/a" "x": 1}\n]}')
    assert re.search(r"not valid JSON at line 5, column \d+", error_of(path))


def test_unclosed_comment(tmp_path: Path) -> None:
    assert "never closed" in error_of(write(tmp_path, '{"flows": [] /* oops'))


def test_broken_agent_d_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = config_with_flow(tmp_path)
    (tmp_path / "agent.d").mkdir()
    write(tmp_path / "agent.d", '{"flows": [{"filePattern": "/tmp/b", "kinesisStream": "b", "colour": 1}]}', "b.json")
    message = error_of(path)
    assert str(tmp_path / "agent.d" / "b.json") in message and "unknown key 'colour'" in message


def test_missing_file(tmp_path: Path) -> None:
    assert "configuration file not found" in error_of(tmp_path / "nope.json")


def test_keys_without_effect_are_accepted_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "sendingThreadsMaxQueueSize": 10, "useHttpGzip": "true",
        "flows": [{"filePattern": "/a", "kinesisStream": "s", "waitOnFullPublishQueueMillis": 5000}],
    }))
    notes = load_config(path).ineffective
    assert any(note.startswith("sendingThreadsMaxQueueSize") for note in notes)
    assert any(note.startswith("flows[0].waitOnFullPublishQueueMillis") for note in notes)


def test_check_config_prints_the_effective_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, json.dumps({
        "awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "very-secret",
        "flows": [{"filePattern": "/tmp/a.log", "deliveryStream": "d", "maxBufferAgeMillis": "2000"}],
    }))
    assert main(["-c", str(path), "--check-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["awsSecretAccessKey"] == "*" * 16  # too short to show its last four characters
    assert printed["checkpointFile"] == "/var/lib/aws-kinesis-agent/checkpoints"
    assert printed["flows"][0]["id"] == "fh:d:/tmp/a.log"
    assert printed["flows"][0]["maxBufferAgeMillis"] == 2000
    assert printed["flows"][0]["maxBufferSizeBytes"] == 4 * 1024 * 1024


def test_check_config_exits_78_with_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_with_flow(tmp_path, partitionKeyOption="NONE")
    assert main(["-c", str(path), "--check-config"]) == 78
    assert "flows[0].partitionKeyOption" in capsys.readouterr().err


def test_unusable_checkpoint_directory_exits_73_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = write(tmp_path, json.dumps({
        "checkpointFile": str(blocker / "checkpoints"), "cloudwatch.emitMetrics": False,
        "flows": [{"filePattern": str(tmp_path / "a.log"), "deliveryStream": "d"}],
    }))
    command = str(Path(sys.executable).parent / "kinesis-agent")
    result = subprocess.run([command, "-c", str(path)], capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
    assert result.returncode == 73, result.stderr
    assert f"cannot create the checkpoint directory {blocker}" in result.stderr
    assert "set checkpointFile" in result.stderr


def test_missing_region_exits_78(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "checkpointFile": str(tmp_path / "checkpoints"), "cloudwatch.emitMetrics": False,
        "flows": [{"filePattern": str(tmp_path / "a.log"), "kinesisStream": "s"}],
    }))
    environment = {key: value for key, value in os.environ.items() if key not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    command = str(Path(sys.executable).parent / "kinesis-agent")
    result = subprocess.run([command, "-c", str(path)], capture_output=True, text=True, timeout=60, check=False,
                            env={**environment, "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"})
    assert result.returncode == 78, result.stderr
    assert "no AWS region configured" in result.stderr


def test_kinesis_flows_ship_with_the_configured_credentials_and_role(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "very-secret",
        "assumeRoleARN": "arn:aws:iam::123456789012:role/shipper", "assumeRoleExternalId": "ext",
        "kinesis.endpoint": "kinesis.eu-west-1.amazonaws.com", "kinesis.region": "eu-west-1",
        "flows": [{"filePattern": "/tmp/a.log", "kinesisStream": "s"}],
    }))
    config = load_config(path)
    clients = producer_config(config, config.flows[0])
    for client in (clients.kinesis_client_config(), clients.control_client_config()):
        assert client.credentials is not None and client.credentials.access_key_id == "AKIAEXAMPLE"
        assert client.assume_role_arn == "arn:aws:iam::123456789012:role/shipper"
        assert client.assume_role_external_id == "ext"
        assert client.region == "eu-west-1"
        assert client.endpoint_url == "https://kinesis.eu-west-1.amazonaws.com"
    assert clients.cloudwatch_client_config().assume_role_arn == "arn:aws:iam::123456789012:role/shipper"


# --- the Java agent's own files, and values that would only fail at start-up ------------------------


def test_empty_strings_mean_not_set_as_in_the_java_installers_file(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "kinesis.endpoint": "", "firehose.endpoint": "", "cloudwatch.endpoint": "", "kinesis.region": "",
        "awsAccessKeyId": "", "awsSecretAccessKey": "", "assumeRoleARN": "", "checkpointFile": "",
        "flows": [{"filePattern": "/tmp/app.log*", "kinesisStream": "s"}],
    }))
    config = load_config(path)
    for client in (config.kinesis_client, config.firehose_client, config.cloudwatch_client):
        assert client.endpoint_url is None and client.region is None
        assert client.uses_default_credentials
    assert str(config.checkpoint_file) == "/var/lib/aws-kinesis-agent/checkpoints"
    assert config.describe()["kinesis.endpoint"] is None
    assert "kinesis.endpoint" not in config.explicit


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    bom = b"\xef\xbb\xbf"
    path.write_bytes(bom + b'// saved by a Windows editor\n{"flows": [{"filePattern": "/a", "kinesisStream": "s"}]}')
    assert load_config(path).flows[0].destination == "s"
    (tmp_path / "agent.d").mkdir()
    (tmp_path / "agent.d" / "b.json").write_bytes(bom + b'{"flows": [{"filePattern": "/b", "kinesisStream": "b"}]}')
    assert len(load_config(path).flows) == 2


@pytest.mark.parametrize(("document", "message"), [
    ({"kinesis.endpoint": " "}, "kinesis.endpoint: ' ' is not an endpoint"),
    ({"kinesis.endpoint": "https://"}, "kinesis.endpoint: 'https://' is not an endpoint"),
    ({"firehose.endpoint": "ftp://firehose.example.com"}, "firehose.endpoint: 'ftp://firehose.example.com' is not"),
    ({"cloudwatch.endpoint": "monitoring us-east-1"}, "cloudwatch.endpoint: 'monitoring us-east-1' is not"),
    ({"kinesis.region": "us east 1"}, "kinesis.region: 'us east 1' is not a region name"),
    ({"connectionTimeoutMillis": 50}, "connectionTimeoutMillis: outside the range Kinesis flows accept"),
    ({"socketTimeoutMillis": 700_000}, "socketTimeoutMillis: outside the range Kinesis flows accept"),
    ({"cloudwatch.namespace": "AWS/Kinesis"}, "cloudwatch.namespace: 'AWS/Kinesis' is not a namespace"),
])
def test_values_that_would_stop_the_daemon_are_refused_at_load(tmp_path: Path, document: dict[str, Any],
                                                                message: str) -> None:
    path = write(tmp_path, json.dumps({**document, "flows": [{"filePattern": "/a", "kinesisStream": "s"}]}))
    assert message in error_of(path)


def test_endpoints_that_botocore_accepts_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "kinesis.endpoint": "http://127.0.0.1:4566", "firehose.endpoint": "https://[::1]:4443",
        "flows": [{"filePattern": "/a", "kinesisStream": "s"}],
    }))
    config = load_config(path)
    assert config.kinesis_client.endpoint_url == "http://127.0.0.1:4566"
    assert config.firehose_client.endpoint_url == "https://[::1]:4443"


@pytest.mark.parametrize(("flow", "message"), [
    ({"filePattern": "/var/log/[app.log"}, "flows[0].filePattern: unclosed '['"),
    ({"filePattern": "/var/log/{a,b.log"}, "flows[0].filePattern: unclosed '{'"),
    ({"multiLineStartPattern": "(?u)\\d"}, "flows[0].multiLineStartPattern: not a valid regular expression"),
    ({"orderedDelivery": "true", "partitionKeyOption": "RANDOM"}, "flows[0].partitionKeyOption: does not apply"),
    ({"kinesisStream": None, "deliveryStream": "d", "orderedDelivery": True},
     "flows[0].orderedDelivery: applies only to kinesisStream flows"),
])
def test_flow_values_that_would_fail_later_are_refused_at_load(tmp_path: Path, flow: dict[str, Any],
                                                               message: str) -> None:
    assert message in error_of(config_with_flow(tmp_path, **flow))


def test_check_config_exits_78_for_what_start_up_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, json.dumps({"kinesis.endpoint": "kinesis us-east-1",
                                       "flows": [{"filePattern": "/a", "kinesisStream": "s"}]}))
    assert main(["-c", str(path), "--check-config"]) == 78
    assert "kinesis.endpoint" in capsys.readouterr().err


def test_ordered_delivery_sends_one_flow_on_one_key_through_the_ordered_producer(tmp_path: Path) -> None:
    from agent.sinks import flow_partition_key

    config = load_config(config_with_flow(tmp_path, orderedDelivery="true", aggregationEnabled=True))
    (flow,) = config.flows
    assert flow.ordered and flow.partition_key_bytes == len(flow_partition_key(flow.id)) == 32
    producer = producer_config(config, flow)
    assert producer.ordered_per_shard is True
    assert producer.record_ttl_ms >= 365 * 24 * 3600 * 1000  # never handed back for being late
    assert config.describe()["flows"][0]["partitionKeyOption"].startswith("one key for the whole flow")
    plain = load_config(config_with_flow(tmp_path))
    assert producer_config(plain, plain.flows[0]).ordered_per_shard is False


@pytest.mark.parametrize(("value", "shown"), [
    ("AKIAIOSFODNN7EXAMPLE", "****************MPLE"),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "****************EKEY"),
    ("short-id", "****************"),
    ("test", "****************"),
])
def test_credentials_show_only_their_last_four_characters(value: str, shown: str) -> None:
    from agent.config_reader import mask_secret

    assert mask_secret(value) == shown
