"""Producer settings: the Java KPL's names, defaults and ranges, so existing configurations carry over.

``ProducerConfig`` uses Python names (``record_ttl_ms`` for the KPL's ``RecordTtl``); times stay in
milliseconds as in the KPL so numbers copied from a Java configuration mean the same thing.
``ProducerConfig.from_properties(path)`` reads a KPL ``.properties`` file unchanged: every key the
Java ``KinesisProducerConfiguration`` accepts is accepted here, and the ones that configure parts
this producer does not have (the native daemon's threads, log level, certificates) are recorded in
``ignored_settings`` instead of failing the load.  An unknown key or an invalid value is an error
that names the key (and the file and line).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypedDict

from kpl.aws import ClientConfig
from kpl.errors import ArgumentTypeError, ConfigurationError
from kpl.properties import last_wins, read_properties
from kpl.settings import Setting, check, check_names, checked_names, convert, validate

MAX_LONG = 2**63 - 1
MIB = 1024 * 1024

class MetricsLevel(enum.StrEnum):
    """The KPL's ``MetricsLevel``: which metrics are uploaded to CloudWatch (docs/kpl.md)."""

    NONE = "none"
    SUMMARY = "summary"
    DETAILED = "detailed"


class MetricsGranularity(enum.StrEnum):
    """The KPL's ``MetricsGranularity``: the finest dimension metrics are uploaded with."""

    GLOBAL = "global"
    STREAM = "stream"
    SHARD = "shard"


#: The values of the closed sets, as strings (kpl.metrics and the docs read them).
METRICS_LEVELS = tuple(level.value for level in MetricsLevel)
METRICS_GRANULARITIES = tuple(granularity.value for granularity in MetricsGranularity)

_HOST_PATTERN = re.compile(r"^([A-Za-z0-9-.]+)?$")
_REGION_PATTERN = re.compile(r"^([a-z]+-([a-z]+-)?[a-z]+-[0-9])?$")

_SETTINGS = (
    Setting("AggregationEnabled", "aggregation_enabled", "bool"),
    Setting("AggregationMaxCount", "aggregation_max_count", "int", 1, MAX_LONG),
    Setting("AggregationMaxSize", "aggregation_max_size", "int", 64, 10 * MIB, unit="bytes"),
    Setting("CollectionMaxCount", "collection_max_count", "int", 1, 500),
    Setting("CollectionMaxSize", "collection_max_size", "int", 52224, MAX_LONG, unit="bytes"),
    Setting("RecordMaxBufferedTime", "record_max_buffered_time_ms", "int", 0, MAX_LONG, unit="ms"),
    Setting("RecordTtl", "record_ttl_ms", "int", 100, MAX_LONG, unit="ms"),
    Setting("RateLimit", "rate_limit", "int", 1, MAX_LONG),
    Setting("FailIfThrottled", "fail_if_throttled", "bool"),
    Setting("MaxConnections", "max_connections", "int", 1, 256),
    Setting("RequestTimeout", "request_timeout_ms", "int", 100, 600000, unit="ms"),
    Setting("ConnectTimeout", "connect_timeout_ms", "int", 100, 300000, unit="ms"),
    Setting("MaxUserRecordSize", "max_user_record_size", "int", 64, 10 * MIB, unit="bytes", optional=True),
    Setting("MetricsLevel", "metrics_level", "enum", choices=MetricsLevel),
    Setting("MetricsGranularity", "metrics_granularity", "enum", choices=MetricsGranularity),
    Setting("MetricsNamespace", "metrics_namespace", "str", pattern=re.compile(r"^(?!AWS/).{1,255}$")),
    Setting("MetricsUploadDelay", "metrics_upload_delay_ms", "int", 1, 60000, unit="ms"),
    Setting("KinesisEndpoint", "kinesis_endpoint", "str"),
    Setting("KinesisPort", "kinesis_port", "int", 1, 65535),
    Setting("CloudwatchEndpoint", "cloudwatch_endpoint", "str"),
    Setting("CloudwatchPort", "cloudwatch_port", "int", 1, 65535),
    Setting("Region", "region", "str", pattern=_REGION_PATTERN),
    # Not KPL keys: this producer's own settings, accepted in properties files under these names.
    Setting("OrderedPerShard", "ordered_per_shard", "bool"),
    Setting("MaxOutstandingRecords", "max_outstanding_records", "int", 1, MAX_LONG),
    Setting("MaxOutstandingBytes", "max_outstanding_bytes", "int", 1, MAX_LONG, unit="bytes"),
    Setting("CborProtocol", "cbor_protocol", "bool"),
)
_BY_KEY = {setting.key: setting for setting in _SETTINGS}

