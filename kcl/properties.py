"""KCL/MultiLangDaemon ``.properties`` files: every key the KCL 3.x MultiLangDaemon accepts, checked strictly.

A key is one of:

* a setting of :class:`kcl.config.WorkerConfig` under its KCL name (``failoverTimeMillis``), or an
  alias the MultiLangDaemon also accepts (``workerIdentifier``, ``fanoutConfig.consumerArn``,
  ``shutdownGraceMillis``), including MultiLang mode's ``executableName`` and ``timeoutInSeconds``;
* what to run (``streamName``/``streamArn``, ``applicationName``, ``processor``);
* ``AwsCredentialsProvider``: a provider naming a role (``StsAssumeRoleCredentialsProvider|<role
  ARN>|<session>``) is honoured for the Kinesis client; the default chain needs nothing;
* a KCL key without meaning for this worker (:data:`IGNORED_KCL_KEYS`: JVM thread pools, the KCL 3.x
  worker-metrics and coordinator-state tables, ...): accepted and reported, so the caller can log them;
* anything else: a typo, which fails with an error naming the key and the likely intended one.

The MultiLangDaemon's key list is ``MultiLangDaemonConfiguration`` and its delegated config beans
(KCL 3.5), plus ``executableName``, ``processingLanguage`` and ``maxActiveThreads``.

The file format is Java's, read by :mod:`kpl.properties`.  A setting given twice, under one name or
under a name and its alias (``workerId`` and ``workerIdentifier``), takes the last value, with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcl.config import SETTINGS, InitialPosition, RetrievalMode, WorkerConfig
from kcl.stream import parse_stream_arn
from kpl.errors import ConfigurationError
from kpl.properties import last_wins, read_properties
from kpl.settings import Setting, check, closest, convert

#: KCL 3.x MultiLangDaemon keys that have no meaning for this worker.  Accepted so that an existing
#: properties file works unchanged, and reported so that the caller can say so.
IGNORED_KCL_KEYS = frozenset({
    # the MultiLang daemon's user-agent suffix (which the KCL 3.x daemon no longer sends) and JVM thread pools
    "processingLanguage", "maxActiveThreads", "maxGetRecordsThreadPool", "javaOptions",
    # lease management and coordination of the Java implementation
    "enablePriorityLeaseAssignment", "ignoreUnexpectedChildShards", "initialLeaseTableReadCapacity",
    "initialLeaseTableWriteCapacity", "leaseTableScanTotalSegments", "listShardsBackoffTimeInMillis",
    "maxListShardsRetryAttempts", "shardPrioritization", "skipShardSyncAtWorkerInitializationIfLeasesExist",
    "schedulerInitializationBackoffTimeMillis", "clientVersionConfig", "migrateAllEntitiesToLeaseTable",
    "tableMigrationCompleteBakeTimeSeconds", "validateSequenceNumberBeforeCheckpointing",
    "logWarningForTaskAfterMillis", "maxLeaseRenewalThreadCount",
    # retrieval and metrics
    "retryGetRecordsInSeconds", "millisBehindLatestThresholdForReducedTps", "metricsMaxQueueSize",
    "metricsEnabledDimensions", "fanoutConfig.maxDescribeStreamSummaryRetries",
    "fanoutConfig.maxDescribeStreamConsumerRetries", "fanoutConfig.registerStreamConsumerRetries",
    "fanoutConfig.retryBackoffMillis",
    # KCL 3.x worker-utilization-aware assignment, and its worker-metrics and coordinator-state tables
    "disableWorkerMetrics", "maxThroughputPerHostKBps", "dampeningPercentage", "reBalanceThresholdPercentage",
    "allowThroughputOvershoot", "varianceBalancingFrequency", "workerMetricsEMAAlpha",
    "inMemoryWorkerMetricsCaptureFrequencyMillis", "workerMetricsReporterFreqInMillis",
    "noOfPersistedMetricsPerWorkerMetrics", "staleWorkerMetricsEntryCleanupDuration",
    "workerMetricsTableName", "workerMetricsBillingMode", "workerMetricsReadCapacity", "workerMetricsWriteCapacity",
    "workerMetricsPointInTimeRecoveryEnabled", "workerMetricsDeletionProtectionEnabled", "workerMetricsTags",
    "coordinatorStateTableName", "coordinatorStateBillingMode", "coordinatorStateReadCapacity",
    "coordinatorStateWriteCapacity", "coordinatorStatePointInTimeRecoveryEnabled",
    "coordinatorStateDeletionProtectionEnabled", "coordinatorStateTags",
    # older KCL/MultiLang versions
    "userAgent", "kinesisClientLibVersion", "workerMetricsTableConfig", "coordinatorStateConfig",
})

#: Other names the MultiLangDaemon accepts for a WorkerConfig field.
KEY_ALIASES = {
    "workerIdentifier": "workerId",
    "fanoutConfig.consumerArn": "consumerArn",
    "fanoutConfig.consumerName": "consumerName",
    "shutdownGraceMillis": "gracefulShutdownTimeoutMillis",
}

#: Keys that mean something only in MultiLang mode (no ``processor``): without effect next to a processor.
MULTILANG_KEYS = ("executableName", "timeoutInSeconds")

#: Keys that name what to run rather than how (the CLI's --stream/--application/--processor).
_TARGET_KEYS = ("streamName", "streamArn", "applicationName", "processor")

#: The MultiLangDaemon's credentials keys (matched case-insensitively, as it does).
_CREDENTIALS_KEYS = ("AwsCredentialsProvider", "AwsCredentialsProviderDynamoDB", "AwsCredentialsProviderCloudWatch")
_ASSUME_ROLE_PROVIDERS = frozenset({"StsAssumeRoleCredentialsProvider", "KclStsAssumeRoleCredentialsProvider",
                                    "STSAssumeRoleSessionCredentialsProvider"})
_DEFAULT_PROVIDERS = frozenset({"DefaultCredentialsProvider", "DefaultAWSCredentialsProviderChain"})


# --- values ---------------------------------------------------------------------------------------


def _parse_str(key: str, text: str) -> str:
    if not text:
        raise ConfigurationError(f"{key} must not be empty")
    return text


def _parse(setting: Setting, name: str, text: str) -> Any:
    """A properties value as its setting's type (kpl.settings' converters; Java's true/false only)."""
    if setting.kind == "str":
        return _parse_str(name, text)
    if setting.field == "retrieval_mode" and text.upper() == "DEFAULT":
        return RetrievalMode.POLLING  # the MultiLangDaemon's DEFAULT: this worker's default
    value = convert(setting, text, name)
    check(setting, value, name)
    return value * setting.scale if setting.kind == "int" else value


