"""Worker settings with the Java KCL's names and defaults.

Every field is the snake_case form of the KCL setting it mirrors, with ``Millis`` written ``_ms``
(``failoverTimeMillis`` is ``failover_time_ms``, ``idleTimeBetweenReadsInMillis`` is
``idle_time_between_reads_ms``), so a MultiLangDaemon/amazon-kclpy properties file (:mod:`kcl.properties`)
maps onto :class:`WorkerConfig` key by key through the settings table below (:mod:`kpl.settings`).  An
old ``*_millis`` keyword is an UnknownSettingError naming the new field.  Where this worker deliberately
differs from the KCL the field's comment says so.
"""

from __future__ import annotations

import enum
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from kpl.aws import ClientConfig
from kpl.errors import ConfigurationError
from kpl.settings import Setting, check_names, checked_names, validate


class InitialPosition(enum.StrEnum):
    """Where a new lease starts reading; used only when a lease is created."""

    LATEST = "LATEST"
    TRIM_HORIZON = "TRIM_HORIZON"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class RetrievalMode(enum.StrEnum):
    POLLING = "POLLING"
    FANOUT = "FANOUT"


class MetricsLevel(enum.StrEnum):
    NONE = "NONE"
    SUMMARY = "SUMMARY"
    DETAILED = "DETAILED"


#: The KCL's floor for the pause between GetRecords calls (a shard serves 5 reads per second).
MIN_IDLE_TIME_BETWEEN_READS_MS = 200


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



_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}\Z")
_NOT_BLANK = re.compile(r"\s*\S")
_INT_MAX = 2**31 - 1

#: Every setting a properties file can give, under its KCL key.  Durations are ``*_ms`` (the KCL's
#: ``*Millis``); ``timeoutInSeconds`` keeps the MultiLangDaemon's seconds, as its name says.
SETTINGS: tuple[Setting, ...] = (
    Setting("workerId", "worker_id", "str", pattern=_NOT_BLANK),
    Setting("tableName", "table_name", "str", pattern=_TABLE_NAME, optional=True),
    Setting("initialPositionInStream", "initial_position_in_stream", "enum", choices=InitialPosition, fold_case=True),
    Setting("initialPositionInStreamExtended", "initial_timestamp", "timestamp", optional=True),
    Setting("failoverTimeMillis", "failover_time_ms", "int", 1, unit="ms"),
    Setting("epsilonMillis", "epsilon_ms", "int", 0, unit="ms"),
    Setting("leaseScanIntervalMillis", "lease_scan_interval_ms", "int", 1, unit="ms", optional=True),
    Setting("leaseAssignmentIntervalMillis", "lease_assignment_interval_ms", "int", 1, unit="ms", optional=True),
    Setting("maxLeasesForWorker", "max_leases_for_worker", "int", 1, _INT_MAX),
    Setting("maxLeasesToStealAtOneTime", "max_leases_to_steal_at_one_time", "int", 1, optional=True),
    Setting("maxLeaseRenewalThreads", "max_lease_renewal_threads", "int", 1),
    Setting("isGracefulLeaseHandoffEnabled", "is_graceful_lease_handoff_enabled", "bool"),
    Setting("gracefulLeaseHandoffTimeoutMillis", "graceful_lease_handoff_timeout_ms", "int", 1, unit="ms"),
    Setting("shardSyncIntervalMillis", "shard_sync_interval_ms", "int", 1, unit="ms"),
    Setting("cleanupLeasesUponShardCompletion", "cleanup_leases_upon_shard_completion", "bool"),
    Setting("leaseTableDeletionProtectionEnabled", "lease_table_deletion_protection_enabled", "bool"),
    Setting("leaseTablePitrEnabled", "lease_table_pitr_enabled", "bool"),
    Setting("completedLeaseCleanupIntervalMillis", "completed_lease_cleanup_interval_ms", "int", 1, unit="ms"),
    Setting("parentShardPollIntervalMillis", "parent_shard_poll_interval_ms", "int", 1, unit="ms"),
    Setting("retrievalMode", "retrieval_mode", "enum", choices=RetrievalMode, fold_case=True),
    # At most the GetRecords limit.
    Setting("maxRecords", "max_records", "int", 1, 10_000),
    # A shard serves 5 GetRecords calls per second.
    Setting("idleTimeBetweenReadsInMillis", "idle_time_between_reads_ms", "int", MIN_IDLE_TIME_BETWEEN_READS_MS,
            unit="ms"),
    Setting("maxPendingProcessRecordsInput", "max_pending_process_records_input", "int", 1),
    Setting("maxCacheByteSize", "max_cache_byte_size", "int", 1, unit="bytes"),
    Setting("callProcessRecordsEvenForEmptyRecordList", "call_process_records_even_for_empty_record_list", "bool"),
    Setting("consumerName", "consumer_name", "str", optional=True),
    Setting("consumerArn", "consumer_arn", "str", optional=True),
    Setting("taskBackoffTimeMillis", "task_backoff_time_ms", "int", 1, unit="ms"),
    Setting("maxTaskBackoffTimeMillis", "max_task_backoff_time_ms", "int", 1, unit="ms"),
    Setting("maxProcessingAttempts", "max_processing_attempts", "int", 1),
    Setting("gracefulShutdownTimeoutMillis", "graceful_shutdown_timeout_ms", "int", 1, unit="ms"),
    Setting("executableName", "executable_name", "str", pattern=_NOT_BLANK, optional=True),
    Setting("timeoutInSeconds", "timeout_in_seconds", "int", 1, unit="s", optional=True),
    Setting("metricsLevel", "metrics_level", "enum", choices=MetricsLevel, fold_case=True),
    Setting("metricsBufferTimeMillis", "metrics_buffer_time_ms", "int", 1, unit="ms"),
    # The port's range is kpl.observability.check_port's, which also explains it.
    Setting("metricsPort", "metrics_port", "int", optional=True),
    Setting("metricsAddress", "metrics_address", "str", optional=True),
    Setting("regionName", "region_name", "str", optional=True),
    Setting("kinesisEndpoint", "kinesis_endpoint", "str", optional=True),
    Setting("dynamoDBEndpoint", "dynamo_db_endpoint", "str", optional=True),
)
_BY_FIELD = {setting.field: setting for setting in SETTINGS}