#: Keys of earlier KPL releases, read as their current names.
_LEGACY_KEYS = {"CustomEndpoint": "KinesisEndpoint", "Port": "KinesisPort"}

#: KPL keys that configure the Java wrapper or the native daemon, which this producer does not
#: have; accepted (so a KPL file loads unchanged) and listed in ``ignored_settings``.
IGNORED_KPL_KEYS = frozenset({
    "LogLevel", "MinConnections", "VerifyCertificate", "ThreadingModel", "ThreadPoolSize", "EnableCoreDumps",
    "NativeExecutable", "TempDirectory", "CaCertPath", "CaCertFile", "CredentialsRefreshDelay", "StsEndpoint",
    "StsPort", "ProxyHost", "ProxyPort", "ProxyUserName", "ProxyPassword", "UserRecordTimeoutInMillis",
    "EnableOldestFutureTracker", "ReturnUserRecordOnFailure", "EnableDaemonHealthCheck",
    "DaemonHealthCheckTimeoutMs", "GlueSchemaRegistryPropertiesFilePath",
})


_KEY_HINT = " (or use ProducerConfig.from_kpl_settings)"


@checked_names(_SETTINGS, key_hint=_KEY_HINT, owner="KPL")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerConfig:
    """Every producer setting, with the Java KPL's defaults.  See docs/kpl.md for the full table."""

    aggregation_enabled: bool = True
    aggregation_max_count: int = 4294967295
    aggregation_max_size: int = 51200
    collection_max_count: int = 500
    collection_max_size: int = 5 * MIB
    record_max_buffered_time_ms: int = 100
    record_ttl_ms: int = 30000
    rate_limit: int = 150
    fail_if_throttled: bool = False
    max_connections: int = 24
    request_timeout_ms: int = 6000
    connect_timeout_ms: int = 6000
    #: Client-side cap on partition key + data.  None: the stream's own maximum record size
    #: (1 MiB unless the stream was created or updated with a larger MaxRecordSizeInKiB).
    max_user_record_size: int | None = None
    #: A MetricsLevel, or its string ("none", "summary", "detailed").
    metrics_level: MetricsLevel = MetricsLevel.DETAILED
    #: A MetricsGranularity, or its string ("global", "stream", "shard").
    metrics_granularity: MetricsGranularity = MetricsGranularity.SHARD
    metrics_namespace: str = "KinesisProducerLibrary"
    metrics_upload_delay_ms: int = 60000
    #: Endpoint override: a host name (TLS on ``kinesis_port``, as in the KPL) or a full URL.
    #: Empty: standard AWS configuration (AWS_ENDPOINT_URL and friends) decides.
    kinesis_endpoint: str = ""
    kinesis_port: int = 443
    cloudwatch_endpoint: str = ""
    cloudwatch_port: int = 443
    #: Empty: the region from standard AWS configuration.
    region: str = ""
    #: Not a KPL setting.  Records of one shard are never reordered, even across retries: at most
    #: one PutRecords in flight per shard, carrying one Kinesis record of that shard.
    ordered_per_shard: bool = False
    #: Not KPL settings: the backpressure bounds.  ``put_record`` waits while either is reached.
    max_outstanding_records: int = 100_000
    max_outstanding_bytes: int = 64 * MIB
    #: Not a KPL setting: PutRecords in Kinesis' CBOR protocol (the AWS SDK for Java's default), without
    #: base64; the other calls stay JSON.  False sends PutRecords as JSON, as botocore does.  See kpl/wire.py.
    cbor_protocol: bool = True
    #: Not a KPL setting: where the producer's clients get credentials (explicit keys, an assumed
    #: role) when standard AWS configuration is not what the application wants.  Its timeouts, pool
    #: size and retries are replaced per client; its region applies unless ``region`` is set, its
    #: endpoint to the Kinesis clients unless ``kinesis_endpoint`` is set.
    client_config: ClientConfig = field(default_factory=ClientConfig)
    #: KPL keys accepted from a properties file but without effect here, as (key, value) pairs.
    ignored_settings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        validate(self, _SETTINGS)
        for endpoint, name in ((self.kinesis_endpoint, "kinesis_endpoint"),
                               (self.cloudwatch_endpoint, "cloudwatch_endpoint")):
            if "://" not in endpoint and not _HOST_PATTERN.match(endpoint):
                raise ConfigurationError(f"{name}: {endpoint!r} is neither a host name nor a URL")

    # --- loading ----------------------------------------------------------------------------------

    @classmethod
    def from_properties(cls, path: str | Path, **overrides: Any) -> ProducerConfig:
        """Load a Java KPL ``.properties`` file; ``overrides`` (Python names) win over the file."""
        source = Path(path)
        entries = last_wins(read_properties(source, what="KPL properties file"), str(source),
                            lambda key: _LEGACY_KEYS.get(key, key))
        settings = {entry.key: (entry.value, f"{source}:{entry.line}") for entry in entries.values()}
        return cls._from_kpl(settings, overrides)

    @classmethod
    def from_kpl_settings(cls, settings: Mapping[str, object], **overrides: Any) -> ProducerConfig:
        """Build from KPL key names (``{"RecordTtl": 60000, ...}``), values as str or native types."""
        return cls._from_kpl({key: (value, "settings") for key, value in settings.items()}, overrides)

    @classmethod
    def _from_kpl(cls, settings: Mapping[str, tuple[object, str]], overrides: Mapping[str, Any]) -> ProducerConfig:
        values: dict[str, Any] = {}
        ignored: list[tuple[str, str]] = []
        for raw_key, (raw_value, origin) in settings.items():
            key = _LEGACY_KEYS.get(raw_key, raw_key)
            setting = _BY_KEY.get(key)
            if setting is None:
                if key in IGNORED_KPL_KEYS:
                    ignored.append((key, str(raw_value)))
                    continue
                raise ConfigurationError(
                    f"{raw_key} ({origin}): unknown KPL setting; known settings are "
                    f"{', '.join(sorted(_BY_KEY))} (and the daemon-only {', '.join(sorted(IGNORED_KPL_KEYS))})"
                )
            name = f"{raw_key} ({origin})"
            value = _convert(setting, raw_value, name)
            check(setting, value, name)
            values[setting.field] = value
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"{', '.join(sorted(unknown))}: not a ProducerConfig setting")
        values.update(overrides)
        values["ignored_settings"] = tuple(ignored)
        return cls(**values)

    def with_(self, **changes: Any) -> ProducerConfig:
        """A copy with ``changes`` (Python names); an unknown name is an UnknownSettingError (a TypeError) naming it."""
        check_setting_names(changes, "ProducerConfig.with_()")
        return replace(self, **changes)

    # --- derived values ---------------------------------------------------------------------------

    @property
    def record_max_buffered_time(self) -> float:
        return self.record_max_buffered_time_ms / 1000.0

    @property
    def record_ttl(self) -> float:
        return self.record_ttl_ms / 1000.0

    def _client(self, endpoint_url: str | None, **settings: Any) -> ClientConfig:
        base = self.client_config
        return base.with_(region=self.region or base.region, endpoint_url=endpoint_url, **settings)

    def _kinesis_endpoint_url(self) -> str | None:
        return _endpoint_url(self.kinesis_endpoint, self.kinesis_port) or self.client_config.endpoint_url

    def kinesis_client_config(self) -> ClientConfig:
        """PutRecords client: botocore's retries off (the producer retries), pool = MaxConnections."""
        return self._client(
            self._kinesis_endpoint_url(),
            connect_timeout=self.connect_timeout_ms / 1000.0,
            read_timeout=self.request_timeout_ms / 1000.0,
            max_pool_connections=self.max_connections,
            max_attempts=1,
            # The producer builds every PutRecords entry itself; botocore's per-entry validation
            # would cost more CPU than the rest of the request path.
            parameter_validation=False,
        )

    def control_client_config(self) -> ClientConfig:
        """ListShards / DescribeStreamSummary: few calls, botocore's standard retries are welcome."""
        return self._client(
            self._kinesis_endpoint_url(),
            connect_timeout=self.connect_timeout_ms / 1000.0,
            read_timeout=self.request_timeout_ms / 1000.0,
            max_pool_connections=2,
            max_attempts=3,
            parameter_validation=True,
        )

    def cloudwatch_client_config(self) -> ClientConfig:
        """PutMetricData: two attempts at most, so a dead network holds up the final upload only briefly."""
        return self._client(
            _endpoint_url(self.cloudwatch_endpoint, self.cloudwatch_port),
            parameter_validation=True,
            connect_timeout=self.connect_timeout_ms / 1000.0,
            read_timeout=self.request_timeout_ms / 1000.0,
            max_pool_connections=2,
            max_attempts=2,
        )


