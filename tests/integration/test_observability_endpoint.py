"""kpl.observability: the endpoint both daemons serve, on a real port (no AWS involved)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import CollectorRegistry, Counter

from kpl.errors import ConfigurationError
from kpl.health import HealthChecks
from kpl.observability import EndpointBindError, EndpointSettings, ObservabilityServer, daemon_registry
from tests.support import http


async def fetch(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(http.get, url)


async def test_metrics_health_and_readiness_follow_the_checks() -> None:
    registry = daemon_registry()
    handled = Counter("demo_events", "Events handled.", registry=registry)
    handled.inc(3)
    state = {"ready": "warming up", "alive": None}
    checks = HealthChecks(timeout=0.5)
    checks.add_liveness("loop task", lambda: state["alive"])
    checks.add_readiness("warm", lambda: state["ready"])

    async def slow() -> str | None:
        await asyncio.sleep(30)
        return None

    async with ObservabilityServer(registry, checks, EndpointSettings(0)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        samples = await asyncio.to_thread(http.samples, server.url)
        assert samples["demo_events_total"] == [({}, 3.0)]
        assert "process_cpu_seconds_total" in samples and "python_info" in samples
        assert await fetch(f"{server.url}/healthz") == (200, "ok\n")
        assert await fetch(f"{server.url}/readyz") == (503, "warm: warming up\n")
        state["ready"] = None
        assert await fetch(f"{server.url}/readyz") == (200, "ok\n")
        assert await fetch(f"{server.url}/readyz?verbose") == (200, "[+] warm: ok\nreadiness ok\n")

        # A check that hangs or raises fails; it never looks healthy.
        checks.add_liveness("hangs", slow)
        checks.add_liveness("raises", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
        status, body = await fetch(f"{server.url}/healthz")
        assert status == 503
        assert body == ("hangs: the check did not answer within 0.5 s\n"
                        "raises: the check raised ZeroDivisionError: division by zero\n")
        assert (await fetch(f"{server.url}/nowhere"))[0] == 404
        port = server.port
    # Closed: the port is free again.
    with socket.create_server(("127.0.0.1", port)):
        pass


async def test_a_port_in_use_is_a_clear_configuration_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        server = ObservabilityServer(daemon_registry(), HealthChecks(), EndpointSettings(port))
        with pytest.raises(EndpointBindError) as caught:
            await server.start()
    assert isinstance(caught.value, ConfigurationError)
    assert str(caught.value).startswith(f"cannot serve metrics on 127.0.0.1:{port}: the port is already in use")
    # Nothing is left listening by the failed attempt.
    with socket.create_server(("127.0.0.1", port)):
        pass


async def test_an_address_the_host_does_not_have() -> None:
    server = ObservabilityServer(daemon_registry(), HealthChecks(), EndpointSettings(0, "192.0.2.1"))
    with pytest.raises(EndpointBindError, match="this host has no such address"):
        await server.start()


async def test_a_collector_that_fails_gives_500_and_the_endpoint_keeps_serving() -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("state unreadable")

    registry = CollectorRegistry()  # without auto_describe: the registration itself does not collect
    registry.register(Broken())  # type: ignore[arg-type]
    async with ObservabilityServer(registry, HealthChecks(), EndpointSettings(0)) as server:
        assert await fetch(f"{server.url}/metrics") == (500, "collecting metrics failed: state unreadable\n")
        assert await fetch(f"{server.url}/healthz") == (200, "ok\n")