def _settable_fields() -> dict[str, Setting]:
    """properties key (or alias) -> setting, for every field a properties file may set."""
    table = {setting.key: setting for setting in SETTINGS}
    for alias, key in KEY_ALIASES.items():
        table[alias] = table[key]
    return table


def credentials_provider_settings(key: str, value: str, where: str = "") -> dict[str, Any] | None:
    """WorkerConfig settings for an ``AwsCredentialsProvider`` value; None when it changes nothing.

    ``<provider>[|<argument>]*[|<nested key>=<value>]*`` as the MultiLangDaemon reads it.  An
    assume-role provider sets the Kinesis client's role; the default chain is what is used anyway.
    Other providers (profiles, static keys in Java system properties, ...) have no equivalent here.
    """
    parts = [part.strip() for part in value.split("|")]
    provider = parts[0].rsplit(".", 1)[-1]
    if provider not in _ASSUME_ROLE_PROVIDERS:
        return None
    arguments = [part for part in parts[1:] if "=" not in part]
    nested = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    if not arguments:
        raise ConfigurationError(f"{where}{key}: {provider} needs a role ARN ({provider}|<role ARN>|<session name>)")
    if key != "AwsCredentialsProvider":
        raise ConfigurationError(
            f"{where}{key}: a role for the lease table or metrics is not supported; they use the standard AWS "
            "credential chain (name the role in AwsCredentialsProvider to read a stream of another account)"
        )
    settings: dict[str, Any] = {"kinesis_role_arn": arguments[0]}
    if len(arguments) > 1:
        settings["kinesis_role_session_name"] = arguments[1]
    if nested.get("externalId"):
        settings["kinesis_role_external_id"] = nested["externalId"]
    return settings


