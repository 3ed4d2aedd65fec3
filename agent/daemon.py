"""The agent: flows, checkpoints, metrics, signals and an orderly shutdown.

Start-up opens the checkpoint database first (a missing or read-only directory is the Java agent's most
common start-up failure, so the error names the path and the fix), then starts every flow, which
restores its files from their checkpoints.  Only after every flow has restored are expired checkpoint
rows deleted, so a file that merely sat idle for a week keeps its row.

SIGTERM or SIGINT stops reading at once; batches already read are sent for up to
``shutdownTimeoutMillis``, then the checkpoints of what was delivered are saved and the agent exits 0.
A second signal cuts the wait short.  An unexpected error inside a flow stops the agent with exit
status 70 so that systemd restarts it (the Java agent's tailer threads used to die silently).

With ``prometheus.port`` (or ``--metrics-port``) the HTTP endpoint (kpl.observability) is bound first of
all, so that a port in use stops the agent (exit 78) before it touches checkpoints; it answers
``/readyz`` with 503 while the agent starts and stops (agent.health), and is closed last, which
releases the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import operator
import signal
import socket
import time

from agent.checkpoints import CheckpointStore
from agent.config_types import AgentConfig, Destination, FlowConfig
from agent.converters import AddEc2Metadata
from agent.ec2_metadata import fetch_instance_id
from agent.flow import Flow, Sink
from agent.health import register_checks
from agent.metrics import SendMetrics
from agent.producer_settings import producer_config
from agent.prometheus import AgentCollector
from agent.sinks import FirehoseSink, KinesisSink
from kpl.cloudwatch import CloudWatchPublisher, MetricsRegistry
from kpl.health import HealthChecks
from kpl.logs import get_logger
from kpl.observability import ObservabilityServer, daemon_registry

log = get_logger(__name__)

EXIT_OK = 0
#: sysexits EX_SOFTWARE: a flow failed unexpectedly.
EXIT_FLOW_FAILED = 70
#: sysexits EX_CANTCREAT: the checkpoint database cannot be created or written.
EXIT_CHECKPOINTS = 73
#: sysexits EX_CONFIG: agent.json is invalid.
EXIT_CONFIG = 78


class Agent:
    """Runs every flow of an :class:`AgentConfig` until asked to stop."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.registry = MetricsRegistry()
        self.store = CheckpointStore(config.checkpoint_file, ttl_days=config.checkpoint_ttl_days,
                                     query_timeout=config.checkpoint_query_timeout_ms / 1000)
        self.flows: list[Flow] = []
        self.send_metrics: dict[str, SendMetrics] = {}
        self._sinks: list[Sink] = []
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._publisher: CloudWatchPublisher | None = None
        self.started = asyncio.Event()
        self.checks = HealthChecks()
        register_checks(self.checks, self)
        #: The /metrics, /healthz, /readyz endpoint, while it runs.
        self.endpoint: ObservabilityServer | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        if self._stop.is_set():
            log.warning("second stop signal: not waiting any longer for records in flight")
            self._force.set()
        else:
            log.info("stop requested: no more reading; sending what was read",
                     timeout_seconds=self.config.shutdown_timeout_ms / 1000)
        self._stop.set()

    async def run(self) -> int:
        """Run until a signal or a flow failure; the exit status.

        Raises :class:`kpl.observability.EndpointBindError` (a ConfigurationError) when the metrics port
        cannot be bound, before anything else is done."""
        if self.config.metrics_endpoint is not None:
            registry = daemon_registry()
            registry.register(AgentCollector(self))
            self.endpoint = ObservabilityServer(registry, self.checks, self.config.metrics_endpoint,
                                                name="kinesis-agent")
            await self.endpoint.start()
        try:
            return await self._open_and_run()
        finally:
            if self.endpoint is not None:
                await self.endpoint.close()

    async def _open_and_run(self) -> int:
        await asyncio.to_thread(self.store.open)
        log.info("checkpoint database open", path=str(self.config.checkpoint_file))
        for note in self.config.ineffective:
            log.info("configuration key accepted for compatibility has no effect", detail=note)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        try:
            return await self._run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def _run(self) -> int:
        instance = await asyncio.to_thread(_instance_tag) if self.config.cloudwatch_tag_instance else None
        firehose_concurrency = asyncio.Semaphore(self.config.max_sending_threads)
        for flow_config in self.config.flows:
            metrics = SendMetrics(self.registry, flow_config.metrics_destination, instance)
            self.send_metrics[flow_config.id] = metrics
            sink = self._sink(flow_config, metrics, firehose_concurrency)
            rows = await asyncio.to_thread(self.store.load, flow_config.id)
            self.flows.append(Flow(flow_config, sink, self.store, rows))
            self._sinks.append(sink)
        exit_code = EXIT_OK
        try:
            for sink in self._sinks:
                await sink.start()
            if self.config.emit_metrics:
                self._publisher = CloudWatchPublisher(
                    self.registry, self.config.cloudwatch_namespace, interval=self.config.metrics_interval_ms / 1000,
                    client_config=self.config.cloudwatch_client, max_pending_keys=self.config.metrics_queue_size,
                )
                await self._publisher.start()
            self.store.start()
            # EC2 metadata is fetched before the first record is converted, then refreshed every TTL.
            refreshers = [converter for flow in self.flows if flow.config.converters is not None
                          for converter in flow.config.converters.refreshers()]
            await asyncio.gather(*(converter.refresh() for converter in refreshers))
            for converter in refreshers:
                self._background.append(asyncio.create_task(_refresh_forever(converter)))
            for flow in self.flows:
                flow.start()
                log.info("flow started", flow=flow.id, converters=flow.config.converters.names
                         if flow.config.converters else [], aggregation=flow.config.aggregation_enabled)
            self._background.append(asyncio.create_task(self._after_restore(), name="checkpoint-expiry"))
            self._background.append(asyncio.create_task(self._report_progress(), name="progress"))
            self.started.set()
            exit_code = await self._wait_for_stop()
        finally:
            await self._shutdown()
        return exit_code

    def _sink(self, flow: FlowConfig, metrics: SendMetrics, concurrency: asyncio.Semaphore) -> Sink:
        if flow.destination_kind is Destination.FIREHOSE:
            return FirehoseSink(flow, self.config.firehose_client, metrics, concurrency)
        return KinesisSink(flow, producer_config(self.config, flow), metrics)

    async def _wait_for_stop(self) -> int:
        stop = asyncio.create_task(self._stop.wait())
        flow_tasks = [task for flow in self.flows for task in flow.tasks]
        try:
            await asyncio.wait([stop, *flow_tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for flow in self.flows:
            error = flow.failed
            if error is not None:
                log.error("flow failed unexpectedly: stopping the agent so that it is restarted", flow=flow.id,
                          error=repr(error), exc_info=error)
                return EXIT_FLOW_FAILED
        return EXIT_OK

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + self.config.shutdown_timeout_ms / 1000
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

        results = await asyncio.gather(
            *(flow.stop(max(0.0, deadline - time.monotonic()), self._force) for flow in self.flows)
        )
        for flow, delivered in zip(self.flows, results, strict=True):
            if not delivered:
                log.warning("shutdown timeout reached with records in flight: they were not checkpointed and "
                            "will be sent again after a restart", flow=flow.id)
        for sink in self._sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._publisher.close(), timeout=5.0)
        await self.store.close()
        log.info("checkpoints saved; agent stopped")

    async def _after_restore(self) -> None:
        await asyncio.gather(*(flow.restored.wait() for flow in self.flows))
        await self.store.flush()
        removed = await asyncio.to_thread(self.store.delete_expired)
        if removed:
            log.info("deleted expired checkpoints", count=removed, ttl_days=self.config.checkpoint_ttl_days)

    async def _report_progress(self) -> None:
        """The periodic progress line: every flow's figures added up, plus the send rate."""
        last_sent = 0
        last_time = time.monotonic()
        while True:
            await asyncio.sleep(self.config.status_period_ms / 1000)
            now = time.monotonic()
            sent = sum(metrics.totals.records_sent for metrics in self.send_metrics.values())
            figures: dict[str, float] = {}
            for progress in (flow.progress() for flow in self.flows):
                for name, value in dataclasses.asdict(progress).items():
                    combine = max if name == "oldest_unacknowledged_seconds" else operator.add
                    figures[name] = combine(figures[name], value) if name in figures else value
            figures["oldest_unacknowledged_seconds"] = round(figures.get("oldest_unacknowledged_seconds", 0.0), 1)
            log.info("progress", records_sent=sent,
                     records_per_second=round((sent - last_sent) / max(now - last_time, 1e-9), 1), **figures)
            last_sent, last_time = sent, now


async def _refresh_forever(converter: AddEc2Metadata) -> None:
    while True:
        await asyncio.sleep(converter.ttl)
        await converter.refresh()


def _instance_tag() -> str:
    """``cloudwatch.tagInstance``: the EC2 instance id, else the host name (as the Java agent does)."""
    return fetch_instance_id() or socket.gethostname()
