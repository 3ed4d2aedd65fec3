"""The agent's typed configuration: the agent.json settings tables, the closed sets, and AgentConfig/FlowConfig.

Each table row (:class:`agent.config_reader.Setting`, the shared :class:`kpl.settings.Setting` plus
agent.json's own attributes) names the Java agent's key, the field that carries its value (empty when the
value feeds a client configuration or a derived field), its kind, default and range.  The loader
(:mod:`agent.config`) reads agent.json against the tables; the dataclasses check their table-backed fields
again in ``__post_init__``.  Durations are ``*_ms`` integers as the keys are (a key in seconds is read
into a ``*_ms`` field with ``scale=1000``); closed sets are ``enum.StrEnum``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.config_reader import Setting
from agent.converters import ConverterChain
from kpl.aws import ClientConfig
from kpl.observability import DEFAULT_ADDRESS, EndpointSettings
from kpl.settings import checked_names, validate

DEFAULT_CHECKPOINT_FILE = "/var/lib/aws-kinesis-agent/checkpoints"

KINESIS_MAX_RECORD_BYTES = 1024 * 1024
FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
KINESIS_MAX_BUFFER_BYTES = 5 * 1024 * 1024
FIREHOSE_MAX_BUFFER_BYTES = 4 * 1024 * 1024
MAX_BUFFER_RECORDS = 500


class Destination(enum.StrEnum):
    """Where a flow sends: ``kinesisStream`` or ``deliveryStream``."""

    KINESIS = "kinesis"
    FIREHOSE = "firehose"


class PartitionKeyOption(enum.StrEnum):
    """``partitionKeyOption``: a random key per record, or the record's hash."""

    RANDOM = "RANDOM"
    DETERMINISTIC = "DETERMINISTIC"


class FileStartPosition(enum.StrEnum):
    """``initialPosition``: where a file found at the first start is read from."""

    END_OF_FILE = "END_OF_FILE"
    START_OF_FILE = "START_OF_FILE"


class LongRecordOption(enum.StrEnum):
    """``longRecordOption``: a record over the maximum size is truncated or dropped."""

    TRUNCATE = "TRUNCATE"
    DROP = "DROP"


_THREAD_POOL = "sends run on an event loop, not a thread pool"
_PROGRESS_LOG = "metrics are readable in the progress log line"

GLOBAL_TABLE: tuple[Setting, ...] = (
    Setting("checkpointFile", "", "str", default=DEFAULT_CHECKPOINT_FILE),
    Setting("checkpointTimeToLiveDays", "checkpoint_ttl_days", "int", 1, default=7),
    Setting("checkpoints.queryTimeoutSeconds", "checkpoint_query_timeout_ms", "int", 1, unit="s", scale=1000,
            default=30),
    Setting("checkpoints.connectionTimeoutSeconds", "", "int", 1, unit="s", default=5,
            no_effect="SQLite opens a local file; there is no connection to time out"),
    Setting("cloudwatch.emitMetrics", "emit_metrics", "bool", default=True),
    Setting("cloudwatch.endpoint", "", "str"),
    Setting("cloudwatch.namespace", "cloudwatch_namespace", "str", default="AWSKinesisAgent"),
    Setting("cloudwatch.tagInstance", "cloudwatch_tag_instance", "bool", default=False),
    Setting("cloudwatch.metricsBufferTimeMillis", "metrics_interval_ms", "int", 1000, unit="ms", default=30_000),
    Setting("cloudwatch.metricsQueueSize", "metrics_queue_size", "int", 1, default=10_000),
    Setting("kinesis.endpoint", "", "str"),
    Setting("kinesis.region", "", "str"),
    Setting("firehose.endpoint", "", "str"),
    Setting("sts.endpoint", "", "str", no_effect="set AWS_ENDPOINT_URL_STS in the agent's environment instead"),
    Setting("awsAccessKeyId", "", "str", secret=True),
    Setting("awsSecretAccessKey", "", "str", secret=True),
    Setting("assumeRoleARN", "", "str"),
    Setting("assumeRoleExternalId", "", "str", secret=True),
    Setting("shutdownTimeoutMillis", "shutdown_timeout_ms", "int", 0, unit="ms", default=10_000),
    Setting("maxSendingThreadsPerCore", "", "int", 1, default=12),
    # Default computed from maxSendingThreadsPerCore; bounds concurrent Firehose requests.
    Setting("maxSendingThreads", "max_sending_threads", "int", 1, optional=True),
    Setting("maxConnections", "", "int", 1, optional=True),
    Setting("connectionTimeoutMillis", "", "int", 1, unit="ms", default=10_000),
    Setting("socketTimeoutMillis", "", "int", 1, unit="ms", default=50_000),
    Setting("sendingThreadsKeepAliveMillis", "", "int", unit="ms", default=60_000, no_effect=_THREAD_POOL),
    Setting("sendingThreadsMaxQueueSize", "", "int", default=100, no_effect=_THREAD_POOL),
    Setting("connectionTTLMillis", "", "int", unit="ms", default=-1, no_effect="connections are pooled by aiohttp"),
    Setting("useTcpKeepAlive", "", "bool", default=False, no_effect="TCP keep-alive is always on"),
    Setting("useHttpGzip", "", "bool", default=False,
            no_effect="request compression is not supported by the services' JSON API"),
    Setting("userAgent", "", "str", no_effect="the user agent names kinesis-toolkit"),
    Setting("userAgentOverride", "", "str", no_effect="the user agent names kinesis-toolkit"),
    Setting("log.emitMetrics", "", "bool", default=False, no_effect=_PROGRESS_LOG),
    Setting("log.emitInternalMetrics", "", "bool", default=False, no_effect=_PROGRESS_LOG),
    Setting("log.statusReportingPeriodSeconds", "status_period_ms", "int", 1, unit="s", scale=1000, default=30),
    # Extensions (the Java agent has no HTTP endpoint): /metrics, /healthz and /readyz (kpl.observability).
    Setting("prometheus.port", "", "int", 0, 65535, optional=True),
    Setting("prometheus.address", "", "str", default=DEFAULT_ADDRESS),
    Setting("prometheus.maxDeliveryStallMillis", "max_delivery_stall_ms", "int", 1_000, unit="ms", default=60_000),
)
#: As in the Java agent, a global string set to "" is not set (its installer ships empty endpoints).
GLOBAL_SETTINGS = tuple(replace(s, empty_is_unset=True) if s.kind == "str" else s for s in GLOBAL_TABLE)