# --- files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedProperties:
    """What a properties file says: the worker settings plus what to run, and the keys ignored."""

    settings: Mapping[str, Any]
    stream_name: str | None = None
    #: Set when the file names the stream by ``streamArn`` (which wins over ``streamName``).
    stream_arn: str | None = None
    application_name: str | None = None
    processor: str | None = None
    ignored_keys: tuple[str, ...] = ()
    #: The file read: MultiLang mode resolves a relative ``executableName`` against its directory.
    source: Path | None = None

    @property
    def directory(self) -> Path:
        """Where a relative ``executableName`` is looked for first: the file's directory (else the current one)."""
        return self.source.resolve().parent if self.source is not None else Path.cwd()

    def keys_without_effect(self, native: bool) -> tuple[str, ...]:
        """The keys to report as accepted without effect; MultiLang mode's own keys too when ``native``."""
        multilang = tuple(key for key in MULTILANG_KEYS if native and _FIELD_OF[key] in self.settings)
        return self.ignored_keys + multilang

    @property
    def stream(self) -> str | None:
        """What to hand to :class:`kcl.Worker`: the ARN when there is one, else the name."""
        return self.stream_arn or self.stream_name

    def worker_config(self, **overrides: Any) -> WorkerConfig:
        return WorkerConfig(**{**self.settings, **overrides})


def _canonical(key: str) -> str:
    for name in _CREDENTIALS_KEYS:
        if key.lower() == name.lower():
            return name
    return key


def load_properties(path: str | Path) -> LoadedProperties:
    """Read a KCL/MultiLangDaemon-style properties file; unknown keys and bad values raise."""
    source = Path(path)
    settable = _settable_fields()
    settings: dict[str, Any] = {}
    targets: dict[str, str] = {}
    ignored: list[str] = []

    def setting_of(raw_key: str) -> str:
        key = _canonical(raw_key)
        return settable[key].field if key in settable else key

    # Java's rule: the last value wins, also between two names of one setting (workerId, workerIdentifier).
    for number, raw_key, value in last_wins(read_properties(source), str(source), setting_of).values():
        where = f"{source}:{number}"
        key = _canonical(raw_key)
        if key in _TARGET_KEYS:
            targets[key] = _parse_str(f"{where}: {key}", value)
        elif key in _CREDENTIALS_KEYS:
            role = credentials_provider_settings(key, _parse_str(f"{where}: {key}", value), f"{where}: ")
            if role is None:
                ignored.append(key)
            else:
                settings.update(role)
        elif key in IGNORED_KCL_KEYS:
            ignored.append(key)
        elif key in settable:
            setting = settable[key]
            settings[setting.field] = _parse(setting, f"{where}: {key}", value)
        else:
            raise ConfigurationError(f"{where}: unknown setting {key!r}{_suggestion(key, settable)}")
    if "initial_timestamp" in settings and "initial_position_in_stream" not in settings:
        settings["initial_position_in_stream"] = InitialPosition.AT_TIMESTAMP
    stream_arn = targets.get("streamArn")
    stream = targets.get("streamName")
    if stream_arn is not None:
        try:
            stream = parse_stream_arn(stream_arn).name
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
    try:
        WorkerConfig(**settings)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    return LoadedProperties(
        settings=settings, stream_name=stream, stream_arn=stream_arn, application_name=targets.get("applicationName"),
        processor=targets.get("processor"), ignored_keys=tuple(ignored), source=source,
    )


_FIELD_OF = {key: _settable_fields()[key].field for key in MULTILANG_KEYS}


def _suggestion(key: str, settable: Mapping[str, object]) -> str:
    close = closest(key, [*settable, *_TARGET_KEYS])
    return f" (did you mean {close[0]!r}?)" if close else ""
