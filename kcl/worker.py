"""The worker: one process's share of an application consuming one stream.

    worker = kcl.Worker("clicks", "click-counter", ClickProcessor, kcl.WorkerConfig())
    await worker.run()          # from asyncio: until stop() or cancellation
    worker.run_forever()        # blocking: until SIGTERM/SIGINT

Start-up checks come before anything is created: the stream must exist, so a typo never leaves a lease
table behind.  A graceful stop (``stop()``, SIGTERM, SIGINT) stops taking leases, asks every processor
to ``shutdown_requested`` (where it checkpoints), releases the leases so other workers take them at
their next scan instead of after the failover time, and returns within
``graceful_shutdown_timeout_ms`` however the processors behave.

With ``metrics_port`` (``metricsPort``, ``--metrics-port``) the worker serves Prometheus ``/metrics``
(kcl.prometheus), ``/healthz`` and ``/readyz`` (kcl.health) through kpl.observability, on its own event
loop.  The port is bound first of all, so that a port in use fails the start (a ConfigurationError,
exit 78) before anything is created, and released last, when the worker has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
from collections.abc import Callable
from typing import Any

from kcl.config import MetricsLevel, RetrievalMode, WorkerConfig
from kcl.coordinator import LeaseCoordinator
from kcl.deaggregation import Deaggregator
from kcl.errors import ConfigurationError, KclError, LeaseTableError, ProcessorLoadError, StreamNotFoundError
from kcl.health import register_checks
from kcl.leases import LeaseTable, TableSettings, describe_failure
from kcl.metrics import KclMetrics
from kcl.processor import RecordProcessor, check_processor_class
from kcl.prometheus import KclCollector
from kcl.renewer import HeldLease
from kcl.retrieval import BatchQueue, FanOutFetcher, PollingFetcher, StartingPosition, register_stream_consumer
from kcl.shard_consumer import ShardConsumer
from kcl.stream import is_stream_arn, kinesis_client_config, parse_stream_arn, stream_api_args
from kpl.aws import ClientConfig, async_client
from kpl.cloudwatch import CloudWatchPublisher, MetricsRegistry, check_namespace
from kpl.health import HealthChecks
from kpl.logs import get_logger
from kpl.observability import DEFAULT_ADDRESS, EndpointSettings, ObservabilityServer, check_address, daemon_registry
from kpl.retry import error_code, error_message

log = get_logger(__name__)

ProcessorFactory = Callable[[], RecordProcessor]


class Worker:
    """Consumes ``stream_name`` for ``application_name``, one :class:`RecordProcessor` per leased shard.

    ``stream_name`` may be a stream ARN: Kinesis is then read in the ARN's region, and the ARN's account
    must be the credentials' account unless ``config.kinesis_role_arn`` names a role to assume.
    """

    def __init__(self, stream_name: str, application_name: str, processor_factory: ProcessorFactory,
                 config: WorkerConfig | None = None) -> None:
        if not stream_name:
            raise ConfigurationError("stream_name must not be empty")
        #: The stream as given: a name, or an ARN that also fixes the Kinesis region and account.
        self.stream = stream_name
        self.stream_arn = parse_stream_arn(stream_name) if is_stream_arn(stream_name) else None
        if not application_name:
            raise ConfigurationError("application_name must not be empty")
        if not callable(processor_factory):
            raise ConfigurationError("processor_factory must be callable (a RecordProcessor class or a factory)")
        if inspect.isclass(processor_factory):
            check_processor_class(processor_factory)
        self.stream_name = self.stream_arn.name if self.stream_arn else stream_name
        self.application_name = application_name
        self.processor_factory = processor_factory
        self.config = config or WorkerConfig()
        if self.config.metrics_level is not MetricsLevel.NONE:
            check_namespace(application_name)  # before start() creates a lease table named after it
        self.registry = MetricsRegistry()
        self.metrics = KclMetrics(self.registry, self.config.worker_id, self.config.metrics_level)
        self._consumers: dict[str, tuple[ShardConsumer, asyncio.Task[None]]] = {}
        self._exits: contextlib.AsyncExitStack | None = None
        self._coordinator: LeaseCoordinator | None = None
        self._table: LeaseTable | None = None
        self._publisher: CloudWatchPublisher | None = None
        self._kinesis: Any = None
        self._data_kinesis: Any = None
        self._consumer_arn: str | None = None
        self._stopped = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._started = False
        self._running = False
        #: An error that stopped the worker by itself (raised from run()).
        self._fatal: KclError | None = None
        #: What /healthz and /readyz ask (kcl.health); the endpoint, while it serves (metrics_port).
        self.health = HealthChecks()
        register_checks(self.health, self)
        self.endpoint: ObservabilityServer | None = None

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def held_shards(self) -> set[str]:
        """Shards whose leases this worker holds now."""
        return self._coordinator.held.shard_ids() if self._coordinator else set()

    @property
    def lease_table_requests(self) -> dict[str, int]:
        """DynamoDB requests this worker has sent to the lease table so far, by operation."""
        return dict(self._table.requests) if self._table is not None else {}

    @property
    def running(self) -> bool:
        """Started (the first shard sync done, leases being taken) and not stopping."""
        return self._running and not self._stop_requested.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def coordinator(self) -> LeaseCoordinator | None:
        return self._coordinator

    @property
    def lease_table(self) -> LeaseTable | None:
        return self._table

    @property
    def shard_consumers(self) -> dict[str, ShardConsumer]:
        """The shard consumers running now, by shard."""
        return {shard_id: consumer for shard_id, (consumer, _) in self._consumers.items()}

    @property
    def shard_states(self) -> dict[str, str]:
        """Each shard consumer's state (``processing``, ``waiting on parents``, ...), for introspection."""
        return {shard_id: consumer.state.value for shard_id, (consumer, _) in self._consumers.items()}

    # --- running ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the stream, create the lease table if needed, and begin taking leases."""
        if self._started:
            raise KclError("worker already started")
        self._started = True
        config = self.config
        exits = contextlib.AsyncExitStack()
        try:
            await self._start_endpoint(exits)
            kinesis_config = self._kinesis_client_config()
            await self._check_account(kinesis_config)
            self._kinesis = await exits.enter_async_context(async_client("kinesis", kinesis_config))
            stream_arn = await self._describe_stream()
            self._data_kinesis = await exits.enter_async_context(async_client(
                "kinesis", kinesis_config.with_(max_attempts=1, max_pool_connections=128)))
            self._table = LeaseTable(TableSettings(
                table_name=config.lease_table_name(self.application_name), region=config.region_name,
                endpoint_url=config.dynamo_db_endpoint, read_timeout=max(2.0, min(10.0, config.failover_time / 2)),
                # Renewals run in parallel on their own threads: one connection each, plus the table's own.
                max_pool_connections=max(32, config.max_lease_renewal_threads + 16),
                deletion_protection=config.lease_table_deletion_protection_enabled,
                point_in_time_recovery=config.lease_table_pitr_enabled,
            ))
            exits.callback(self._table.close)
            try:
                await self._table.call(self._table.ensure_exists)
            except LeaseTableError:
                raise
            except Exception as exc:
                raise LeaseTableError(f"cannot open or create lease table {self._table.name}: "
                                      f"{describe_failure(exc)}") from exc
            if config.retrieval_mode is RetrievalMode.FANOUT:
                self._consumer_arn = config.consumer_arn or await register_stream_consumer(
                    self._kinesis, stream_arn, config.consumer_name or self.application_name)
            if config.metrics_level is not MetricsLevel.NONE:
                self._publisher = CloudWatchPublisher(self.registry, self.application_name,
                                                      interval=config.metrics_buffer_time_ms / 1000,
                                                      client_config=config.cloudwatch_client_config())
                await self._publisher.start()
            self._coordinator = LeaseCoordinator(
                table=self._table, kinesis=self._kinesis, stream_name=self.stream, config=config,
                metrics=self.metrics, listener=self,
            )
            await self._coordinator.start()
        except BaseException:
            if self._publisher is not None:
                await self._publisher.close()
            await exits.aclose()
            raise
        self._exits = exits
        self._running = True
        log.info("worker started", worker=self.worker_id, stream=stream_arn, application=self.application_name,
                 kinesis_region=self._kinesis.meta.region_name, table=self._table.name,
                 table_region=self._table.region, retrieval=config.retrieval_mode.value)

    async def run(self) -> None:
        """Start, then run until :meth:`stop` is called (or the task is cancelled, which stops gracefully)."""
        await self.start()
        try:
            await self._stop_requested.wait()
        finally:
            await asyncio.shield(self.stop())
        if self._fatal is not None:
            raise self._fatal

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop gracefully (safe from signal handlers on the loop)."""
        self._stop_requested.set()

    async def stop(self) -> None:
        """Graceful shutdown; idempotent, bounded by ``graceful_shutdown_timeout_ms``."""
        self._stop_requested.set()
        if self._stopped.is_set() or self._coordinator is None:
            self._stopped.set()
            return
        coordinator = self._coordinator
        timeout = self.config.graceful_shutdown_timeout_ms / 1000
        log.info("worker stopping: releasing leases", worker=self.worker_id, leases=len(coordinator.held))
        await coordinator.stop_taking()
        for consumer, _ in list(self._consumers.values()):
            consumer.request_shutdown(timeout)
        tasks = [task for _, task in self._consumers.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout + 1)
            for task in pending:
                task.cancel()
        for held in coordinator.held.all():
            await coordinator.relinquish(held.shard_id, held.token)
        coordinator.stop_renewing()
        if self._table is not None:
            log.info("lease table requests", worker=self.worker_id, requests=dict(sorted(self._table.requests.items())))
        if self._publisher is not None:
            await self._publisher.close()
        if self._exits is not None:
            await self._exits.aclose()
        self._stopped.set()
        log.info("worker stopped", worker=self.worker_id)

    async def _start_endpoint(self, exits: contextlib.AsyncExitStack) -> None:
        """Bind /metrics, /healthz, /readyz when configured; closed last by ``exits`` (the port is released)."""
        port = self.config.metrics_port
        if port is None:
            return
        registry = daemon_registry()
        registry.register(KclCollector(self))
        address = check_address(self.config.metrics_address or DEFAULT_ADDRESS)
        endpoint = ObservabilityServer(registry, self.health, EndpointSettings(port, address), name="kcl-worker")
        await endpoint.start()
        exits.push_async_callback(endpoint.close)
        self.endpoint = endpoint

    def run_forever(self) -> None:
        """Block running the worker until SIGTERM or SIGINT, then stop gracefully."""
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            await self.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self._stop_requested.is_set():
            log.warning("second signal: exiting without waiting for processors", signal=signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("signal received: stopping gracefully", signal=signal.Signals(signum).name)
        self.request_stop()

    def _kinesis_client_config(self) -> ClientConfig:
        """regionName (or the standard configuration), except that a stream ARN's region wins for Kinesis."""
        arn = self.stream_arn
        if arn is not None and self.config.region_name and self.config.region_name != arn.region:
            log.info("reading the stream in the region its ARN names; regionName applies to the lease table and "
                     "metrics", stream=arn.arn, kinesis_region=arn.region, region_name=self.config.region_name)
        return kinesis_client_config(self.config.kinesis_client_config(), self.stream)

    async def _check_account(self, kinesis_config: ClientConfig) -> None:
        """A stream ARN of another account needs a role to assume: say so now, not at the first access error."""
        arn = self.stream_arn
        if arn is None or kinesis_config.assume_role_arn:
            return
        try:
            async with async_client("sts", ClientConfig(region=arn.region, max_attempts=2)) as sts:
                account = str((await sts.get_caller_identity())["Account"])
        except Exception as exc:
            log.warning("cannot tell which account the credentials belong to (STS GetCallerIdentity failed); "
                        "going on with the stream ARN as given", stream=arn.arn, error=f"{error_code(exc)}: "
                        f"{error_message(exc)}")
            return
        if account != arn.account:
            raise ConfigurationError(
                f"stream {arn.arn} belongs to account {arn.account}, but the credentials are account {account}'s: "
                f"name a role in account {arn.account} to assume (properties: AwsCredentialsProvider = "
                f"StsAssumeRoleCredentialsProvider|arn:aws:iam::{arn.account}:role/<name>|<session name>; "
                "WorkerConfig(kinesis_role_arn=...)), or consume a stream of account " + account
            )

    async def _describe_stream(self) -> str:
        try:
            summary = await self._kinesis.describe_stream_summary(**stream_api_args(self.stream))
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise StreamNotFoundError(f"stream {self.stream!r} does not exist") from None
            raise KclError(f"cannot describe stream {self.stream!r}: {error_code(exc)}: "
                           f"{error_message(exc)}") from exc
        return str(summary["StreamDescriptionSummary"]["StreamARN"])

    # --- lease events (LeaseListener) -------------------------------------------------------------

    def lease_acquired(self, held: HeldLease) -> None:
        coordinator = self._coordinator
        assert coordinator is not None
        previous = self._consumers.get(held.shard_id)
        try:
            processor = self.processor_factory()
            check_processor_class(type(processor))
        except ProcessorLoadError as exc:
            # Every lease would fail the same way: stop rather than hold leases nobody processes.
            log.error("the processor factory made an unusable processor; stopping", shard=held.shard_id,
                      error=str(exc))
            self._fatal = self._fatal or exc
            asyncio.get_running_loop().create_task(coordinator.relinquish(held.shard_id, held.token))
            self.request_stop()
            return
        except Exception:
            log.exception("processor factory failed; handing the lease back", shard=held.shard_id)
            asyncio.get_running_loop().create_task(coordinator.relinquish(held.shard_id, held.token))
            return
        lease = held.lease
        consumer = ShardConsumer(
            held=held, held_leases=coordinator.held, processor=processor, coordinator=coordinator,
            fetcher_factory=self._fetcher, deaggregator=Deaggregator(held.shard_id, coordinator.hash_range_of(lease)),
            config=self.config, metrics=self.metrics,
        )
        previous_task = previous[1] if previous else None
        task = asyncio.get_running_loop().create_task(self._run_consumer(consumer, previous_task),
                                                      name=f"kcl-consumer-{held.shard_id}")
        self._consumers[held.shard_id] = (consumer, task)

    def lease_lost(self, shard_id: str) -> None:
        entry = self._consumers.get(shard_id)
        if entry is not None:
            entry[0].lease_lost()
        elif self._coordinator is not None:
            held = self._coordinator.held.get(shard_id)
            if held is not None and held.lost:
                self._coordinator.held.remove(shard_id, held.token)

    def handoff_requested(self, shard_id: str) -> None:
        entry = self._consumers.get(shard_id)
        if entry is not None:
            entry[0].request_shutdown(self.config.graceful_lease_handoff_timeout_ms / 1000)

    async def _run_consumer(self, consumer: ShardConsumer, previous: asyncio.Task[None] | None) -> None:
        coordinator = self._coordinator
        assert coordinator is not None
        if previous is not None:
            # The shard's previous tenure on this worker must finish its lease_lost first.
            with contextlib.suppress(BaseException):
                await previous
        try:
            outcome = await consumer.run()
            log.info("shard consumer finished", shard=consumer.shard_id, outcome=outcome.value)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shard consumer crashed; handing the lease back", shard=consumer.shard_id)
            await coordinator.relinquish(consumer.shard_id, consumer.token)
        finally:
            coordinator.held.remove(consumer.shard_id, consumer.token)
            entry = self._consumers.get(consumer.shard_id)
            if entry is not None and entry[0] is consumer:
                del self._consumers[consumer.shard_id]

    def _fetcher(self, shard_id: str, position: StartingPosition, queue: BatchQueue) -> Any:
        if self._consumer_arn is not None:
            return FanOutFetcher(self._data_kinesis, self.stream, shard_id, position, config=self.config,
                                 metrics=self.metrics, queue=queue, consumer_arn=self._consumer_arn)
        return PollingFetcher(self._data_kinesis, self.stream, shard_id, position, config=self.config,
                              metrics=self.metrics, queue=queue)