#: The fields' names before durations became ``*_ms``: passing one is an error naming the new one.
RENAMED = {
    "failover_time_millis": "failover_time_ms",
    "epsilon_millis": "epsilon_ms",
    "lease_scan_interval_millis": "lease_scan_interval_ms",
    "lease_assignment_interval_millis": "lease_assignment_interval_ms",
    "graceful_lease_handoff_timeout_millis": "graceful_lease_handoff_timeout_ms",
    "shard_sync_interval_millis": "shard_sync_interval_ms",
    "completed_lease_cleanup_interval_millis": "completed_lease_cleanup_interval_ms",
    "parent_shard_poll_interval_millis": "parent_shard_poll_interval_ms",
    "idle_time_between_reads_in_millis": "idle_time_between_reads_ms",
    "task_backoff_time_millis": "task_backoff_time_ms",
    "max_task_backoff_time_millis": "max_task_backoff_time_ms",
    "graceful_shutdown_timeout_millis": "graceful_shutdown_timeout_ms",
    "metrics_buffer_time_millis": "metrics_buffer_time_ms",
}


@checked_names(SETTINGS, renamed=RENAMED, key_hint=" (kcl.load_properties reads KCL keys)", owner="KCL")
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """How a :class:`kcl.Worker` leases, reads and dispatches.  Defaults follow the Java KCL."""

    worker_id: str = field(default_factory=default_worker_id)
    #: Lease table name; the application name when None (as in the KCL).
    table_name: str | None = None
    initial_position_in_stream: InitialPosition = InitialPosition.LATEST
    #: Start time for ``AT_TIMESTAMP``; required with it, rejected without it.
    initial_timestamp: datetime | None = None

    # --- leases -----------------------------------------------------------------------------------
    failover_time_ms: int = 10_000
    epsilon_ms: int = 25
    #: How often this worker reads the whole lease table while nothing is happening.  Not a KCL setting:
    #: None means the taker interval below, the KCL 2.x cadence and cost.  The worker reads sooner only
    #: while the table is unbalanced, a handoff it asked for is under way, or a lease may have expired
    #: (see kcl.coordinator), which bounds takeover by failover + one taker interval.
    lease_scan_interval_ms: int | None = None
    #: The taker interval (leaseAssignmentIntervalMillis): how often leases are taken and balanced.
    #: None means 2 x (failover + epsilon), the KCL's default.
    lease_assignment_interval_ms: int | None = None
    max_leases_for_worker: int = 2**31 - 1
    #: The KCL steals one lease per taker run; None steals as many as balancing needs, from every
    #: over-loaded worker at once, so a new worker is balanced within two runs.
    max_leases_to_steal_at_one_time: int | None = None
    max_lease_renewal_threads: int = 20
    is_graceful_lease_handoff_enabled: bool = True
    graceful_lease_handoff_timeout_ms: int = 30_000
    shard_sync_interval_ms: int = 60_000
    cleanup_leases_upon_shard_completion: bool = True
    #: A lease table this worker creates gets deletion protection / point-in-time recovery (the KCL's
    #: leaseTableDeletionProtectionEnabled, leaseTablePitrEnabled); an existing table is left as it is.
    lease_table_deletion_protection_enabled: bool = False
    lease_table_pitr_enabled: bool = False
    completed_lease_cleanup_interval_ms: int = 300_000
    parent_shard_poll_interval_ms: int = 10_000

    # --- retrieval --------------------------------------------------------------------------------
    #: The KCL defaults to enhanced fan-out; this worker polls unless asked (``--fan-out``).
    retrieval_mode: RetrievalMode = RetrievalMode.POLLING
    max_records: int = 10_000
    idle_time_between_reads_ms: int = 1_500
    max_pending_process_records_input: int = 3
    max_cache_byte_size: int = 8 * 1024 * 1024
    call_process_records_even_for_empty_record_list: bool = False
    #: Enhanced fan-out consumer name; the application name when None.
    consumer_name: str | None = None
    consumer_arn: str | None = None

    # --- processing -------------------------------------------------------------------------------
    #: First wait before retrying a failed processor call; doubles (with jitter) up to the maximum.
    task_backoff_time_ms: int = 500
    max_task_backoff_time_ms: int = 30_000
    #: Receives the batch a processor failed on, after which processing continues past it.  None
    #: (the default) retries the batch until it succeeds: nothing is ever skipped silently.
    dead_letter: Callable[[DeadLetter], Any] | None = None
    #: Attempts before a batch goes to ``dead_letter`` (when one is set).
    max_processing_attempts: int = 3
    #: Bound on a graceful shutdown: processors get this long to return from ``shutdown_requested``.
    #: A properties file may say ``shutdownGraceMillis`` (the MultiLangDaemon's name) instead.
    graceful_shutdown_timeout_ms: int = 20_000

    # --- MultiLang mode (kcl.multilang) ------------------------------------------------------------
    #: The MultiLangDaemon's ``executableName``: the command ``kcl-worker`` starts per leased shard (split
    #: on spaces) and talks the MultiLang protocol to, when no ``processor`` is given.  Nothing reads it
    #: in native mode; ``kcl.multilang.MultiLangProcessorFactory.from_config`` does.
    executable_name: str | None = None
    #: MultiLang mode: seconds to wait for each message of the child process (``timeoutInSeconds``);
    #: past it, that shard's child is killed and its lease released.  None waits as long as the child
    #: takes, as the MultiLangDaemon does (a graceful stop is bounded all the same).
    timeout_in_seconds: int | None = None

    # --- metrics ----------------------------------------------------------------------------------
    metrics_level: MetricsLevel = MetricsLevel.DETAILED
    metrics_buffer_time_ms: int = 10_000
    #: Not KCL settings (``metricsPort``, ``metricsAddress``): serve Prometheus ``/metrics``, ``/healthz`` and
    #: ``/readyz`` on this port while the worker runs (0: any free port, logged), on 127.0.0.1 unless
    #: ``metrics_address`` names another address.  None (the default) serves nothing.  See kcl.health.
    metrics_port: int | None = None
    metrics_address: str | None = None

    # --- AWS --------------------------------------------------------------------------------------
    #: Only for configuration files that name them; otherwise standard AWS configuration applies.
    #: The region of the lease table and metrics, and of Kinesis unless the stream is given as an ARN
    #: (whose region then wins for Kinesis), as the KCL's regionName.
    region_name: str | None = None
    kinesis_endpoint: str | None = None
    dynamo_db_endpoint: str | None = None
    #: A role the Kinesis client assumes (a properties file's ``AwsCredentialsProvider =
    #: StsAssumeRoleCredentialsProvider|<role ARN>|<session name>[|externalId=...]``): how a stream of
    #: another account is read.  The lease table and metrics use the standard credential chain.
    kinesis_role_arn: str | None = None
    kinesis_role_session_name: str = "kcl-worker"
    kinesis_role_external_id: str | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # --- derived timings (seconds) ------------------------------------------------------------------

    @property
    def failover_time(self) -> float:
        return self.failover_time_ms / 1000

    @property
    def renewal_interval(self) -> float:
        """failover / 3 - epsilon, as in the KCL: three renewal chances before a lease can expire."""
        return (self.failover_time_ms / 3 - self.epsilon_ms) / 1000

    @property
    def scan_interval(self) -> float:
        """The steady-state interval between two reads of the whole lease table by this worker."""
        if self.lease_scan_interval_ms is not None:
            return self.lease_scan_interval_ms / 1000
        return self.assignment_interval

    @property
    def assignment_interval(self) -> float:
        if self.lease_assignment_interval_ms is not None:
            return self.lease_assignment_interval_ms / 1000
        return 2 * (self.failover_time_ms + self.epsilon_ms) / 1000

    def lease_table_name(self, application_name: str) -> str:
        return self.table_name or application_name

    def kinesis_client_config(self) -> ClientConfig:
        config = ClientConfig(region=self.region_name, endpoint_url=self.kinesis_endpoint)
        if self.kinesis_role_arn:
            config = config.with_(assume_role_arn=self.kinesis_role_arn,
                                  assume_role_session_name=self.kinesis_role_session_name,
                                  assume_role_external_id=self.kinesis_role_external_id)
        return config

    def cloudwatch_client_config(self) -> ClientConfig:
        return ClientConfig(region=self.region_name)

    def with_(self, **changes: Any) -> WorkerConfig:
        """A copy with ``changes``; an unknown or renamed name is an UnknownSettingError (a TypeError) naming it."""
        check_names(changes, _FIELD_NAMES, SETTINGS, "WorkerConfig.with_()", renamed=RENAMED, owner="KCL")
        return replace(self, **changes)


