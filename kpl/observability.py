"""The daemons' HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for probes.

``kinesis-agent`` and ``kcl-worker`` each serve one port (``--metrics-port``) with:

* ``/metrics``: the daemon's prometheus-client registry in the Prometheus text format (or OpenMetrics
  when the scraper asks for it in ``Accept``);
* ``/healthz``: 200 ``ok`` while every liveness check of the daemon's :class:`~kpl.health.HealthChecks`
  passes, else 503 with one line per failing check;
* ``/readyz``: the same with the readiness checks.  ``?verbose`` lists every check.

It is bound to 127.0.0.1 unless an address is given (metrics name files and streams; exposing them is
the operator's decision), and a port that cannot be bound (in use, privileged, an address the host
does not have) is an :class:`EndpointBindError`, a :class:`ConfigurationError`: the daemons exit 78
before they start working.  ``close()`` releases the port.

**Why on the daemon's event loop, not in a thread.**  The daemons keep their state in plain objects
that only their event loop mutates; collectors and checks that run on the same loop read it without
locks and without racing a mutation ("dictionary changed size during iteration").  And liveness is
then honest by construction: "the event loop answers" needs no check of its own, because a loop that
is stuck cannot answer ``/healthz`` at all, and the probe's timeout reports it (a thread would keep
answering ``ok`` for a daemon whose loop is dead).  Collecting costs a few milliseconds per scrape,
which the loop absorbs.  The price: a blocked loop also delays ``/metrics``, which is the moment the
probe fails anyway.

Served by aiohttp's server (aiobotocore's own HTTP stack), so the parser, keep-alive and slow-client
handling are a maintained library's, not this module's.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import re
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from kpl.errors import ConfigurationError
from kpl.health import HealthChecks, Kind
from kpl.logs import get_logger

__all__ = [
    "DEFAULT_ADDRESS", "EndpointBindError", "EndpointSettings", "ObservabilityServer", "add_endpoint_arguments",
    "check_address", "check_port", "daemon_registry"
]

log = get_logger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"
#: How long close() lets a request in progress finish.
SHUTDOWN_GRACE_SECONDS = 1.0

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class EndpointBindError(ConfigurationError):
    """The metrics port cannot be bound; the message names the address, the cause and the fix."""


def check_port(value: Any, what: str = "port") -> int:
    """A TCP port number (0: any free port, chosen by the system and logged)."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what}: {value!r} is not a port number (0-65535)") from None
    if isinstance(value, float) and value != port:
        raise ConfigurationError(f"{what}: {value!r} is not a port number (0-65535)")
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{what}: {port} is outside the range 0-65535")
    return port


def check_address(value: str, what: str = "address") -> str:
    """An IPv4 or IPv6 address, or a host name, to listen on."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _HOST_NAME.match(text):
        return text
    raise ConfigurationError(f"{what}: {value!r} is not an IP address or a host name to listen on "
                             "(for example 127.0.0.1, 0.0.0.0 or ::)")


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """Where the endpoint listens."""

    port: int
    address: str = DEFAULT_ADDRESS

    def __post_init__(self) -> None:
        check_port(self.port)
        check_address(self.address)


def add_endpoint_arguments(parser: argparse.ArgumentParser, *, config_key: str) -> None:
    """``--metrics-port`` and ``--metrics-address``, the same on every daemon.  ``config_key`` names the
    configuration-file key of the same meaning, for the help text."""

    def port(value: str) -> int:
        try:
            return check_port(value)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None

    def address(value: str) -> str:
        try:
            return check_address(value)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None

    parser.add_argument("--metrics-port", type=port, metavar="PORT", default=None,
                        help=f"serve /metrics (Prometheus), /healthz and /readyz on this port (overrides {config_key}; "
                             "0: any free port, logged)")
    parser.add_argument("--metrics-address", type=address, metavar="ADDR", default=None,
                        help=f"address to listen on (default {DEFAULT_ADDRESS})")


def daemon_registry() -> CollectorRegistry:
    """A fresh registry with the process's own metrics (CPU, memory, file descriptors, Python version).

    Duplicate metric names are refused at registration (``auto_describe``), so two collectors cannot
    silently shadow each other."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class ObservabilityServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, served on the running event loop.

    ::

        server = ObservabilityServer(registry, checks, EndpointSettings(9101))
        await server.start()          # EndpointBindError (a ConfigurationError) when the port is taken
        ...
        await server.close()          # the port is free again
    """

    def __init__(self, registry: CollectorRegistry, checks: HealthChecks, settings: EndpointSettings, *,
                 name: str = "kinesis-toolkit") -> None:
        self.registry = registry
        self.checks = checks
        self.settings = settings
        self.name = name
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """``http://address:port`` once started."""
        if self.port is None:
            raise RuntimeError("the endpoint is not started")
        host = self.settings.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the endpoint is already started")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/", self._index)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        address, port = self.settings.address, self.settings.port
        site = web.TCPSite(runner, address, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise EndpointBindError(_bind_problem(address, port, exc)) from None
        self._runner = runner
        self.port = _bound_port(runner, port)
        log.info("metrics and health endpoint listening", url=self.url,
                 endpoints=["/metrics", "/healthz", "/readyz"])

    async def close(self) -> None:
        """Stop listening and release the port (a request in progress gets a moment to finish)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("metrics and health endpoint closed", port=self.port)

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --- handlers ----------------------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        try:
            body = encoder(self.registry)
        except Exception as exc:  # a collector failed: say so, and keep serving
            log.warning("collecting metrics failed", error=repr(exc), exc_info=exc)
            return web.Response(status=500, text=f"collecting metrics failed: {exc}\n")
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return await self._report("liveness", request)

    async def _readyz(self, request: web.Request) -> web.Response:
        return await self._report("readiness", request)

    async def _report(self, kind: Kind, request: web.Request) -> web.Response:
        report = await self.checks.evaluate(kind)
        verbose = "verbose" in request.query
        return web.Response(status=200 if report.ok else 503, text=report.render(verbose),
                            headers={"Cache-Control": "no-store"})

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=f"{self.name}: /metrics (Prometheus), /healthz (alive), /readyz (ready)\n")


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


def _bind_problem(address: str, port: int, exc: OSError) -> str:
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    code = exc.errno
    if code == errno.EADDRINUSE:
        return (f"cannot serve metrics on {where}: the port is already in use by another process (see it with "
                f"`ss -ltnp 'sport = :{port}'`): stop that process or choose another metrics port")
    if code == errno.EACCES:
        return (f"cannot serve metrics on {where}: permission denied (ports below 1024 need privileges): "
                "choose a port of 1024 or above")
    if code == errno.EADDRNOTAVAIL:
        return (f"cannot serve metrics on {where}: this host has no such address: listen on one of its "
                "addresses, 127.0.0.1 (the default) or 0.0.0.0 (every interface)")
    if isinstance(exc, socket.gaierror):
        return f"cannot serve metrics on {where}: the address does not resolve ({exc.strerror}): give an IP address"
    return f"cannot serve metrics on {where}: {exc.strerror or exc}"
