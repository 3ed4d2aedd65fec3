"""agent.json: the Java Kinesis Agent's configuration format, read unchanged.

The format has habits a plain ``json.load`` rejects or misreads, and existing files rely on all of them:
``//`` and ``/* */`` comments (Jackson's ALLOW_COMMENTS), flat keys that contain dots
(``"cloudwatch.emitMetrics"``), numbers and booleans written as strings (``"maxBufferAgeMillis": "1000"``),
and flows merged in from every file of the ``agent.d/`` directory next to the main file.

Where the Java agent silently ignores a misspelt key or starts with a broken value, this loader stops
with one error that names the file and the key, so that a typo cannot turn into a flow that never
ships.  Keys the Java agent reads but that mean nothing here (thread-pool sizes, for example) are
accepted and reported as having no effect.  Defaults and ranges are the Java agent's (research
agent.md §2), except the checkpoint file, which lives under /var/lib so that it survives a reboot.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from agent.converters import ConverterChain, build_converter_chain
from agent.errors import AgentConfigurationError
from kpl.aws import ClientConfig, StaticCredentials

DEFAULT_CONFIG_FILE = "/etc/aws-kinesis/agent.json"
DEFAULT_CHECKPOINT_FILE = "/var/lib/aws-kinesis-agent/checkpoints"
AGENT_D = "agent.d"

KINESIS_MAX_RECORD_BYTES = 1024 * 1024
FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
KINESIS_MAX_BUFFER_BYTES = 5 * 1024 * 1024
FIREHOSE_MAX_BUFFER_BYTES = 4 * 1024 * 1024
MAX_BUFFER_RECORDS = 500

Kind = Literal["int", "bool", "str", "enum", "regex", "str_list"]
DestinationKind = Literal["kinesis", "firehose"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration key: how its value is read, its default and its valid range."""

    key: str
    kind: Kind
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    #: Why the key is accepted although it changes nothing (Java thread-pool knobs and the like).
    no_effect: str | None = None
    #: Only valid on flows of this destination.
    only_for: DestinationKind | None = None
    secret: bool = False


def _cores() -> int:
    return os.cpu_count() or 1


_GLOBAL_SETTINGS: tuple[Setting, ...] = (
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
    Setting("awsAccessKeyId", "str"),
    Setting("awsSecretAccessKey", "str", secret=True),
    Setting("assumeRoleARN", "str"),
    Setting("assumeRoleExternalId", "str"),
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
)

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

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_TRUE_WORDS = frozenset({"true", "yes", "t", "y", "1"})
_FALSE_WORDS = frozenset({"false", "no", "f", "n", "0"})


# --- reading the file -----------------------------------------------------------------------------


