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
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import InvalidRegionError
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url, validate_region_name

from agent.config_reader import Reader, json_type, mask_secret, read_json_object, strip_comments
from agent.config_types import (
    FIREHOSE_MAX_BUFFER_BYTES,
    FIREHOSE_MAX_RECORD_BYTES,
    FLOW_SETTINGS,
    GLOBAL_SETTINGS,
    KINESIS_MAX_BUFFER_BYTES,
    KINESIS_MAX_RECORD_BYTES,
    AgentConfig,
    Destination,
    FlowConfig,
)
from agent.converters import build_converter_chain
from agent.errors import AgentConfigurationError
from agent.globs import FilePattern
from kpl.aws import ClientConfig, StaticCredentials
from kpl.errors import ConfigurationError
from kpl.observability import EndpointSettings, check_address

__all__ = ["AgentConfig", "FlowConfig", "load_config", "strip_comments"]  # AgentConfig, FlowConfig: agent.config_types

DEFAULT_CONFIG_FILE = "/etc/aws-kinesis/agent.json"
AGENT_D = "agent.d"

def _cores() -> int:
    return os.cpu_count() or 1


_UNSUPPORTED_GLOBALS = {
    "userDefinedCredentialsProvider.classname":
        "it loads a Java class; use the standard AWS credential chain (environment, profile, instance role) "
        "or awsAccessKeyId/awsSecretAccessKey/assumeRoleARN",
    "userDefinedCredentialsProvider.location":
        "it loads a Java jar; use the standard AWS credential chain or awsAccessKeyId/assumeRoleARN",
}

_GLOBALS_BY_KEY = {s.key: s for s in GLOBAL_SETTINGS}
_FLOW_BY_KEY = {s.key: s for s in FLOW_SETTINGS}

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
    for setting in GLOBAL_SETTINGS:
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
        checkpoint_query_timeout_ms=values["checkpoints.queryTimeoutSeconds"] * 1000,
        emit_metrics=values["cloudwatch.emitMetrics"],
        cloudwatch_namespace=values["cloudwatch.namespace"],
        cloudwatch_tag_instance=values["cloudwatch.tagInstance"],
        metrics_interval_ms=values["cloudwatch.metricsBufferTimeMillis"],
        metrics_queue_size=values["cloudwatch.metricsQueueSize"],
        shutdown_timeout_ms=values["shutdownTimeoutMillis"],
        max_sending_threads=values["maxSendingThreads"],
        status_period_ms=values["log.statusReportingPeriodSeconds"] * 1000,
        metrics_endpoint=EndpointSettings(port, address) if port is not None else None,
        max_delivery_stall_ms=values["prometheus.maxDeliveryStallMillis"],
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
        if flow.destination_kind is not Destination.KINESIS:
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


def flow_id(destination_kind: Destination, destination: str, file_pattern: str) -> str:
    """The Java agent's flow id, which is also the checkpoint key: ``kinesis:<stream>:<dir>/<pattern>``."""
    pattern = PurePosixPath(file_pattern)
    prefix = "kinesis" if destination_kind is Destination.KINESIS else "fh"
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
    kind = Destination.KINESIS if stream else Destination.FIREHOSE
    destination = stream or delivery

    values: dict[str, Any] = {}
    for setting in FLOW_SETTINGS:
        if setting.only_for is not None and setting.only_for != kind and setting.key in flow:
            other = "kinesisStream" if setting.only_for is Destination.KINESIS else "deliveryStream"
            raise reader.error(setting.key, f"applies only to {other} flows")
        values[setting.key] = reader.read(setting)
        if setting.no_effect and setting.key in flow:
            ineffective.append(f"{where}{setting.key}: {setting.no_effect}")

    buffer_limit = KINESIS_MAX_BUFFER_BYTES if kind is Destination.KINESIS else FIREHOSE_MAX_BUFFER_BYTES
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
    max_record = KINESIS_MAX_RECORD_BYTES if kind is Destination.KINESIS else FIREHOSE_MAX_RECORD_BYTES
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
    for setting in FLOW_SETTINGS:
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
        multi_line_flush_timeout_ms=values["multiLineFlushTimeoutMillis"],
        file_footer_pattern=re.compile(footer_pattern, re.MULTILINE) if footer_pattern else None,
        truncated_record_terminator=terminator,
        long_record_option=values["longRecordOption"],
        max_buffer_age_ms=values["maxBufferAgeMillis"],
        max_buffer_size_bytes=values["maxBufferSizeBytes"],
        max_buffer_size_records=values["maxBufferSizeRecords"],
        poll_interval_ms=values["minTimeBetweenFilePollsMillis"],
        refresh_interval_ms=values["maxTimeBetweenFileTrackerRefreshMillis"],
        publish_queue_capacity=values["publishQueueCapacity"],
        publish_queue_capacity_bytes=values["publishQueueCapacityBytes"],
        retry_initial_backoff_ms=values["retryInitialBackoffMillis"],
        retry_max_backoff_ms=values["retryMaxBackoffMillis"],
        converters=converters,
        effective=effective,
    )

