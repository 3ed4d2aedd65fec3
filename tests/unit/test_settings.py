"""kpl.settings: the one settings style, and each config's table against its dataclass and its file format.

The property tests (one per config: ProducerConfig, WorkerConfig, the agent's), run for every row of each
table, write one setting as its file carries it (a KPL or KCL .properties line, an agent.json key with a
JSON number or a string), load the file with the config's own loader, and compare the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kpl
from agent.config import load_config
from agent.config_types import FLOW_SETTINGS, GLOBAL_SETTINGS, AgentConfig, Destination, FlowConfig
from kcl.config import RENAMED as WORKER_RENAMED
from kcl.config import SETTINGS as WORKER_SETTINGS
from kcl.config import InitialPosition, RetrievalMode, WorkerConfig
from kcl.config import MetricsLevel as KclMetricsLevel
from kcl.properties import load_properties
from kpl import ConfigurationError, MetricsGranularity, MetricsLevel, ProducerConfig, UnknownSettingError
from kpl.config import _SETTINGS as PRODUCER_SETTINGS
from kpl.config import ProducerSettings
from kpl.settings import Setting, check, convert

MAX_DRAWN = 10**12
EXAMPLES = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def table_fields(table: tuple[Setting, ...]) -> list[str]:
    return [setting.field for setting in table if setting.field]


def assert_one_key_per_field(table: tuple[Setting, ...], config: type, derived: set[str]) -> None:
    names = table_fields(table)
    assert len(names) == len(set(names)), "a field carries two keys"
    keys = [setting.key for setting in table]
    assert len(keys) == len(set(keys)), "a key is in the table twice"
    assert set(names) | derived == {item.name for item in fields(config)}
    assert not set(names) & derived


def ints(setting: Setting, low: int | None = None, high: int | None = None) -> st.SearchStrategy[int]:
    lowest = setting.minimum if low is None else low
    highest = setting.maximum if high is None else high
    return st.integers(min_value=-MAX_DRAWN if lowest is None else lowest,
                       max_value=MAX_DRAWN if highest is None else min(highest, 2**63 - 1))


# --- the shared routine ---------------------------------------------------------------------------


def test_one_converter_per_kind() -> None:
    number = Setting("Count", "count", "int", 1, 10)
    assert convert(number, " 7 ", "count") == 7 and convert(number, 7, "count") == 7
    with pytest.raises(ConfigurationError, match=r"count: expected an integer, got '7.0'"):
        convert(number, "7.0", "count")
    with pytest.raises(ConfigurationError, match="count: expected an integer, got True"):
        convert(number, True, "count")
    with pytest.raises(ConfigurationError, match=r"count: 11 is outside the valid range 1..10"):
        check(number, 11, "count")
    flag = Setting("On", "on", "bool")
    assert convert(flag, "TRUE", "on") is True
    with pytest.raises(ConfigurationError, match="on: expected true or false, got 'yes'"):
        convert(flag, "yes", "on")
    level = Setting("MetricsLevel", "metrics_level", "enum", choices=MetricsLevel)
    assert convert(level, "summary", "level") is MetricsLevel.SUMMARY
    with pytest.raises(ConfigurationError, match="'SUMMARY' is not one of none, summary, detailed"):
        convert(level, "SUMMARY", "level")
    folded = Setting("MetricsLevel", "metrics_level", "enum", choices=MetricsLevel, fold_case=True)
    assert convert(folded, "SUMMARY", "level") is MetricsLevel.SUMMARY


def test_a_scaled_setting_is_checked_in_the_unit_of_its_key_or_of_its_field() -> None:
    seconds = Setting("timeoutSeconds", "timeout_ms", "int", 1, 10, unit="s", scale=1000)
    check(seconds, 10, "timeoutSeconds")
    check(seconds, 10_000, "timeout_ms", scaled=True)
    with pytest.raises(ConfigurationError, match=r"11000 is outside the valid range 1000..10000"):
        check(seconds, 11_000, "timeout_ms", scaled=True)


# --- ProducerConfig -------------------------------------------------------------------------------


def test_producer_table_typed_dict_and_dataclass_agree() -> None:
    assert_one_key_per_field(PRODUCER_SETTINGS, ProducerConfig, {"client_config", "ignored_settings"})
    # ProducerSettings types Producer(**settings); it is every ProducerConfig field a caller may set.
    assert set(ProducerSettings.__annotations__) == set(table_fields(PRODUCER_SETTINGS)) | {"client_config"}


def test_metrics_closed_sets_are_str_enums_and_strings_still_work() -> None:
    config = ProducerConfig(metrics_level="none", metrics_granularity="stream")  # type: ignore[arg-type]
    assert config.metrics_level is MetricsLevel.NONE and config.metrics_level == "none"
    assert config.metrics_granularity is MetricsGranularity.STREAM
    assert ProducerConfig().with_(metrics_level=MetricsLevel.SUMMARY).metrics_level == "summary"
    assert kpl.MetricsLevel is MetricsLevel and "MetricsGranularity" in kpl.__all__
    with pytest.raises(ConfigurationError, match=r"metrics_level \(MetricsLevel\): 'verbose' is not one of"):
        ProducerConfig(metrics_level="verbose")  # type: ignore[arg-type]


def test_unknown_names_at_construction_say_what_was_meant() -> None:
    with pytest.raises(UnknownSettingError, match=r"ProducerConfig\(\) got an unknown setting 'record_tt': "
                                                  r"did you mean 'record_ttl_ms'"):
        ProducerConfig(record_tt=5)  # type: ignore[call-arg]
    with pytest.raises(UnknownSettingError, match="the KPL's RecordTtl is 'record_ttl_ms' here"):
        ProducerConfig().with_(RecordTtl=5)
    with pytest.raises(TypeError):
        ProducerConfig(100)  # type: ignore[misc]  # keyword-only


_REGIONS = st.sampled_from(["", "us-east-1", "eu-west-2", "us-gov-west-1", "ap-southeast-3"])
_HOSTS = st.sampled_from(["", "kinesis.internal", "127.0.0.1", "vpce-1.kinesis.us-east-1.vpce.amazonaws.com"])
_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./", min_size=1,
                 max_size=40)


def producer_value(setting: Setting) -> st.SearchStrategy[Any]:
    if setting.kind == "bool":
        return st.booleans()
    if setting.kind == "int":
        return ints(setting)
    if setting.kind == "enum":
        assert setting.choices is not None
        return st.sampled_from(list(setting.choices))
    if setting.field == "region":
        return _REGIONS
    if setting.field.endswith("_endpoint"):
        return _HOSTS
    return _WORDS.filter(lambda text: not text.startswith("AWS/"))


def as_properties(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def key_of(setting: Setting) -> str:
    return setting.key


@pytest.mark.parametrize("setting", PRODUCER_SETTINGS, ids=key_of)
@EXAMPLES
@given(data=st.data())
def test_every_producer_setting_round_trips_through_a_kpl_properties_file(tmp_path: Path, setting: Setting,
                                                                          data: st.DataObject) -> None:
    value = data.draw(producer_value(setting))
    path = tmp_path / "producer.properties"
    path.write_text(f"{setting.key} = {as_properties(value)}\n")
    assert getattr(ProducerConfig.from_properties(path), setting.field) == value


# --- the agent ------------------------------------------------------------------------------------


def test_agent_tables_and_dataclasses_agree() -> None:
    assert_one_key_per_field(FLOW_SETTINGS, FlowConfig, {
        "id", "destination_kind", "destination", "multi_line_start_pattern", "file_footer_pattern",
        "truncated_record_terminator", "converters", "effective"})
    assert_one_key_per_field(GLOBAL_SETTINGS, AgentConfig, {
        "source", "checkpoint_file", "metrics_endpoint", "kinesis_client", "firehose_client", "cloudwatch_client",
        "flows", "ineffective", "explicit", "effective"})
    for setting in (*FLOW_SETTINGS, *GLOBAL_SETTINGS):
        if setting.field.endswith("_ms"):
            assert setting.unit == "ms" or (setting.unit == "s" and setting.scale == 1000), setting.key


def test_agent_configs_name_an_unknown_field_too() -> None:
    with pytest.raises(UnknownSettingError,
                       match=r"FlowConfig\(\) got an unknown setting 'max_buffer_age': did you mean "
                             r"'max_buffer_age_ms'"):
        FlowConfig(max_buffer_age=60.0)  # type: ignore[call-arg]
    with pytest.raises(UnknownSettingError, match="Java agent's shutdownTimeoutMillis is 'shutdown_timeout_ms' here"):
        AgentConfig(shutdownTimeoutMillis=10)  # type: ignore[call-arg]


#: Bounds that depend on another key (checked by the loader, not the row), as (low, high) for one key alone.
_AGENT_BOUNDS = {"retryInitialBackoffMillis": (1, 10_000), "retryMaxBackoffMillis": (100, None),
                 "maxBufferSizeBytes": (1, 4 * 1024 * 1024)}


def agent_value(setting: Setting) -> st.SearchStrategy[Any]:
    if setting.kind == "bool":
        return st.booleans()
    if setting.kind == "int":
        return ints(setting, *_AGENT_BOUNDS.get(setting.key, (None, None)))
    if setting.kind == "enum":
        assert setting.choices is not None
        return st.sampled_from(list(setting.choices))
    if setting.key == "filePattern":
        return st.sampled_from(["/var/log/app.log", "/tmp/a/*.log", "/srv/x/access.log*"])
    return _WORDS.filter(lambda text: not text.startswith("AWS/"))


def as_json(value: object, quoted: bool) -> object:
    """A value as agent.json may carry it: native JSON, or (Jackson's leniency) a string."""
    if isinstance(value, bool):
        return str(value).lower() if quoted else value
    return str(value) if quoted else value


@pytest.mark.parametrize("setting", [row for row in (*FLOW_SETTINGS, *GLOBAL_SETTINGS) if row.field], ids=key_of)
@EXAMPLES
@given(data=st.data())
def test_every_agent_setting_round_trips_through_agent_json(tmp_path: Path, setting: Setting,
                                                            data: st.DataObject) -> None:
    value = data.draw(agent_value(setting))
    raw = as_json(value, quoted=data.draw(st.booleans()))
    destination = "deliveryStream" if setting.only_for is Destination.FIREHOSE else "kinesisStream"
    flow: dict[str, object] = {"filePattern": "/var/log/app.log", destination: "s"}
    document: dict[str, object] = {"flows": [flow]}
    (flow if setting in FLOW_SETTINGS else document)[setting.key] = raw
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(document))
    config = load_config(path)
    owner = config.flows[0] if setting in FLOW_SETTINGS else config
    assert getattr(owner, setting.field) == (value * setting.scale if setting.kind == "int" else value)