def strip_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments blanked out, leaving strings alone.

    Comments become spaces (newlines are kept) so that JSON error positions still point at the right
    line and column of the original file.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    in_string = False
    while i < n:
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                in_string = False
            i += 1
        elif char == '"':
            in_string = True
            out.append(char)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                line = text.count("\n", 0, i) + 1
                raise ValueError(f"comment opened at line {line} is never closed (missing */)")
            comment = text[i:end + 2]
            out.append(re.sub(r"[^\n]", " ", comment))
            i = end + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentConfigurationError(f"{path}: configuration file not found") from None
    except PermissionError:
        raise AgentConfigurationError(
            f"{path}: permission denied reading the configuration file (the agent's user needs read access)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentConfigurationError(f"{path}: cannot read the configuration file: {exc}") from None
    try:
        document = json.loads(strip_comments(text))
    except json.JSONDecodeError as exc:
        raise AgentConfigurationError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise AgentConfigurationError(f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise AgentConfigurationError(f"{path}: the top level must be a JSON object, not {_json_type(document)}")
    return document


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# --- converting values ----------------------------------------------------------------------------


class _Reader:
    """Reads the values of one JSON object against a table of settings, naming keys in its errors."""

    def __init__(self, source: Path, where: str, values: Mapping[str, Any]) -> None:
        self.source = source
        self.where = where
        self.values = values

    def error(self, key: str, problem: str) -> AgentConfigurationError:
        return AgentConfigurationError(f"{self.source}: {self.where}{key}: {problem}")

    def check_keys(self, known: Sequence[str], extra_message: Mapping[str, str] | None = None) -> None:
        for key in self.values:
            if extra_message and key in extra_message:
                raise self.error(key, f"not supported: {extra_message[key]}")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                place = f" in {self.where.rstrip('.')}" if self.where else ""
                raise AgentConfigurationError(f"{self.source}: unknown key {key!r}{place}{hint}")

    def read(self, setting: Setting, default: Any = None) -> Any:
        key = setting.key
        if key not in self.values or self.values[key] is None:
            return setting.default if default is None else default
        raw = self.values[key]
        value = self._convert(setting, raw)
        if setting.kind == "int":
            too_small = setting.minimum is not None and value < setting.minimum
            too_large = setting.maximum is not None and value > setting.maximum
            if too_small or too_large:
                upper = "" if setting.maximum is None else str(setting.maximum)
                raise self.error(key, f"{value} is outside the valid range {setting.minimum}..{upper}")
        return value

    def _convert(self, setting: Setting, raw: Any) -> Any:
        key = setting.key
        if setting.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise self.error(key, f"expected an integer (or a string holding one), got {_json_type(raw)} {raw!r}")
            if isinstance(raw, str):
                if not _INT_TEXT.fullmatch(raw):
                    raise self.error(key, f"expected an integer, got {raw!r}")
                return int(raw)
            return raw
        if setting.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str | int):
                word = str(raw).lower()
                if word in _TRUE_WORDS:
                    return True
                if word in _FALSE_WORDS:
                    return False
            raise self.error(key, f"expected true or false, got {raw!r}")
        if setting.kind in ("str", "enum", "regex"):
            if isinstance(raw, bool):
                text = "true" if raw else "false"
            elif isinstance(raw, int | float | str):
                text = str(raw)
            else:
                raise self.error(key, f"expected a string, got {_json_type(raw)}")
            if setting.kind == "enum" and text not in setting.choices:
                raise self.error(key, f"{text!r} is not one of {', '.join(setting.choices)}")
            if setting.kind == "regex":
                if not text:
                    return None
                try:
                    re.compile(text)
                except re.error as exc:
                    raise self.error(key, f"not a valid regular expression: {exc}") from None
            return text
        raise AssertionError(f"unhandled kind {setting.kind}")


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
        return {**self.effective, "flows": [flow.effective for flow in self.flows]}


# --- loading ----------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read, merge and validate agent.json and agent.d/; raise AgentConfigurationError naming the key."""
    source = Path(path)
    document = _read_json_object(source)
    reader = _Reader(source, "", document)
    reader.check_keys([*_GLOBALS_BY_KEY, "flows"], _UNSUPPORTED_GLOBALS)

    flows_with_source: list[tuple[Path, str, Any]] = []
    flows = document.get("flows", [])
    if not isinstance(flows, list):
        raise reader.error("flows", f"expected a list of flow objects, got {_json_type(flows)}")
    flows_with_source.extend((source, f"flows[{i}].", flow) for i, flow in enumerate(flows))
    ignored: list[str] = []
    for extra in _agent_d_files(source):
        extra_document = _read_json_object(extra)
        extra_flows = extra_document.get("flows", [])
        if not isinstance(extra_flows, list):
            raise _Reader(extra, "", extra_document).error("flows", "expected a list of flow objects")
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
        key: ("***" if _GLOBALS_BY_KEY[key].secret and value is not None else value)
        for key, value in values.items()
    }
    def endpoint(key: str) -> str | None:
        # The Java agent's examples write host names ("kinesis.us-west-2.amazonaws.com") as well as URLs.
        value: str | None = values[key]
        return value if not value or "://" in value else f"https://{value}"

    return AgentConfig(
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
        kinesis_client=base_client.with_(endpoint_url=endpoint("kinesis.endpoint"), region=values["kinesis.region"]),
        firehose_client=base_client.with_(endpoint_url=endpoint("firehose.endpoint"), region=values["kinesis.region"]),
        cloudwatch_client=base_client.with_(endpoint_url=endpoint("cloudwatch.endpoint")),
        flows=tuple(flow_configs),
        ineffective=tuple(ineffective),
        explicit=frozenset(document),
        effective=effective,
    )


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
        raise AgentConfigurationError(f"{source}: {where.rstrip('.')}: expected a flow object, got {_json_type(flow)}")
    reader = _Reader(source, where, flow)
    reader.check_keys([*_FLOW_BY_KEY, "dataProcessingOptions"])

    file_pattern = reader.read(_FLOW_BY_KEY["filePattern"])
    if not file_pattern:
        raise reader.error("filePattern", "is required (the files this flow tails, for example /var/log/app.log*)")
    if file_pattern.endswith("/"):
        raise reader.error("filePattern", f"{file_pattern!r} names a directory; add a file-name pattern such as *.log")
    if not PurePosixPath(file_pattern).is_absolute():
        raise reader.error("filePattern", f"{file_pattern!r} must be an absolute path")
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

    options = flow.get("dataProcessingOptions") or []
    if not isinstance(options, list):
        raise reader.error("dataProcessingOptions", f"expected a list of option objects, got {_json_type(options)}")
    converters = build_converter_chain(
        options, lambda index, key, problem: reader.error(f"dataProcessingOptions[{index}].{key}", problem)
    )

    start_pattern = values["multiLineStartPattern"]
    footer_pattern = values["fileFooterPattern"]
    effective: dict[str, Any] = {"id": flow_id(kind, destination, file_pattern)}
    for setting in _FLOW_SETTINGS:
        applies = setting.only_for is None or setting.only_for == kind
        if applies and (setting.key not in ("kinesisStream", "deliveryStream") or values[setting.key]):
            effective[setting.key] = values[setting.key]
    effective["dataProcessingOptions"] = options
    return FlowConfig(
        id=effective["id"],
        file_pattern=file_pattern,
        destination_kind=kind,
        destination=destination,
        partition_key_option=values["partitionKeyOption"],
        aggregation_enabled=values["aggregationEnabled"],
        aggregated_record_size_bytes=values["aggregatedRecordSizeBytes"],
        initial_position=values["initialPosition"],
        skip_header_lines=values["skipHeaderLines"],
        multi_line_start_pattern=re.compile(start_pattern.encode()) if start_pattern else None,
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

