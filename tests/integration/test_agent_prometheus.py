"""kinesis-agent with --metrics-port: /metrics, /healthz, /readyz against LocalStack, through a fault proxy."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_agent_support import AgentProcess, agent_config
from tests.support import http
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import wait_for

AGENT_MD = Path(__file__).resolve().parents[2] / "docs" / "agent.md"
#: prometheus.maxDeliveryStallMillis in these tests.
STALL_SECONDS = 3.0
LISTENING = "metrics and health endpoint listening"


def append_lines(path: Path, tag: str, count: int) -> None:
    with path.open("a") as handle:
        handle.writelines(f"{tag} {i:05d} {'x' * 40}\n" for i in range(count))


def endpoint_url(agent: AgentProcess) -> str:
    return str(agent.wait_for_event(lambda e: e.get("event") == LISTENING, 60, "metrics endpoint listening")["url"])


def test_metrics_health_and_readiness(tmp_path: Path, make_stream: Callable[..., str], fault_proxy: FaultProxy) -> None:
    stream = make_stream(shards=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    log_file = logs / "app.log"
    log_file.touch()
    config = agent_config(tmp_path, {"filePattern": str(log_file), "kinesisStream": stream,
                                     "aggregationEnabled": "true"},
                          **{"prometheus.port": "0",
                             "prometheus.maxDeliveryStallMillis": str(int(STALL_SECONDS * 1000))})
    agent = AgentProcess(tmp_path, config, endpoint=fault_proxy.url)
    flow = f"kinesis:{stream}:{log_file}"
    try:
        agent.start()
        url = endpoint_url(agent)
        port = int(url.rsplit(":", 1)[1])
        assert url.startswith("http://127.0.0.1:"), url

        def shipped() -> float:
            agent.assert_running()
            return http.value(url, "kinesis_agent_records_shipped_total", flow=flow)

        append_lines(log_file, "a", 10)
        wait_for(lambda: shipped() >= 10, 60, interval=0.2, message="10 records shipped")
        append_lines(log_file, "b", 15)
        wait_for(lambda: shipped() >= 25, 60, interval=0.2, message="the shipped counter rising to 25")
        metrics = http.samples(url)
        assert ({"flow": flow}, 25.0) in metrics["kinesis_agent_records_read_total"]
        assert ({"flow": flow, "path": str(log_file)}, 0.0) in metrics["kinesis_agent_file_behind_bytes"]
        assert metrics["process_resident_memory_bytes"][0][1] > 0
        documented = set(re.findall(r"`(kinesis_agent_\w+)`", AGENT_MD.read_text()))
        assert "kinesis_agent_records_shipped_total" in documented
        assert documented <= http.family_names(url), "docs/agent.md names metrics the agent does not export"
        assert http.get(f"{url}/healthz") == (200, "ok\n")
        assert http.get(f"{url}/readyz") == (200, "ok\n")

        # The endpoint becomes unreachable: records wait, and /readyz turns 503 once that lasted the threshold.
        fault_proxy.blackhole()
        cut_off = time.monotonic()
        append_lines(log_file, "c", 5)
        def not_ready() -> str | None:
            status, body = http.get(f"{url}/readyz")
            return body if status == 503 else None

        body = wait_for(not_ready, 90, interval=0.2, message="/readyz 503 while the endpoint is blackholed")
        assert time.monotonic() - cut_off >= STALL_SECONDS, "not ready before the documented threshold"
        assert f"flow {flow} delivered nothing for" in body and "batches" in body, body
        assert http.get(f"{url}/healthz")[0] == 200, "alive while the destination is unreachable"
        assert http.value(url, "kinesis_agent_delivery_stall_seconds", flow=flow) > STALL_SECONDS

        fault_proxy.heal()
        wait_for(lambda: http.get(f"{url}/readyz")[0] == 200, 120, interval=0.5, message="ready again after healing")
        wait_for(lambda: shipped() >= 30, 60, interval=0.2, message="the records of the outage shipped")
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    # The port is released on exit: a server can listen on it again at once.
    http.bind(port).close()


def test_metrics_port_in_use_is_a_configuration_error(tmp_path: Path, make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=1)
    (tmp_path / "logs").mkdir()
    holder = http.bind(0)
    port = holder.getsockname()[1]
    config: dict[str, Any] = agent_config(tmp_path, {"filePattern": str(tmp_path / "logs" / "app.log"),
                                                     "kinesisStream": stream})
    agent = AgentProcess(tmp_path, config, args=["--metrics-port", str(port)])
    try:
        agent.start()
        assert agent.process is not None
        assert agent.process.wait(timeout=60) == 78
    finally:
        holder.close()
        agent.ensure_stopped()
    text = agent.log_text()
    assert f"cannot serve metrics on 127.0.0.1:{port}: the port is already in use" in text, text
    assert not (tmp_path / "state" / "checkpoints").exists(), "nothing is touched before the port is bound"