# --- WorkerConfig ---------------------------------------------------------------------------------


def test_worker_table_and_dataclass_agree() -> None:
    assert_one_key_per_field(WORKER_SETTINGS, WorkerConfig, {
        "dead_letter", "kinesis_role_arn", "kinesis_role_session_name", "kinesis_role_external_id"})
    for setting in WORKER_SETTINGS:
        # The naming rule (docs/kcl.md): snake_case of the KCL key, with Millis written _ms.
        expected = re.sub(r"(?<!^)(?=[A-Z])", "_", setting.key.replace("InMillis", "Ms").replace("Millis", "Ms"))
        expected = expected.lower().replace("d_b_", "db_").replace("_d_b", "_db")
        special = {"initialPositionInStreamExtended": "initial_timestamp", "dynamoDBEndpoint": "dynamo_db_endpoint"}
        assert setting.field == special.get(setting.key, expected), setting.key
        assert setting.field.endswith("_ms") == (setting.unit == "ms"), setting.key


@pytest.mark.parametrize(("old", "new"), sorted(WORKER_RENAMED.items()))
def test_an_old_millis_keyword_names_its_new_field(old: str, new: str) -> None:
    with pytest.raises(UnknownSettingError, match=rf"unknown setting '{old}': it is '{new}' now"):
        WorkerConfig(**{old: 1000})
    with pytest.raises(UnknownSettingError, match=rf"WorkerConfig.with_\(\) got an unknown setting '{old}'"):
        WorkerConfig().with_(**{old: 1000})


