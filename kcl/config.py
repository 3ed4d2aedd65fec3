"""Worker settings with the Java KCL's names and defaults, and the ``.properties`` files that carry them.

Every field is the snake_case form of the KCL setting it mirrors (``failoverTimeMillis`` is
``failover_time_millis``), so a MultiLangDaemon/amazon-kclpy properties file maps onto
:class:`WorkerConfig` key by key.  Where this worker deliberately differs from the KCL the field's
comment says so.

Properties files are checked strictly: a key that is neither ours nor a known KCL setting is a typo
and fails with an error naming it; a known KCL setting that does not apply here (JVM credentials
providers, thread-pool sizes, ...) is accepted and reported back so the caller can warn.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kpl.aws import ClientConfig
from kpl.errors import ConfigurationError


class InitialPosition(enum.Enum):
    """Where a new lease starts reading; used only when a lease is created."""

    LATEST = "LATEST"
    TRIM_HORIZON = "TRIM_HORIZON"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class RetrievalMode(enum.Enum):
    POLLING = "POLLING"
    FANOUT = "FANOUT"


class MetricsLevel(enum.Enum):
    NONE = "NONE"
    SUMMARY = "SUMMARY"
    DETAILED = "DETAILED"


#: The KCL's floor for the pause between GetRecords calls (a shard serves 5 reads per second).
MIN_IDLE_TIME_BETWEEN_READS_MILLIS = 200


def default_worker_id() -> str:
    """Unique per process, yet readable in ``kcl-worker status``: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class DeadLetter:
    """Records a processor failed on, handed to ``WorkerConfig.dead_letter`` before processing moves on."""

    shard_id: str
    records: list[Any]
    error: BaseException
    attempts: int


@dataclass(frozen=True)
class WorkerConfig:
    """How a :class:`kcl.Worker` leases, reads and dispatches.  Defaults follow the Java KCL."""

    worker_id: str = field(default_factory=default_worker_id)
    #: Lease table name; the application name when None (as in the KCL).
    table_name: str | None = None
    initial_position_in_stream: InitialPosition = InitialPosition.LATEST
    #: Start time for ``AT_TIMESTAMP``; required with it, rejected without it.
    initial_timestamp: datetime | None = None

    # --- leases -----------------------------------------------------------------------------------
    failover_time_millis: int = 10_000
    epsilon_millis: int = 25
    #: How often the lease table is scanned for expired and released leases.  Not a KCL setting: the
    #: KCL only looks when its taker runs (every 2 x failover), which makes takeover after a crash take
    #: up to three failover periods.  None means half the renewal interval, which bounds takeover by
    #: failover + one renewal interval.
    lease_scan_interval_millis: int | None = None
    #: How often leases are balanced between workers (the KCL's taker interval). None means
    #: 2 x (failover + epsilon), the KCL's default.
    lease_assignment_interval_millis: int | None = None
    max_leases_for_worker: int = 2**31 - 1
    #: The KCL steals one lease per taker run; None steals as many as balancing needs, from every
    #: over-loaded worker at once, so a new worker is balanced within two runs.
    max_leases_to_steal_at_one_time: int | None = None
    max_lease_renewal_threads: int = 20
    is_graceful_lease_handoff_enabled: bool = True
    graceful_lease_handoff_timeout_millis: int = 30_000
    shard_sync_interval_millis: int = 60_000
    cleanup_leases_upon_shard_completion: bool = True
    completed_lease_cleanup_interval_millis: int = 300_000
    parent_shard_poll_interval_millis: int = 10_000

    # --- retrieval --------------------------------------------------------------------------------
    #: The KCL defaults to enhanced fan-out; this worker polls unless asked (``--fan-out``).
    retrieval_mode: RetrievalMode = RetrievalMode.POLLING
    max_records: int = 10_000
    idle_time_between_reads_in_millis: int = 1_500
    max_pending_process_records_input: int = 3
    max_cache_byte_size: int = 8 * 1024 * 1024
    call_process_records_even_for_empty_record_list: bool = False
    #: Enhanced fan-out consumer name; the application name when None.
    consumer_name: str | None = None
    consumer_arn: str | None = None

    # --- processing -------------------------------------------------------------------------------
    #: First wait before retrying a failed processor call; doubles (with jitter) up to the maximum.
    task_backoff_time_millis: int = 500
    max_task_backoff_time_millis: int = 30_000
    #: Receives the batch a processor failed on, after which processing continues past it.  None
    #: (the default) retries the batch until it succeeds: nothing is ever skipped silently.
    dead_letter: Callable[[DeadLetter], Any] | None = None
    #: Attempts before a batch goes to ``dead_letter`` (when one is set).
    max_processing_attempts: int = 3
    #: Bound on a graceful shutdown: processors get this long to return from ``shutdown_requested``.
    graceful_shutdown_timeout_millis: int = 20_000

    # --- metrics ----------------------------------------------------------------------------------
    metrics_level: MetricsLevel = MetricsLevel.DETAILED
    metrics_buffer_time_millis: int = 10_000

    # --- AWS --------------------------------------------------------------------------------------
    #: Only for configuration files that name them; otherwise standard AWS configuration applies.
    region_name: str | None = None
    kinesis_endpoint: str | None = None
    dynamo_db_endpoint: str | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # --- derived timings (seconds) ------------------------------------------------------------------

    @property
    def failover_time(self) -> float:
        return self.failover_time_millis / 1000

    @property
    def renewal_interval(self) -> float:
        """failover / 3 - epsilon, as in the KCL: three renewal chances before a lease can expire."""
        return (self.failover_time_millis / 3 - self.epsilon_millis) / 1000

    @property
    def scan_interval(self) -> float:
        if self.lease_scan_interval_millis is not None:
            return self.lease_scan_interval_millis / 1000
        return self.renewal_interval / 2

    @property
    def assignment_interval(self) -> float:
        if self.lease_assignment_interval_millis is not None:
            return self.lease_assignment_interval_millis / 1000
        return 2 * (self.failover_time_millis + self.epsilon_millis) / 1000

    def lease_table_name(self, application_name: str) -> str:
        return self.table_name or application_name

    def kinesis_client_config(self) -> ClientConfig:
        return ClientConfig(region=self.region_name, endpoint_url=self.kinesis_endpoint)

    def cloudwatch_client_config(self) -> ClientConfig:
        return ClientConfig(region=self.region_name)

    def with_(self, **changes: Any) -> WorkerConfig:
        return replace(self, **changes)