_WAIT_FULL = "reading simply pauses while the queue is full"
_WAIT_EMPTY = "the sender wakes as soon as a batch is queued"

FLOW_SETTINGS: tuple[Setting, ...] = (
    Setting("filePattern", "file_pattern", "str"),
    Setting("kinesisStream", "", "str"),
    Setting("deliveryStream", "", "str"),
    Setting("partitionKeyOption", "partition_key_option", "enum", choices=PartitionKeyOption,
            default=PartitionKeyOption.RANDOM, only_for=Destination.KINESIS),
    Setting("aggregationEnabled", "aggregation_enabled", "bool", default=False, only_for=Destination.KINESIS),
    Setting("orderedDelivery", "ordered", "bool", default=False, only_for=Destination.KINESIS),
    Setting("aggregatedRecordSizeBytes", "aggregated_record_size_bytes", "int", 0, FIREHOSE_MAX_RECORD_BYTES,
            unit="bytes", default=0, only_for=Destination.FIREHOSE),
    Setting("initialPosition", "initial_position", "enum", choices=FileStartPosition,
            default=FileStartPosition.END_OF_FILE),
    Setting("skipHeaderLines", "skip_header_lines", "int", 0, default=0),
    Setting("multiLineStartPattern", "", "regex"),
    Setting("multiLineFlushTimeoutMillis", "multi_line_flush_timeout_ms", "int", 1, 900_000, unit="ms",
            default=5_000),
    Setting("fileFooterPattern", "", "regex"),
    Setting("truncatedRecordTerminator", "", "str", default="\n"),
    Setting("longRecordOption", "long_record_option", "enum", choices=LongRecordOption,
            default=LongRecordOption.TRUNCATE),
    Setting("maxBufferAgeMillis", "max_buffer_age_ms", "int", 1_000, 900_000, unit="ms", default=60_000),
    # Default and maximum depend on the destination: 5 MiB for Kinesis, 4 MiB for Firehose.
    Setting("maxBufferSizeBytes", "max_buffer_size_bytes", "int", 1, unit="bytes", optional=True),
    Setting("maxBufferSizeRecords", "max_buffer_size_records", "int", 1, MAX_BUFFER_RECORDS,
            default=MAX_BUFFER_RECORDS),
    Setting("minTimeBetweenFilePollsMillis", "poll_interval_ms", "int", 1, unit="ms", default=100),
    Setting("maxTimeBetweenFileTrackerRefreshMillis", "refresh_interval_ms", "int", 1, unit="ms", default=10_000,
            no_effect="files are listed every minTimeBetweenFilePollsMillis (less often when listing is slow)"),
    Setting("publishQueueCapacity", "publish_queue_capacity", "int", 1, default=100),
    Setting("publishQueueCapacityBytes", "publish_queue_capacity_bytes", "int", 1024, unit="bytes",
            default=16 * 1024 * 1024),
    Setting("waitOnFullPublishQueueMillis", "", "int", 1_000, 900_000, unit="ms", default=60_000,
            no_effect=_WAIT_FULL),
    Setting("waitOnEmptyPublishQueueMillis", "", "int", 1_000, 900_000, unit="ms", default=60_000,
            no_effect=_WAIT_EMPTY),
    Setting("retryInitialBackoffMillis", "retry_initial_backoff_ms", "int", 1, unit="ms", default=100),
    Setting("retryMaxBackoffMillis", "retry_max_backoff_ms", "int", 1, unit="ms", default=10_000),
    Setting("log.emitInternalMetrics", "", "bool", default=False, no_effect=_PROGRESS_LOG),
)


