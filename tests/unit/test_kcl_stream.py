"""Stream names and ARNs: which region, account and API argument each means (no I/O)."""

from __future__ import annotations

import pytest

import kcl
from kcl.cli import _clients
from kcl.stream import kinesis_client_config, parse_stream_arn, stream_api_args, stream_name_of
from kpl.aws import ClientConfig
from kpl.errors import ConfigurationError

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"


def test_an_arn_gives_partition_region_account_and_name() -> None:
    parsed = parse_stream_arn(ARN)
    assert (parsed.partition, parsed.region, parsed.account, parsed.name) == ("aws", "eu-west-1", "123456789012",
                                                                              "orders")
    assert parsed.arn == ARN
    assert parse_stream_arn("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s").partition == "aws-cn"


@pytest.mark.parametrize("text", ["orders", "arn:aws:kinesis:eu-west-1:123:stream/orders",
                                  "arn:aws:sqs:eu-west-1:123456789012:orders",
                                  "arn:aws:kinesis:eu-west-1:123456789012:stream/orders/consumer/c:1"])
def test_anything_else_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a Kinesis stream ARN"):
        parse_stream_arn(text)


def test_kinesis_calls_name_the_stream_by_arn_when_given_one() -> None:
    assert stream_api_args(ARN) == {"StreamARN": ARN}
    assert stream_api_args("orders") == {"StreamName": "orders"}
    assert stream_name_of(ARN) == stream_name_of("orders") == "orders"


def test_the_arns_region_is_the_kinesis_region_and_region_name_the_table_and_metrics_region() -> None:
    config = kcl.WorkerConfig(region_name="us-west-2")
    worker = kcl.Worker(ARN, "app", kcl.RecordProcessor, config)
    assert worker.stream_name == "orders" and worker.stream_arn is not None
    assert worker._kinesis_client_config().region == "eu-west-1"
    assert config.cloudwatch_client_config().region == "us-west-2"
    by_name = kcl.Worker("orders", "app", kcl.RecordProcessor, config)
    assert by_name._kinesis_client_config().region == "us-west-2"  # regionName, as in the KCL


def test_a_role_named_for_kinesis_is_used_by_the_kinesis_client_only() -> None:
    config = kcl.WorkerConfig(kinesis_role_arn="arn:aws:iam::123456789012:role/reader")
    assert kcl.Worker(ARN, "app", kcl.RecordProcessor, config)._kinesis_client_config().assume_role_arn == \
        "arn:aws:iam::123456789012:role/reader"
    assert config.cloudwatch_client_config().assume_role_arn is None


def test_a_kclpy_processor_class_is_refused_by_the_worker_api() -> None:
    class Ported:
        def initialize(self, initialize_input: object) -> None: ...

        def process_records(self, process_records_input: object) -> None: ...

        def lease_lost(self) -> None: ...

        def shard_ended(self, checkpointer: object) -> None: ...

        def shutdown_requested(self, checkpointer: object) -> None: ...

    with pytest.raises(kcl.ProcessorLoadError, match="MultiLang mode"):
        kcl.Worker("orders", "app", Ported)


def test_the_kinesis_client_is_built_for_the_arns_region_and_the_rest_for_region_name() -> None:
    assert kinesis_client_config(ClientConfig(region="us-east-1"), ARN).region == "eu-west-1"
    assert kinesis_client_config(ClientConfig(region="us-east-1"), "orders").region == "us-east-1"
    # kcl-worker checks the set-up of the clients the worker will build: the same regions.
    clients = _clients(kcl.WorkerConfig(region_name="us-east-1"), ARN)
    assert clients["kinesis"].region == "eu-west-1"
    assert clients["dynamodb"].region == "us-east-1" and clients["cloudwatch"].region == "us-east-1"
    assert _clients(kcl.WorkerConfig(), ARN)["kinesis"].region == "eu-west-1"  # no regionName: the ARN still says
