"""agent.json: the Java Kinesis Agent's configuration format, read unchanged.

The format has habits a plain ``json.load`` rejects or misreads, and existing files rely on all of them:
``//`` and ``/* */`` comments (Jackson's ALLOW_COMMENTS), flat keys that contain dots
(``"cloudwatch.emitMetrics"``), numbers and booleans written as strings (``"maxBufferAgeMillis": "1000"``),
empty strings for keys that are not set, a byte order mark, and flows merged in from every file of the
``agent.d/`` directory next to the main file (the format itself is read by agent.config_reader).

Every value that would stop the agent at start-up is checked here (endpoints, region, the Kinesis
producer's ranges), so that ``--check-config`` refuses what the daemon would refuse.

Where the Java agent silently ignores a misspelt key or starts with a broken value, this loader stops
with one error that names the file and the key, so that a typo cannot turn into a flow that never
ships.  Keys the Java agent reads but that mean nothing here (thread-pool sizes, for example) are
accepted and reported as having no effect.  Defaults and ranges are the Java agent's (research
agent.md §2), except the checkpoint file, which lives under /var/lib so that it survives a reboot.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import InvalidRegionError
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url, validate_region_name

from agent.config_reader import (
    DestinationKind,
    Reader,
    Setting,
    json_type,
    mask_secret,
    read_json_object,
    strip_comments,
)
from agent.converters import ConverterChain, build_converter_chain
from agent.errors import AgentConfigurationError
from agent.globs import FilePattern
from kpl.aws import ClientConfig, StaticCredentials
from kpl.errors import ConfigurationError
from kpl.observability import DEFAULT_ADDRESS, EndpointSettings, check_address

__all__ = ["AgentConfig", "FlowConfig", "load_config", "strip_comments"]

DEFAULT_CONFIG_FILE = "/etc/aws-kinesis/agent.json"
DEFAULT_CHECKPOINT_FILE = "/var/lib/aws-kinesis-agent/checkpoints"
AGENT_D = "agent.d"

KINESIS_MAX_RECORD_BYTES = 1024 * 1024
FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
KINESIS_MAX_BUFFER_BYTES = 5 * 1024 * 1024
FIREHOSE_MAX_BUFFER_BYTES = 4 * 1024 * 1024
MAX_BUFFER_RECORDS = 500

def _cores() -> int:
    return os.cpu_count() or 1


_GLOBAL_TABLE: tuple[Setting, ...] = (
    Setting("checkpointFile", "str", DEFAULT_CHECKPOINT_FILE),
    Setting("checkpointTimeToLiveDays", "int", 7, minimum=1),
    Setting("checkpoints.queryTimeoutSeconds", "int", 30, minimum=1),
    Setting("checkpoints.connectionTimeoutSeconds", "int", 5, minimum=1,
            no_effect="SQLite opens a local file; there is no connection to time out"),
    Setting("cloudwatch.emitMetrics", "bool", True),
    Setting("cloudwatch.endpoint", "str"),
    Setting("cloudwatch.namespace", "str", "AWSKinesisAgent"),
    Setting("cloudwatch.tagInstance", "bool", False),
    Setting("cloudwatch.metricsBufferTimeMillis", "int", 30_000, minimum=1000),
    Setting("cloudwatch.metricsQueueSize", "int", 10_000, minimum=1),
    Setting("kinesis.endpoint", "str"),
    Setting("kinesis.region", "str"),
    Setting("firehose.endpoint", "str"),
    Setting("sts.endpoint", "str", no_effect="set AWS_ENDPOINT_URL_STS in the agent's environment instead"),
    Setting("awsAccessKeyId", "str", secret=True),
    Setting("awsSecretAccessKey", "str", secret=True),
    Setting("assumeRoleARN", "str"),
    Setting("assumeRoleExternalId", "str", secret=True),
    Setting("shutdownTimeoutMillis", "int", 10_000, minimum=0),
    Setting("maxSendingThreadsPerCore", "int", 12, minimum=1),
    # Default computed from maxSendingThreadsPerCore; bounds concurrent Firehose requests.
    Setting("maxSendingThreads", "int", None, minimum=1),
    Setting("maxConnections", "int", None, minimum=1),
    Setting("connectionTimeoutMillis", "int", 10_000, minimum=1),
    Setting("socketTimeoutMillis", "int", 50_000, minimum=1),
    Setting("sendingThreadsKeepAliveMillis", "int", 60_000, no_effect="sends run on an event loop, not a thread pool"),
    Setting("sendingThreadsMaxQueueSize", "int", 100, no_effect="sends run on an event loop, not a thread pool"),
    Setting("connectionTTLMillis", "int", -1, no_effect="connections are pooled by aiohttp"),
    Setting("useTcpKeepAlive", "bool", False, no_effect="TCP keep-alive is always on"),
    Setting("useHttpGzip", "bool", False, no_effect="request compression is not supported by the services' JSON API"),
    Setting("userAgent", "str", no_effect="the user agent names kinesis-toolkit"),
    Setting("userAgentOverride", "str", no_effect="the user agent names kinesis-toolkit"),
    Setting("log.emitMetrics", "bool", False, no_effect="metrics are readable in the progress log line"),
    Setting("log.emitInternalMetrics", "bool", False, no_effect="metrics are readable in the progress log line"),
    Setting("log.statusReportingPeriodSeconds", "int", 30, minimum=1),
    # Extensions (the Java agent has no HTTP endpoint): /metrics, /healthz and /readyz (kpl.observability).
    Setting("prometheus.port", "int", None, minimum=0, maximum=65535),
    Setting("prometheus.address", "str", DEFAULT_ADDRESS),
    Setting("prometheus.maxDeliveryStallMillis", "int", 60_000, minimum=1_000),
)
#: As in the Java agent, a global string set to "" is not set (its installer ships empty endpoints).
_GLOBAL_SETTINGS = tuple(replace(s, empty_is_unset=True) if s.kind == "str" else s for s in _GLOBAL_TABLE)

_UNSUPPORTED_GLOBALS = {
    "userDefinedCredentialsProvider.classname":
        "it loads a Java class; use the standard AWS credential chain (environment, profile, instance role) "
        "or awsAccessKeyId/awsSecretAccessKey/assumeRoleARN",
    "userDefinedCredentialsProvider.location":
        "it loads a Java jar; use the standard AWS credential chain or awsAccessKeyId/assumeRoleARN",
}

_FLOW_SETTINGS: tuple[Setting, ...] = (
    Setting("filePattern", "str"),
    Setting("kinesisStream", "str"),
    Setting("deliveryStream", "str"),
    Setting("partitionKeyOption", "enum", "RANDOM", choices=("RANDOM", "DETERMINISTIC"), only_for="kinesis"),
    Setting("aggregationEnabled", "bool", False, only_for="kinesis"),
    Setting("orderedDelivery", "bool", False, only_for="kinesis"),
    Setting("aggregatedRecordSizeBytes", "int", 0, minimum=0, maximum=FIREHOSE_MAX_RECORD_BYTES, only_for="firehose"),
    Setting("initialPosition", "enum", "END_OF_FILE", choices=("END_OF_FILE", "START_OF_FILE")),
    Setting("skipHeaderLines", "int", 0, minimum=0),
    Setting("multiLineStartPattern", "regex"),
    Setting("multiLineFlushTimeoutMillis", "int", 5_000, minimum=1, maximum=900_000),
    Setting("fileFooterPattern", "regex"),
    Setting("truncatedRecordTerminator", "str", "\n"),
    Setting("longRecordOption", "enum", "TRUNCATE", choices=("TRUNCATE", "DROP")),
    Setting("maxBufferAgeMillis", "int", 60_000, minimum=1_000, maximum=900_000),
    # Default and maximum depend on the destination: 5 MiB for Kinesis, 4 MiB for Firehose.
    Setting("maxBufferSizeBytes", "int", None, minimum=1),
    Setting("maxBufferSizeRecords", "int", MAX_BUFFER_RECORDS, minimum=1, maximum=MAX_BUFFER_RECORDS),
    Setting("minTimeBetweenFilePollsMillis", "int", 100, minimum=1),
    Setting("maxTimeBetweenFileTrackerRefreshMillis", "int", 10_000, minimum=1,
            no_effect="files are listed every minTimeBetweenFilePollsMillis (less often when listing is slow)"),
    Setting("publishQueueCapacity", "int", 100, minimum=1),
    Setting("publishQueueCapacityBytes", "int", 16 * 1024 * 1024, minimum=1024),
    Setting("waitOnFullPublishQueueMillis", "int", 60_000, minimum=1_000, maximum=900_000,
            no_effect="reading simply pauses while the queue is full"),
    Setting("waitOnEmptyPublishQueueMillis", "int", 60_000, minimum=1_000, maximum=900_000,
            no_effect="the sender wakes as soon as a batch is queued"),
    Setting("retryInitialBackoffMillis", "int", 100, minimum=1),
    Setting("retryMaxBackoffMillis", "int", 10_000, minimum=1),
    Setting("log.emitInternalMetrics", "bool", False, no_effect="metrics are readable in the progress log line"),
)

_GLOBALS_BY_KEY = {s.key: s for s in _GLOBAL_SETTINGS}
_FLOW_BY_KEY = {s.key: s for s in _FLOW_SETTINGS}

# --- the typed configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlowConfig:
    """One flow: which files, where to, and how records are cut, converted and batched."""

    id: str
    file_pattern: str
    destination_kind: DestinationKind
    destination: str
    partition_key_option: str
    aggregation_enabled: bool
    #: ``orderedDelivery``: one partition key for the flow and the producer's ordered mode.
    ordered: bool
    aggregated_record_size_bytes: int
    initial_position: str
    skip_header_lines: int
    multi_line_start_pattern: re.Pattern[bytes] | None
    multi_line_flush_timeout: float
    file_footer_pattern: re.Pattern[str] | None
    truncated_record_terminator: bytes
    drop_long_records: bool
    max_buffer_age: float
    max_buffer_size_bytes: int
    max_buffer_size_records: int
    poll_interval: float
    refresh_interval: float
    publish_queue_capacity: int
    publish_queue_capacity_bytes: int
    retry_initial_backoff: float
    retry_max_backoff: float
    converters: ConverterChain | None
    #: Every key with its effective value, as ``--check-config`` prints it.
    effective: dict[str, Any] = field(repr=False, compare=False)

    @property
    def partition_key_bytes(self) -> int:
        """The longest partition key this flow sends (counted in the record and batch size limits):
        RANDOM keys are up to ~20 characters, DETERMINISTIC and orderedDelivery ones 32 hex digits."""
        if self.destination_kind != "kinesis":
            return 0
        return 32 if self.ordered or self.partition_key_option == "DETERMINISTIC" else 24

    @property
    def max_record_bytes(self) -> int:
        return KINESIS_MAX_RECORD_BYTES if self.destination_kind == "kinesis" else FIREHOSE_MAX_RECORD_BYTES

    @property
    def metrics_destination(self) -> str:
        """The CloudWatch ``Destination`` dimension of the Java agent's sender metrics."""
        prefix = "KinesisStream" if self.destination_kind == "kinesis" else "DeliveryStream"
        return f"{prefix}:{self.destination}"


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent: global settings plus the flows of agent.json and agent.d/."""

    source: Path
    checkpoint_file: Path
    checkpoint_ttl_days: int
    checkpoint_query_timeout: float
    emit_metrics: bool
    cloudwatch_namespace: str
    cloudwatch_tag_instance: bool
    metrics_interval: float
    metrics_queue_size: int
    shutdown_timeout: float
    max_sending_threads: int
    status_period: float
    #: ``prometheus.port``/``prometheus.address``: where /metrics, /healthz and /readyz are served (None: nowhere).
    metrics_endpoint: EndpointSettings | None
    #: ``prometheus.maxDeliveryStallMillis``: /readyz fails once a flow has delivered nothing for this long
    #: while records wait.
    max_delivery_stall: float
    kinesis_client: ClientConfig
    firehose_client: ClientConfig
    cloudwatch_client: ClientConfig
    flows: tuple[FlowConfig, ...]
    #: Keys that were set but do nothing here, with the reason (logged at start-up).
    ineffective: tuple[str, ...]
    #: Global keys present in agent.json (so that defaults can defer to the producer's own).
    explicit: frozenset[str]
    effective: dict[str, Any] = field(repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """The effective configuration, secrets masked: what ``--check-config`` prints."""
        endpoint = {} if self.metrics_endpoint is None else {
            "prometheus.port": self.metrics_endpoint.port, "prometheus.address": self.metrics_endpoint.address}
        return {**self.effective, **endpoint, "flows": [flow.effective for flow in self.flows]}


# --- loading ----------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read, merge and validate agent.json and agent.d/; raise AgentConfigurationError naming the key."""
    source = Path(path)
    document = read_json_object(source)
    reader = Reader(source, "", document)
    reader.check_keys([*_GLOBALS_BY_KEY, "flows"], _UNSUPPORTED_GLOBALS)

    flows_with_source: list[tuple[Path, str, Any]] = []
    flows = document.get("flows", [])
    if not isinstance(flows, list):
        raise reader.error("flows", f"expected a list of flow objects, got {json_type(flows)}")
    flows_with_source.extend((source, f"flows[{i}].", flow) for i, flow in enumerate(flows))
    ignored: list[str] = []
    for extra in _agent_d_files(source):
        extra_document = read_json_object(extra)
        extra_flows = extra_document.get("flows", [])
        if not isinstance(extra_flows, list):
            raise Reader(extra, "", extra_document).error("flows", "expected a list of flow objects")
        flows_with_source.extend((extra, f"flows[{i}].", flow) for i, flow in enumerate(extra_flows))
        ignored.extend(f"{extra}: {key}" for key in extra_document if key != "flows")
    if not flows_with_source:
        raise AgentConfigurationError(
            f"{source}: no flows configured: add at least one flow with filePattern and kinesisStream "
            f"or deliveryStream (in 'flows', or in a file of {source.parent / AGENT_D})"
        )

    values: dict[str, Any] = {}
    ineffective: list[str] = [f"{where} (only 'flows' is read from agent.d files)" for where in ignored]
    for setting in _GLOBAL_SETTINGS:
        values[setting.key] = reader.read(setting)
        if setting.no_effect and setting.key in document:
            ineffective.append(f"{setting.key}: {setting.no_effect}")
    if values["maxSendingThreads"] is None:
        values["maxSendingThreads"] = max(2, values["maxSendingThreadsPerCore"] * _cores())
    if values["maxConnections"] is None:
        values["maxConnections"] = max(50, values["maxSendingThreads"])
    if (values["awsAccessKeyId"] is None) != (values["awsSecretAccessKey"] is None):
        missing = "awsSecretAccessKey" if values["awsSecretAccessKey"] is None else "awsAccessKeyId"
        raise reader.error(missing, "is required when the other of awsAccessKeyId/awsSecretAccessKey is set")

    flow_configs = [
        _load_flow(flow_source, where, flow, ineffective) for flow_source, where, flow in flows_with_source
    ]
    seen: dict[str, str] = {}
    for flow_config, (flow_source, where, _) in zip(flow_configs, flows_with_source, strict=True):
        if flow_config.id in seen:
            raise AgentConfigurationError(
                f"{flow_source}: {where.rstrip('.')}: duplicate flow {flow_config.id!r} (already defined at "
                f"{seen[flow_config.id]}); two flows with the same file pattern and destination would share "
                "checkpoints"
            )
        seen[flow_config.id] = f"{flow_source}: {where.rstrip('.')}"

    namespace = values["cloudwatch.namespace"]
    if namespace.startswith("AWS/") or len(namespace) > 255:
        raise reader.error("cloudwatch.namespace", f"{namespace!r} is not a namespace CloudWatch accepts for custom "
                           "metrics (at most 255 characters, not starting with AWS/)")
    region = values["kinesis.region"]
    if region is not None:
        try:
            validate_region_name(region)
        except InvalidRegionError:
            raise reader.error("kinesis.region", f"{region!r} is not a region name (for example us-east-1)") from None
    try:
        address = check_address(values["prometheus.address"])
    except ConfigurationError as exc:
        raise reader.error("prometheus.address", str(exc).split(": ", 1)[-1]) from None
    port = values["prometheus.port"]
    base_client = ClientConfig(
        connect_timeout=values["connectionTimeoutMillis"] / 1000,
        read_timeout=values["socketTimeoutMillis"] / 1000,
        max_pool_connections=values["maxConnections"],
        credentials=(
            StaticCredentials(values["awsAccessKeyId"], values["awsSecretAccessKey"])
            if values["awsAccessKeyId"] else None
        ),
        assume_role_arn=values["assumeRoleARN"],
        assume_role_external_id=values["assumeRoleExternalId"],
        assume_role_session_name="AWSKinesisAgent",
    )
    effective = {
        key: (mask_secret(value) if _GLOBALS_BY_KEY[key].secret and value is not None else value)
        for key, value in values.items()
    }
    config = AgentConfig(
        source=source,
        checkpoint_file=Path(values["checkpointFile"]),
        checkpoint_ttl_days=values["checkpointTimeToLiveDays"],
        checkpoint_query_timeout=float(values["checkpoints.queryTimeoutSeconds"]),
        emit_metrics=values["cloudwatch.emitMetrics"],
        cloudwatch_namespace=values["cloudwatch.namespace"],
        cloudwatch_tag_instance=values["cloudwatch.tagInstance"],
        metrics_interval=values["cloudwatch.metricsBufferTimeMillis"] / 1000,
        metrics_queue_size=values["cloudwatch.metricsQueueSize"],
        shutdown_timeout=values["shutdownTimeoutMillis"] / 1000,
        max_sending_threads=values["maxSendingThreads"],
        status_period=float(values["log.statusReportingPeriodSeconds"]),
        metrics_endpoint=EndpointSettings(port, address) if port is not None else None,
        max_delivery_stall=values["prometheus.maxDeliveryStallMillis"] / 1000,
        kinesis_client=base_client.with_(endpoint_url=_endpoint(reader, "kinesis.endpoint", values), region=region),
        firehose_client=base_client.with_(endpoint_url=_endpoint(reader, "firehose.endpoint", values), region=region),
        cloudwatch_client=base_client.with_(endpoint_url=_endpoint(reader, "cloudwatch.endpoint", values)),
        flows=tuple(flow_configs),
        ineffective=tuple(ineffective),
        explicit=frozenset(key for key, value in document.items() if value is not None and value != ""),
        effective=effective,
    )
    _check_producer_settings(reader, config, flows_with_source)
    return config