# --- validation -----------------------------------------------------------------------------------


def property_key(field_name: str) -> str:
    """The KCL properties key of a field: ``failover_time_millis`` -> ``failoverTimeMillis``."""
    special = _FIELD_TO_KEY.get(field_name)
    if special:
        return special
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _named(field_name: str) -> str:
    return f"{field_name} ({property_key(field_name)})"


def _validate(config: WorkerConfig) -> None:
    positive = (
        "failover_time_millis", "max_records", "max_leases_for_worker", "max_lease_renewal_threads",
        "graceful_lease_handoff_timeout_millis", "shard_sync_interval_millis",
        "completed_lease_cleanup_interval_millis", "parent_shard_poll_interval_millis",
        "max_pending_process_records_input", "max_cache_byte_size", "task_backoff_time_millis",
        "max_task_backoff_time_millis", "max_processing_attempts", "graceful_shutdown_timeout_millis",
        "metrics_buffer_time_millis",
    )
    for name in positive:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigurationError(f"{_named(name)} must be a positive integer, got {value!r}")
    for name in ("lease_scan_interval_millis", "lease_assignment_interval_millis", "max_leases_to_steal_at_one_time"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigurationError(f"{_named(name)} must be a positive integer, got {value!r}")
    if not isinstance(config.epsilon_millis, int) or config.epsilon_millis < 0:
        raise ConfigurationError(f"{_named('epsilon_millis')} must be >= 0, got {config.epsilon_millis!r}")
    if config.failover_time_millis < 3 * config.epsilon_millis + 300:
        raise ConfigurationError(
            f"{_named('failover_time_millis')} must leave room for three renewals "
            f"(>= 3 x epsilon + 300 ms), got {config.failover_time_millis}"
        )
    if config.max_records > 10_000:
        raise ConfigurationError(f"{_named('max_records')} must be <= 10000 (the GetRecords limit), "
                                 f"got {config.max_records}")
    idle = config.idle_time_between_reads_in_millis
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < MIN_IDLE_TIME_BETWEEN_READS_MILLIS:
        raise ConfigurationError(
            f"{_named('idle_time_between_reads_in_millis')} must be >= {MIN_IDLE_TIME_BETWEEN_READS_MILLIS} "
            f"(a shard serves 5 GetRecords calls per second), got {idle!r}"
        )
    if config.task_backoff_time_millis > config.max_task_backoff_time_millis:
        raise ConfigurationError(f"{_named('task_backoff_time_millis')} must not exceed "
                                 f"{_named('max_task_backoff_time_millis')}")
    if not config.worker_id or not isinstance(config.worker_id, str):
        raise ConfigurationError(f"{_named('worker_id')} must be a non-empty string")
    if config.table_name is not None and not _TABLE_NAME.fullmatch(config.table_name):
        raise ConfigurationError(f"{_named('table_name')} {config.table_name!r} is not a valid DynamoDB table name")
    for name, enum_type in (("initial_position_in_stream", InitialPosition), ("retrieval_mode", RetrievalMode),
                            ("metrics_level", MetricsLevel)):
        if not isinstance(getattr(config, name), enum_type):
            raise ConfigurationError(f"{_named(name)} must be a {enum_type.__name__}, got {getattr(config, name)!r}")
    at_timestamp = config.initial_position_in_stream is InitialPosition.AT_TIMESTAMP
    if at_timestamp and config.initial_timestamp is None:
        raise ConfigurationError("initial position AT_TIMESTAMP needs a timestamp "
                                 f"({_named('initial_timestamp')})")
    if not at_timestamp and config.initial_timestamp is not None:
        raise ConfigurationError(f"{_named('initial_timestamp')} is only valid with initial position AT_TIMESTAMP")
    if config.initial_timestamp is not None and config.initial_timestamp.tzinfo is None:
        raise ConfigurationError(f"{_named('initial_timestamp')} must be timezone-aware")
    if config.dead_letter is not None and not callable(config.dead_letter):
        raise ConfigurationError("dead_letter must be callable")


_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


# --- properties files -----------------------------------------------------------------------------

#: Fields whose KCL key is not the mechanical camelCase of the field name.
_FIELD_TO_KEY = {
    "initial_position_in_stream": "initialPositionInStream",
    "initial_timestamp": "initialPositionInStreamExtended",
    "dynamo_db_endpoint": "dynamoDBEndpoint",
    "is_graceful_lease_handoff_enabled": "isGracefulLeaseHandoffEnabled",
}

#: Keys of the Java KCL / MultiLangDaemon that have no meaning for this worker.  They are accepted so
#: that an existing properties file works unchanged, and reported so the caller can say so.
IGNORED_KCL_KEYS = frozenset({
    "executableName", "processingLanguage", "AwsCredentialsProvider", "AwsCredentialsProviderDynamoDB",
    "AwsCredentialsProviderCloudWatch", "validateSequenceNumberBeforeCheckpointing", "shardPrioritization",
    "skipShardSyncAtWorkerInitializationIfLeasesExist", "maxGetRecordsThreadPool", "retryGetRecordsInSeconds",
    "logWarningForTaskAfterMillis", "timeoutInSeconds", "metricsMaxQueueSize", "metricsEnabledDimensions",
    "listShardsBackoffTimeInMillis", "maxListShardsRetryAttempts", "ignoreUnexpectedChildShards",
    "enablePriorityLeaseAssignment", "initialLeaseTableReadCapacity", "initialLeaseTableWriteCapacity",
    "leaseTableDeletionProtectionEnabled", "leaseTablePitrEnabled", "leaseTableScanTotalSegments",
    "schedulerInitializationBackoffTimeMillis", "maxActiveThreads", "millisBehindLatestThresholdForReducedTps",
    "clientVersionConfig", "shutdownGraceMillis", "userAgent", "kinesisClientLibVersion", "javaOptions",
    "workerMetricsTableConfig", "coordinatorStateConfig", "disableWorkerMetrics", "maxThroughputPerHostKBps",
    "dampeningPercentage", "reBalanceThresholdPercentage", "allowThroughputOvershoot",
    "varianceBalancingFrequency", "workerMetricsEMAAlpha", "inMemoryWorkerMetricsCaptureFrequencyMillis",
    "workerMetricsReporterFreqInMillis", "noOfPersistedMetricsPerWorkerMetrics",
    "staleWorkerMetricsEntryCleanupDuration", "migrateAllEntitiesToLeaseTable",
    "tableMigrationCompleteBakeTimeSeconds", "maxLeaseRenewalThreadCount",
})

#: Keys that name what to run rather than how (the CLI's --stream/--application/--processor).
_TARGET_KEYS = ("streamName", "streamArn", "applicationName", "processor")


def _parse_int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{key} must be an integer, got {text!r}") from None


def _parse_bool(key: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigurationError(f"{key} must be true or false, got {text!r}")


def _enum_parser(enum_type: type[enum.Enum]) -> Callable[[str, str], Any]:
    def parse(key: str, text: str) -> Any:
        try:
            return enum_type(text.upper())
        except ValueError:
            choices = ", ".join(member.value for member in enum_type)
            raise ConfigurationError(f"{key} must be one of {choices}, got {text!r}") from None
    return parse


def _parse_epoch_seconds(key: str, text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        raise ConfigurationError(f"{key} must be a timestamp in epoch seconds, got {text!r}") from None


def _parse_str(key: str, text: str) -> str:
    if not text:
        raise ConfigurationError(f"{key} must not be empty")
    return text


def _parser_for(field_name: str, field_type: Any) -> Callable[[str, str], Any]:
    if field_name == "initial_timestamp":
        return _parse_epoch_seconds
    text = str(field_type)
    for enum_type in (InitialPosition, RetrievalMode, MetricsLevel):
        if enum_type.__name__ in text:
            return _enum_parser(enum_type)
    if text.startswith("bool"):
        return _parse_bool
    if text.startswith("int"):
        return _parse_int
    return _parse_str


def _settable_fields() -> dict[str, tuple[str, Callable[[str, str], Any]]]:
    """properties key -> (field name, parser) for every field a properties file may set."""
    table = {}
    for item in fields(WorkerConfig):
        if item.name == "dead_letter":
            continue
        table[property_key(item.name)] = (item.name, _parser_for(item.name, item.type))
    return table


@dataclass(frozen=True)
class LoadedProperties:
    """What a properties file says: the worker settings plus what to run, and the keys ignored."""

    settings: Mapping[str, Any]
    stream_name: str | None = None
    application_name: str | None = None
    processor: str | None = None
    ignored_keys: tuple[str, ...] = ()

    def worker_config(self, **overrides: Any) -> WorkerConfig:
        return WorkerConfig(**{**self.settings, **overrides})


def parse_properties_text(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) for each entry of a Java ``.properties`` text.

    Supports ``#``/``!`` comments, ``=``/``:``/whitespace separators and backslash line continuation,
    which is what KCL properties files use.
    """
    entries: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line[0] in "#!":
            continue
        while line.endswith("\\") and not line.endswith("\\\\"):
            line = line[:-1] + (lines[index].strip() if index < len(lines) else "")
            index += 1
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match is None:
            entries.append((number, line, ""))
            continue
        entries.append((number, match.group(1), match.group(2).strip()))
    return entries


def load_properties(path: str | Path) -> LoadedProperties:
    """Read a KCL/MultiLangDaemon-style properties file; unknown keys and bad values raise."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read properties file {source}: {exc.strerror or exc}") from None
    settable = _settable_fields()
    settings: dict[str, Any] = {}
    targets: dict[str, str] = {}
    ignored: list[str] = []
    seen: set[str] = set()
    for number, key, value in parse_properties_text(text):
        where = f"{source}:{number}"
        if key in seen:
            raise ConfigurationError(f"{where}: {key} is set twice")
        seen.add(key)
        if key in _TARGET_KEYS:
            targets[key] = _parse_str(f"{where}: {key}", value)
        elif key in IGNORED_KCL_KEYS:
            ignored.append(key)
        elif key in settable:
            name, parse = settable[key]
            settings[name] = parse(f"{where}: {key}", value)
        else:
            raise ConfigurationError(f"{where}: unknown setting {key!r}{_suggestion(key, settable)}")
    if "initial_timestamp" in settings and "initial_position_in_stream" not in settings:
        settings["initial_position_in_stream"] = InitialPosition.AT_TIMESTAMP
    stream = targets.get("streamName")
    if "streamArn" in targets:
        stream = _stream_name_from_arn(targets["streamArn"])
    try:
        WorkerConfig(**settings)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    return LoadedProperties(
        settings=settings, stream_name=stream, application_name=targets.get("applicationName"),
        processor=targets.get("processor"), ignored_keys=tuple(ignored),
    )


def _stream_name_from_arn(arn: str) -> str:
    match = re.fullmatch(r"arn:[^:]+:kinesis:[^:]*:[^:]*:stream/([A-Za-z0-9_.-]+)", arn)
    if match is None:
        raise ConfigurationError(f"streamArn {arn!r} is not a Kinesis stream ARN")
    return match.group(1)


def _suggestion(key: str, settable: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, [*settable, *_TARGET_KEYS], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