def test_worker_closed_sets_are_str_enums_and_strings_still_work() -> None:
    config = WorkerConfig(initial_position_in_stream="TRIM_HORIZON", metrics_level="NONE",  # type: ignore[arg-type]
                          retrieval_mode="FANOUT")  # type: ignore[arg-type]
    assert config.initial_position_in_stream is InitialPosition.TRIM_HORIZON == "TRIM_HORIZON"
    assert config.metrics_level is KclMetricsLevel.NONE and config.retrieval_mode is RetrievalMode.FANOUT
    with pytest.raises(TypeError):
        WorkerConfig("worker-1")  # type: ignore[misc]  # keyword-only


def worker_value(setting: Setting) -> st.SearchStrategy[Any]:
    if setting.kind == "bool":
        return st.booleans()
    if setting.kind == "int":
        if setting.field == "failover_time_ms":
            return st.integers(min_value=3 * 25 + 300, max_value=MAX_DRAWN)
        if setting.field == "epsilon_ms":
            return st.integers(min_value=0, max_value=(10_000 - 300) // 3)
        if setting.field == "task_backoff_time_ms":
            return st.integers(min_value=1, max_value=30_000)
        if setting.field == "max_task_backoff_time_ms":
            return st.integers(min_value=500, max_value=MAX_DRAWN)
        if setting.field == "metrics_port":
            return st.integers(min_value=0, max_value=65535)
        return ints(setting)
    if setting.kind == "enum":
        assert setting.choices is not None
        return st.sampled_from([item for item in setting.choices if item is not InitialPosition.AT_TIMESTAMP])
    if setting.kind == "timestamp":
        return st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: datetime.fromtimestamp(s, UTC))
    if setting.field == "metrics_address":
        return st.sampled_from(["127.0.0.1", "0.0.0.0", "::1"])
    if setting.field == "table_name":
        return st.text(alphabet="abcXYZ019_.-", min_size=3, max_size=30)
    return _WORDS


def as_kcl_properties(setting: Setting, value: object) -> str:
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return as_properties(value).upper() if setting.kind == "enum" and setting.fold_case else as_properties(value)


@pytest.mark.parametrize("setting", WORKER_SETTINGS, ids=key_of)
@EXAMPLES
@given(data=st.data())
def test_every_worker_setting_round_trips_through_a_kcl_properties_file(tmp_path: Path, setting: Setting,
                                                                        data: st.DataObject) -> None:
    value = data.draw(worker_value(setting))
    lines = [f"{setting.key} = {as_kcl_properties(setting, value)}"]
    if setting.field == "metrics_address":
        lines.append("metricsPort = 0")
    path = tmp_path / "app.properties"
    path.write_text("\n".join(lines) + "\n")
    assert getattr(load_properties(path).worker_config(), setting.field) == value