def _endpoint(reader: Reader, key: str, values: dict[str, Any]) -> str | None:
    """An endpoint key as a URL (None when not set), refused here if botocore would refuse it at start-up."""
    value: str | None = values[key]
    if value is None:
        return None
    # The Java agent's examples write host names ("kinesis.us-west-2.amazonaws.com") as well as URLs.
    url = value if "://" in value else f"https://{value}"
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https") or not (is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)):
        raise reader.error(key, f"{value!r} is not an endpoint: write a host name (kinesis.us-east-1.amazonaws.com), "
                           "a URL (https://host:port), or \"\" to use the standard AWS configuration")
    return url


#: The agent keys behind the producer settings they feed, for errors that name what the user wrote.
_PRODUCER_KEYS = {"connect_timeout_ms": "connectionTimeoutMillis", "request_timeout_ms": "socketTimeoutMillis"}


def _check_producer_settings(reader: Reader, config: AgentConfig,
                             flows_with_source: list[tuple[Path, str, Any]]) -> None:
    """Build every Kinesis flow's producer settings now, so a value the producer refuses fails here."""
    from agent.producer_settings import producer_config

    for flow, (flow_source, where, _) in zip(config.flows, flows_with_source, strict=True):
        if flow.destination_kind != "kinesis":
            continue
        try:
            producer_config(config, flow)
        except ConfigurationError as exc:
            field_name = str(exc).split(" ", 1)[0]
            if field_name in _PRODUCER_KEYS:
                raise reader.error(_PRODUCER_KEYS[field_name],
                                   f"outside the range Kinesis flows accept: {exc}") from None
            raise AgentConfigurationError(
                f"{flow_source}: {where.rstrip('.')}: the Kinesis producer refuses these settings: {exc}"
            ) from None