class ProducerSettings(TypedDict, total=False):
    """The settings ``Producer(...)`` and ``AsyncProducer(...)`` take as keywords (ProducerConfig's fields)."""

    aggregation_enabled: bool
    aggregation_max_count: int
    aggregation_max_size: int
    collection_max_count: int
    collection_max_size: int
    record_max_buffered_time_ms: int
    record_ttl_ms: int
    rate_limit: int
    fail_if_throttled: bool
    max_connections: int
    request_timeout_ms: int
    connect_timeout_ms: int
    max_user_record_size: int | None
    metrics_level: MetricsLevel | str
    metrics_granularity: MetricsGranularity | str
    metrics_namespace: str
    metrics_upload_delay_ms: int
    kinesis_endpoint: str
    kinesis_port: int
    cloudwatch_endpoint: str
    cloudwatch_port: int
    region: str
    ordered_per_shard: bool
    max_outstanding_records: int
    max_outstanding_bytes: int
    cbor_protocol: bool
    client_config: ClientConfig


def check_setting_names(names: Iterable[str], where: str) -> None:
    """Raise UnknownSettingError (a TypeError) for a name that is not a producer setting, suggesting the closest.

    A KPL key (``RecordTtl``) is pointed to its Python name (``record_ttl_ms``).
    """
    check_names(names, _SETTING_NAMES, _NAMED_BY_KEYS, where, key_hint=_KEY_HINT, owner="KPL",
                fallback="see kpl.ProducerSettings")