# --- the settings table ---------------------------------------------------------------------------


def property_key(field_name: str) -> str:
    """The KCL properties key of a field: ``failover_time_ms`` -> ``failoverTimeMillis``."""
    return _BY_FIELD[field_name].key


def _validate(config: WorkerConfig) -> None:
    validate(config, SETTINGS)
    if config.failover_time_ms < 3 * config.epsilon_ms + 300:
        raise ConfigurationError(
            f"{_named('failover_time_ms')} must leave room for three renewals "
            f"(>= 3 x epsilon + 300 ms), got {config.failover_time_ms}"
        )
    if config.task_backoff_time_ms > config.max_task_backoff_time_ms:
        raise ConfigurationError(f"{_named('task_backoff_time_ms')} must not exceed "
                                 f"{_named('max_task_backoff_time_ms')}")
    at_timestamp = config.initial_position_in_stream is InitialPosition.AT_TIMESTAMP
    if at_timestamp and config.initial_timestamp is None:
        raise ConfigurationError(f"initial position AT_TIMESTAMP needs a timestamp ({_named('initial_timestamp')})")
    if not at_timestamp and config.initial_timestamp is not None:
        raise ConfigurationError(f"{_named('initial_timestamp')} is only valid with initial position AT_TIMESTAMP")
    if config.dead_letter is not None and not callable(config.dead_letter):
        raise ConfigurationError("dead_letter must be callable")
    _validate_endpoint(config)
    if config.kinesis_role_arn is not None and not (isinstance(config.kinesis_role_arn, str)
                                                    and _ROLE_ARN.fullmatch(config.kinesis_role_arn)):
        raise ConfigurationError(f"kinesis_role_arn {config.kinesis_role_arn!r} is not an IAM role ARN "
                                 "(arn:aws:iam::<account>:role/<name>)")


def _named(field_name: str) -> str:
    return _BY_FIELD[field_name].named


def _validate_endpoint(config: WorkerConfig) -> None:
    if config.metrics_port is None and config.metrics_address is None:
        return
    # Imported here: the endpoint's module loads the HTTP server, which a worker without one never needs.
    from kpl.observability import check_address, check_port

    if config.metrics_port is None:
        raise ConfigurationError(f"{_named('metrics_address')} needs a port: set {_named('metrics_port')} too")
    if isinstance(config.metrics_port, bool):
        raise ConfigurationError(f"{_named('metrics_port')}: {config.metrics_port!r} is not a port number (0-65535)")
    check_port(config.metrics_port, _named("metrics_port"))
    if config.metrics_address is not None:
        check_address(config.metrics_address, _named("metrics_address"))


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")

_FIELD_NAMES = frozenset(item.name for item in fields(WorkerConfig))
