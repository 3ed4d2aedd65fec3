"""The agent's endpoint settings (agent.json keys, command line) and what /readyz computes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.cli import build_parser, with_endpoint_arguments
from agent.config import load_config
from agent.errors import AgentConfigurationError
from agent.health import delivery_stall
from kpl.errors import ConfigurationError
from kpl.observability import EndpointSettings


def config_file(directory: Path, **settings: Any) -> Path:
    path = directory / "agent.json"
    path.write_text(json.dumps({**settings, "flows": [{"filePattern": "/tmp/app.log", "kinesisStream": "s"}]}))
    return path


def test_no_endpoint_unless_a_port_is_given(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))
    assert config.metrics_endpoint is None
    assert config.max_delivery_stall_ms == 60_000
    args = build_parser().parse_args([])
    assert with_endpoint_arguments(config, args).metrics_endpoint is None


def test_agent_json_keys_and_the_command_line_on_top(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, **{"prometheus.port": "9101", "prometheus.address": "0.0.0.0",
                                                  "prometheus.maxDeliveryStallMillis": 5000}))
    assert config.metrics_endpoint == EndpointSettings(9101, "0.0.0.0")
    assert config.max_delivery_stall_ms == 5_000
    assert with_endpoint_arguments(config, build_parser().parse_args([])).metrics_endpoint == config.metrics_endpoint
    moved = with_endpoint_arguments(config, build_parser().parse_args(["--metrics-port", "9102"]))
    assert moved.metrics_endpoint == EndpointSettings(9102, "0.0.0.0")
    assert moved.describe()["prometheus.port"] == 9102
    local = with_endpoint_arguments(config, build_parser().parse_args(["--metrics-address", "::1"]))
    assert local.metrics_endpoint == EndpointSettings(9101, "::1")


def test_an_address_without_a_port_is_refused(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))
    with pytest.raises(ConfigurationError, match="--metrics-address needs a port"):
        with_endpoint_arguments(config, build_parser().parse_args(["--metrics-address", "127.0.0.1"]))


@pytest.mark.parametrize(("settings", "message"), [
    ({"prometheus.port": 70000}, "prometheus.port: 70000 is outside the valid range 0..65535"),
    ({"prometheus.port": "ninety"}, "prometheus.port"),
    ({"prometheus.address": "not an address"}, "prometheus.address: 'not an address' is not an IP address"),
    ({"prometheus.maxDeliveryStallMillis": 10}, "prometheus.maxDeliveryStallMillis"),
    ({"prometheus.prot": 9101}, "did you mean 'prometheus.port'"),
])
def test_bad_endpoint_keys_name_the_key(tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(AgentConfigurationError) as caught:
        load_config(config_file(tmp_path, **settings))
    assert message in str(caught.value)


@pytest.mark.parametrize("argv", [["--metrics-port", "-1"], ["--metrics-port", "x"],
                                  ["--metrics-address", "a b"]])
def test_bad_command_line_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2


class FakeFlow:
    def __init__(self, waiting_since: float | None) -> None:
        self._waiting_since = waiting_since

    def waiting_since(self) -> float | None:
        return self._waiting_since


def stall(waiting_since: float | None, last_delivered_at: float | None, now: float = 100.0) -> float:
    return delivery_stall(FakeFlow(waiting_since), SimpleNamespace(last_delivered_at=last_delivered_at),  # type: ignore[arg-type]
                          now)


def test_delivery_stall() -> None:
    assert stall(None, None) == 0.0            # nothing waits: no stall, however long ago the last delivery
    assert stall(None, 10.0) == 0.0
    assert stall(40.0, None) == 60.0           # waiting since 40, nothing ever delivered
    assert stall(40.0, 90.0) == 10.0           # slow but delivering: the last delivery counts
    assert stall(95.0, 10.0) == 5.0            # idle for long, then a batch waits: counted from the batch