#: What ``Producer(**settings)`` and ``with_`` take: ProducerSettings' keys (tests check it against the table).
_SETTING_NAMES = frozenset(ProducerSettings.__annotations__)
_NAMED_BY_KEYS = (*_SETTINGS, *(replace(_BY_KEY[new], key=old) for old, new in _LEGACY_KEYS.items()))


def settings_config(config: ProducerConfig | None, settings: Mapping[str, Any], where: str) -> ProducerConfig:
    """The configuration of a producer made with ``config`` and keyword ``settings``."""
    if config is not None and not isinstance(config, ProducerConfig):
        raise ArgumentTypeError(
            f"{where} takes a kpl.ProducerConfig (or keyword settings), not {type(config).__name__}")
    check_setting_names(settings, where)
    base = config if config is not None else ProducerConfig()
    return replace(base, **settings) if settings else base


def _endpoint_url(endpoint: str, port: int) -> str | None:
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    return f"https://{endpoint}:{port}"


def _convert(setting: Setting, raw: object, name: str) -> object:
    """A properties-file string (or a native value) as the setting's type; errors name the key."""
    if not isinstance(raw, str) or setting.kind not in _EXPECTED:
        return convert(setting, raw.strip() if isinstance(raw, str) else raw, name)
    text = raw.strip()
    if text.endswith(";"):
        # KPL leniency, not the properties format: the KPL's own sample file writes
        # ``MaxUserRecordSize = 1048576;``, and that file must load unchanged.
        text = text[:-1].rstrip()
    try:
        return convert(setting, text, name)
    except ConfigurationError:
        raise ConfigurationError(f"{name}: {_EXPECTED[setting.kind]}, got {raw!r}") from None


_EXPECTED = {"bool": "expected true or false", "int": "expected an integer"}