def _agent_d_files(source: Path) -> list[Path]:
    directory = source.parent / AGENT_D
    if not directory.is_dir():
        return []
    return sorted(
        entry for entry in directory.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and not entry.name.endswith("~")
    )


def flow_id(destination_kind: DestinationKind, destination: str, file_pattern: str) -> str:
    """The Java agent's flow id, which is also the checkpoint key: ``kinesis:<stream>:<dir>/<pattern>``."""
    pattern = PurePosixPath(file_pattern)
    prefix = "kinesis" if destination_kind == "kinesis" else "fh"
    return f"{prefix}:{destination}:{pattern.parent}/{pattern.name}"


def _load_flow(source: Path, where: str, flow: Any, ineffective: list[str]) -> FlowConfig:
    if not isinstance(flow, dict):
        raise AgentConfigurationError(f"{source}: {where.rstrip('.')}: expected a flow object, got {json_type(flow)}")
    reader = Reader(source, where, flow)
    reader.check_keys([*_FLOW_BY_KEY, "dataProcessingOptions"])

    file_pattern = reader.read(_FLOW_BY_KEY["filePattern"])
    if not file_pattern:
        raise reader.error("filePattern", "is required (the files this flow tails, for example /var/log/app.log*)")
    if file_pattern.endswith("/"):
        raise reader.error("filePattern", f"{file_pattern!r} names a directory; add a file-name pattern such as *.log")
    if not PurePosixPath(file_pattern).is_absolute():
        raise reader.error("filePattern", f"{file_pattern!r} must be an absolute path")
    try:
        FilePattern(file_pattern)
    except ValueError as exc:
        raise reader.error("filePattern", str(exc)) from None
    stream = reader.read(_FLOW_BY_KEY["kinesisStream"])
    delivery = reader.read(_FLOW_BY_KEY["deliveryStream"])
    if stream and delivery:
        raise reader.error("deliveryStream", "set either kinesisStream or deliveryStream in a flow, not both")
    if not stream and not delivery:
        raise AgentConfigurationError(
            f"{source}: {where}kinesisStream: is required (or deliveryStream for a Firehose flow)"
        )
    kind: DestinationKind = "kinesis" if stream else "firehose"
    destination = stream or delivery

    values: dict[str, Any] = {}
    for setting in _FLOW_SETTINGS:
        if setting.only_for is not None and setting.only_for != kind and setting.key in flow:
            other = "kinesisStream" if setting.only_for == "kinesis" else "deliveryStream"
            raise reader.error(setting.key, f"applies only to {other} flows")
        values[setting.key] = reader.read(setting)
        if setting.no_effect and setting.key in flow:
            ineffective.append(f"{where}{setting.key}: {setting.no_effect}")

    buffer_limit = KINESIS_MAX_BUFFER_BYTES if kind == "kinesis" else FIREHOSE_MAX_BUFFER_BYTES
    if values["maxBufferSizeBytes"] is None:
        values["maxBufferSizeBytes"] = buffer_limit
    elif values["maxBufferSizeBytes"] > buffer_limit:
        raise reader.error("maxBufferSizeBytes", f"{values['maxBufferSizeBytes']} is outside the valid range "
                           f"1..{buffer_limit} for a {'Kinesis' if kind == 'kinesis' else 'Firehose'} flow")
    if values["retryInitialBackoffMillis"] > values["retryMaxBackoffMillis"]:
        raise reader.error("retryInitialBackoffMillis",
                           f"{values['retryInitialBackoffMillis']} is larger than retryMaxBackoffMillis "
                           f"({values['retryMaxBackoffMillis']})")
    terminator = values["truncatedRecordTerminator"].encode()
    max_record = KINESIS_MAX_RECORD_BYTES if kind == "kinesis" else FIREHOSE_MAX_RECORD_BYTES
    if len(terminator) >= max_record // 2:
        raise reader.error("truncatedRecordTerminator", "is longer than half the maximum record size")
    if values["orderedDelivery"] and "partitionKeyOption" in flow:
        raise reader.error("partitionKeyOption", "does not apply with orderedDelivery, which sends all of the "
                           "flow's records with one partition key (one shard); remove one of the two keys")
    start_pattern = values["multiLineStartPattern"]
    try:
        start_regex = re.compile(start_pattern.encode()) if start_pattern else None
    except re.error as exc:
        raise reader.error("multiLineStartPattern", f"not a valid regular expression: {exc}") from None

    options = flow.get("dataProcessingOptions") or []
    if not isinstance(options, list):
        raise reader.error("dataProcessingOptions", f"expected a list of option objects, got {json_type(options)}")
    converters = build_converter_chain(
        options, lambda index, key, problem: reader.error(f"dataProcessingOptions[{index}].{key}", problem)
    )

    footer_pattern = values["fileFooterPattern"]
    effective: dict[str, Any] = {"id": flow_id(kind, destination, file_pattern)}
    for setting in _FLOW_SETTINGS:
        applies = setting.only_for is None or setting.only_for == kind
        if applies and (setting.key not in ("kinesisStream", "deliveryStream") or values[setting.key]):
            effective[setting.key] = values[setting.key]
    if values["orderedDelivery"]:
        effective["partitionKeyOption"] = "one key for the whole flow (orderedDelivery)"
    effective["dataProcessingOptions"] = options
    return FlowConfig(
        id=effective["id"],
        file_pattern=file_pattern,
        destination_kind=kind,
        destination=destination,
        partition_key_option=values["partitionKeyOption"],
        aggregation_enabled=values["aggregationEnabled"],
        ordered=values["orderedDelivery"],
        aggregated_record_size_bytes=values["aggregatedRecordSizeBytes"],
        initial_position=values["initialPosition"],
        skip_header_lines=values["skipHeaderLines"],
        multi_line_start_pattern=start_regex,
        multi_line_flush_timeout=values["multiLineFlushTimeoutMillis"] / 1000,
        file_footer_pattern=re.compile(footer_pattern, re.MULTILINE) if footer_pattern else None,
        truncated_record_terminator=terminator,
        drop_long_records=values["longRecordOption"] == "DROP",
        max_buffer_age=values["maxBufferAgeMillis"] / 1000,
        max_buffer_size_bytes=values["maxBufferSizeBytes"],
        max_buffer_size_records=values["maxBufferSizeRecords"],
        poll_interval=values["minTimeBetweenFilePollsMillis"] / 1000,
        refresh_interval=values["maxTimeBetweenFileTrackerRefreshMillis"] / 1000,
        publish_queue_capacity=values["publishQueueCapacity"],
        publish_queue_capacity_bytes=values["publishQueueCapacityBytes"],
        retry_initial_backoff=values["retryInitialBackoffMillis"] / 1000,
        retry_max_backoff=values["retryMaxBackoffMillis"] / 1000,
        converters=converters,
        effective=effective,
    )