@checked_names(FLOW_SETTINGS, owner="Java agent")
@dataclass(frozen=True, slots=True, kw_only=True)
class FlowConfig:
    """One flow: which files, where to, and how records are cut, converted and batched."""

    id: str
    file_pattern: str
    destination_kind: Destination
    destination: str
    partition_key_option: PartitionKeyOption
    aggregation_enabled: bool
    #: ``orderedDelivery``: one partition key for the flow and the producer's ordered mode.
    ordered: bool
    aggregated_record_size_bytes: int
    initial_position: FileStartPosition
    skip_header_lines: int
    multi_line_start_pattern: re.Pattern[bytes] | None
    multi_line_flush_timeout_ms: int
    file_footer_pattern: re.Pattern[str] | None
    truncated_record_terminator: bytes
    long_record_option: LongRecordOption
    max_buffer_age_ms: int
    max_buffer_size_bytes: int
    max_buffer_size_records: int
    poll_interval_ms: int
    refresh_interval_ms: int
    publish_queue_capacity: int
    publish_queue_capacity_bytes: int
    retry_initial_backoff_ms: int
    retry_max_backoff_ms: int
    converters: ConverterChain | None
    #: Every key with its effective value, as ``--check-config`` prints it.
    effective: dict[str, Any] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        validate(self, FLOW_SETTINGS)

    @property
    def drop_long_records(self) -> bool:
        return self.long_record_option is LongRecordOption.DROP

    @property
    def partition_key_bytes(self) -> int:
        """The longest partition key this flow sends (counted in the record and batch size limits):
        RANDOM keys are up to ~20 characters, DETERMINISTIC and orderedDelivery ones 32 hex digits."""
        if self.destination_kind is not Destination.KINESIS:
            return 0
        return 32 if self.ordered or self.partition_key_option is PartitionKeyOption.DETERMINISTIC else 24

    @property
    def max_record_bytes(self) -> int:
        return KINESIS_MAX_RECORD_BYTES if self.destination_kind is Destination.KINESIS else FIREHOSE_MAX_RECORD_BYTES

    @property
    def metrics_destination(self) -> str:
        """The CloudWatch ``Destination`` dimension of the Java agent's sender metrics."""
        prefix = "KinesisStream" if self.destination_kind is Destination.KINESIS else "DeliveryStream"
        return f"{prefix}:{self.destination}"


@checked_names(GLOBAL_SETTINGS, owner="Java agent")
@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """The whole agent: global settings plus the flows of agent.json and agent.d/."""

    source: Path
    checkpoint_file: Path
    checkpoint_ttl_days: int
    checkpoint_query_timeout_ms: int
    emit_metrics: bool
    cloudwatch_namespace: str
    cloudwatch_tag_instance: bool
    metrics_interval_ms: int
    metrics_queue_size: int
    shutdown_timeout_ms: int
    max_sending_threads: int
    status_period_ms: int
    #: ``prometheus.port``/``prometheus.address``: where /metrics, /healthz and /readyz are served (None: nowhere).
    metrics_endpoint: EndpointSettings | None
    #: ``prometheus.maxDeliveryStallMillis``: /readyz fails once a flow has delivered nothing for this long
    #: while records wait.
    max_delivery_stall_ms: int
    kinesis_client: ClientConfig
    firehose_client: ClientConfig
    cloudwatch_client: ClientConfig
    flows: tuple[FlowConfig, ...]
    #: Keys that were set but do nothing here, with the reason (logged at start-up).
    ineffective: tuple[str, ...]
    #: Global keys present in agent.json (so that defaults can defer to the producer's own).
    explicit: frozenset[str]
    effective: dict[str, Any] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        validate(self, GLOBAL_SETTINGS)

    def describe(self) -> dict[str, Any]:
        """The effective configuration, secrets masked: what ``--check-config`` prints."""
        endpoint = {} if self.metrics_endpoint is None else {
            "prometheus.port": self.metrics_endpoint.port, "prometheus.address": self.metrics_endpoint.address}
        return {**self.effective, **endpoint, "flows": [flow.effective for flow in self.flows]}
