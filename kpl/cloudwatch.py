"""Metrics kept locally as statistic sets and uploaded to CloudWatch in the background.

The producer, the consumer and the agent each publish metrics under their Java counterparts' names
so existing dashboards and alarms keep working.  They share this module: a :class:`MetricsRegistry`
that components write to (cheaply, from any thread) and read locally, and a
:class:`CloudWatchPublisher` task that drains it every interval into ``PutMetricData`` calls.

Values are aggregated per (name, dimensions, unit) into count/sum/min/max, which is what CloudWatch
stores anyway; a hot path therefore costs one dict lookup and four arithmetic operations per
observation, and should observe per batch rather than per record where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kpl.aws import DEFAULT_CLIENT_CONFIG, ClientConfig, async_client
from kpl.errors import ConfigurationError
from kpl.logs import get_logger
from kpl.retry import error_code

__all__ = ["CloudWatchPublisher", "Dimensions", "MetricsRegistry", "check_namespace", "dimensions"]

log = get_logger(__name__)

Dimensions = tuple[tuple[str, str], ...]
MetricKey = tuple[str, Dimensions, str]

#: PutMetricData accepts up to 1000 metric data per request; the KPL sends 20. We stay modest so a
#: single failed request loses little and requests stay small.
MAX_DATA_PER_REQUEST = 150


@dataclass(slots=True)
class StatisticSet:
    count: float = 0.0
    sum: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float, count: float = 1.0) -> None:
        self.count += count
        self.sum += value * count
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: StatisticSet) -> None:
        self.count += other.count
        self.sum += other.sum
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def average(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "sum": self.sum, "min": self.minimum if self.count else 0.0,
                "max": self.maximum if self.count else 0.0, "avg": self.average}


def dimensions(**pairs: str | None) -> Dimensions:
    """Dimensions in a stable order, leaving out the ones that are None."""
    return tuple((name, value) for name, value in pairs.items() if value is not None)


@dataclass
class MetricsRegistry:
    """Thread-safe accumulation of observations; the pending window is drained by the publisher.

    ``totals`` keeps everything observed since start for local reading (``snapshot``), independent
    of uploads.
    """

    _pending: dict[MetricKey, StatisticSet] = field(default_factory=dict)
    _totals: dict[MetricKey, StatisticSet] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, name: str, value: float, unit: str = "Count", dims: Dimensions = (), count: float = 1.0) -> None:
        key = (name, dims, unit)
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = StatisticSet()
            pending.add(value, count)
            total = self._totals.get(key)
            if total is None:
                total = self._totals[key] = StatisticSet()
            total.add(value, count)

    def put_stats(
        self, name: str, count: float, total: float, minimum: float, maximum: float, *, unit: str = "Count",
        dims: Dimensions = (),
    ) -> None:
        """Record a batch of observations already summarised (a producer request's records, say)."""
        if count <= 0:
            return
        key = (name, dims, unit)
        with self._lock:
            for table in (self._pending, self._totals):
                stats = table.get(key)
                if stats is None:
                    table[key] = StatisticSet(count, total, minimum, maximum)
                    continue
                stats.count += count
                stats.sum += total
                if minimum < stats.minimum:
                    stats.minimum = minimum
                if maximum > stats.maximum:
                    stats.maximum = maximum

    def drain(self) -> dict[MetricKey, StatisticSet]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore(self, pending: Mapping[MetricKey, StatisticSet]) -> None:
        """Put back data an upload could not deliver, so the next upload includes it."""
        with self._lock:
            for key, stats in pending.items():
                current = self._pending.get(key)
                if current is None:
                    self._pending[key] = stats
                else:
                    current.merge(stats)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Everything observed since start, grouped by metric name."""
        with self._lock:
            items = [(key, StatisticSet(s.count, s.sum, s.minimum, s.maximum)) for key, s in self._totals.items()]
        out: dict[str, list[dict[str, Any]]] = {}
        for (name, dims, unit), stats in items:
            out.setdefault(name, []).append({"dimensions": dict(dims), "unit": unit, **stats.as_dict()})
        return out

    def total(self, name: str, **dims: str) -> StatisticSet:
        """The combined statistics of ``name`` over every dimension set that includes ``dims``."""
        wanted = set(dims.items())
        combined = StatisticSet()
        with self._lock:
            for (metric, metric_dims, _), stats in self._totals.items():
                if metric == name and wanted <= set(metric_dims):
                    combined.merge(stats)
        return combined


def to_metric_data(pending: Mapping[MetricKey, StatisticSet], timestamp: datetime) -> list[dict[str, Any]]:
    data = []
    for (name, dims, unit), stats in pending.items():
        if not stats.count:
            continue
        data.append({
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
            "Timestamp": timestamp,
            "Unit": unit,
            "StatisticValues": {"SampleCount": stats.count, "Sum": stats.sum,
                                "Minimum": stats.minimum, "Maximum": stats.maximum},
        })
    return data


def _chunks(items: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def check_namespace(namespace: str) -> None:
    """A namespace this toolkit may upload to: not empty, and not one of AWS's own (``AWS/...``)."""
    if not namespace or namespace.startswith("AWS/"):
        raise ConfigurationError(f"invalid CloudWatch namespace {namespace!r}")


class CloudWatchPublisher:
    """Uploads a registry's pending window to CloudWatch every ``interval`` seconds.

    Upload failures are logged and the data kept for the next attempt (bounded by ``max_pending_keys``
    so an unreachable CloudWatch cannot grow memory without limit); they never disturb the component
    that owns the metrics.
    """

    def __init__(
        self,
        registry: MetricsRegistry,
        namespace: str,
        *,
        interval: float = 60.0,
        client_config: ClientConfig = DEFAULT_CLIENT_CONFIG,
        max_pending_keys: int = 10_000,
    ) -> None:
        check_namespace(namespace)
        self.registry = registry
        self.namespace = namespace
        self.interval = interval
        self.client_config = client_config
        self.max_pending_keys = max_pending_keys
        self.uploads = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._client_cm: Any = None
        #: Held for the whole of an upload, so that close() never cancels one halfway (its drained data
        #: would be lost with it).
        self._uploading = asyncio.Lock()

    async def start(self) -> None:
        if self._task is None:
            self._client_cm = async_client("cloudwatch", self.client_config)
            self._client = await self._client_cm.__aenter__()
            self._task = asyncio.create_task(self._run(), name=f"cloudwatch-publisher:{self.namespace}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.publish()

    async def publish(self) -> None:
        """Upload what is pending now."""
        async with self._uploading:
            await self._upload()

    async def _upload(self) -> None:
        if self._client is None:
            return
        pending = self.registry.drain()
        if not pending:
            return
        data = to_metric_data(pending, datetime.fromtimestamp(time.time(), UTC))
        try:
            for chunk in _chunks(data, MAX_DATA_PER_REQUEST):
                await self._client.put_metric_data(Namespace=self.namespace, MetricData=chunk)
            self.uploads += 1
        except Exception as exc:
            self.failures += 1
            log.warning("metrics upload failed; keeping the data for the next upload",
                        namespace=self.namespace, error=error_code(exc), detail=str(exc))
            if len(pending) <= self.max_pending_keys:
                self.registry.restore(pending)

    async def close(self, timeout: float | None = None) -> None:
        """Stop the periodic task and make a final upload; give up after ``timeout`` seconds.

        An upload in progress finishes first, within the same ``timeout``.  The client is closed in
        every case (also when the upload is cut short or this is cancelled), so no connection or
        session is left behind.
        """
        try:
            async with asyncio.timeout(timeout):
                if self._task is not None:
                    async with self._uploading:  # an upload in progress finishes first
                        self._task.cancel()
                if self._client is not None:
                    await self.publish()
        except TimeoutError:
            log.warning("final metrics upload did not finish in time; its data is dropped",
                        namespace=self.namespace, timeout=timeout)
        finally:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            client_cm, self._client = self._client_cm, None
            if client_cm is not None:
                self._client_cm = None
                await client_cm.__aexit__(None, None, None)
