"""The producer's metrics for Prometheus: a prometheus-client collector over ``metrics()``.

An application that already serves Prometheus metrics registers the collector in its own registry::

    from prometheus_client import REGISTRY            # or the application's own CollectorRegistry
    from kpl.prometheus import ProducerCollector

    REGISTRY.register(ProducerCollector(producer))    # kpl.Producer or kpl.AsyncProducer

Every scrape reads the producer's local snapshot (``metrics()``: statistics since start, under the KPL's
CloudWatch names) and turns it into Prometheus families; nothing is recorded twice and nothing runs
between scrapes.  It reads only that public snapshot, so it follows whatever the producer records.

How the KPL's statistic sets map (each is count, sum, min, max since start):

* counts of records become counters (``_total``): ``UserRecordsPut`` (1 per record put, 0 per record
  failed) gives ``kpl_user_records_put_total`` (its sum) and ``kpl_user_records_failed_total`` (count
  minus sum), and so on (:data:`METRICS`);
* distributions (``RequestTime``, ``BufferingTime``, ``RetriesPerRecord``, the records-per-request
  ratios, ``UserRecordsPending``) become summaries without quantiles: ``_count`` and ``_sum``, so that
  ``rate(x_sum) / rate(x_count)`` is the mean over any window; milliseconds become seconds;
* a name the producer records that is not in :data:`METRICS` is still exported, as a summary
  ``kpl_<snake_case_name>``: a new metric is never silently dropped.

Labels: ``stream`` and ``shard`` (and ``error_code`` for errors).  The producer records each
observation at every level its ``metrics_granularity`` allows (global, stream, shard); the collector
exports each observation once, at the finest level it was recorded: what could not be attributed to a
shard (or a stream) appears with ``shard=""`` (``stream=""``).  Sums over labels are therefore exact.
Minimum and maximum since start are not exported (they never come down, so they say little).

With ``metrics_level="none"`` the producer records nothing and the collector exports nothing.  The
producer uploads the same metrics to CloudWatch whenever its metrics level is not ``none``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client.core import CounterMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from kpl.errors import InvalidArgumentError

__all__ = ["ProducerCollector"]

_Statistic = Literal["sum", "count-minus-sum"]


class MetricsSource(Protocol):
    """What the collector reads: ``kpl.Producer`` and ``kpl.AsyncProducer`` both have it."""

    def metrics(self) -> dict[str, list[dict[str, Any]]]: ...


@dataclass(frozen=True, slots=True)
class CounterOf:
    """A counter made from one statistic of a KPL metric."""

    name: str
    help: str
    statistic: _Statistic = "sum"


@dataclass(frozen=True, slots=True)
class SummaryOf:
    """A summary (``_count``, ``_sum``) of a KPL metric; ``scale`` converts its unit to a base unit."""

    name: str
    help: str
    scale: float = 1.0


#: The KPL metric names and what each becomes.  Names are without the namespace prefix (``kpl_``).
METRICS: dict[str, tuple[CounterOf | SummaryOf, ...]] = {
    "UserRecordsReceived": (CounterOf("user_records_received_total", "User records handed to put_record."),),
    "UserRecordsPending": (SummaryOf("user_records_pending", "User records outstanding, sampled about "
                                     "once a second (the mean over a window is rate(_sum)/rate(_count))."),),
    "UserRecordsPut": (
        CounterOf("user_records_put_total", "User records delivered."),
        CounterOf("user_records_failed_total", "User records that finished with a failure.", "count-minus-sum"),
    ),
    "UserRecordsDataPut": (CounterOf("user_records_put_bytes_total", "Bytes of user records delivered "
                                                       "(data and partition key, as the KPL counts them)."),),
    "KinesisRecordsPut": (
        CounterOf("kinesis_records_put_total", "Kinesis records (aggregates count once) accepted by PutRecords."),
        CounterOf("kinesis_records_failed_total", "Kinesis records that PutRecords rejected (each attempt counts; "
                  "most are retried).", "count-minus-sum"),
    ),
    "KinesisRecordsDataPut": (CounterOf("kinesis_records_put_bytes_total", "Bytes of Kinesis records accepted."),),
    "ErrorsByCode": (CounterOf("errors_total", "Errors by error code (records rejected, failed requests)."),),
    "AllErrors": (),  # the sum of errors_total over error_code
    "RetriesPerRecord": (SummaryOf("retries_per_record", "Retries of each delivered user record."),),
    "UserRecordExpired": (CounterOf("user_records_expired_total", "User records that reached their "
                                    "time-to-live before delivery."),),
    "BufferingTime": (SummaryOf("buffering_time_seconds", "Time from put_record to the record's first "
                                "PutRecords.", 0.001),),
    "RequestTime": (SummaryOf("put_records_request_duration_seconds", "Duration of PutRecords requests.",
                              0.001),),
    "UserRecordsPerKinesisRecord": (SummaryOf("user_records_per_kinesis_record", "User records in each "
                                              "Kinesis record (aggregation)."),),
    "KinesisRecordsPerPutRecordsRequest": (SummaryOf("kinesis_records_per_request", "Kinesis records in each "
                                                     "PutRecords request."),),
    "UserRecordsPerPutRecordsRequest": (SummaryOf("user_records_per_request", "User records in each PutRecords "
                                                  "request."),),
}

#: Dimension names of the KPL and the labels they become.
_LABELS = {"StreamName": "stream", "ShardId": "shard", "ErrorCode": "error_code"}
_LEVELS = ("StreamName", "ShardId")


class ProducerCollector(Collector):
    """Exports a producer's ``metrics()`` snapshot at every scrape.

    ``namespace`` prefixes every name (``kpl_...``); ``labels`` are added to every sample, to tell
    several producers of one application apart (``{"producer": "clicks"}``).
    """

    def __init__(self, producer: MetricsSource, *, namespace: str = "kpl",
                 labels: Mapping[str, str] | None = None) -> None:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", namespace):
            raise InvalidArgumentError(
                f"namespace must be a Prometheus name ([a-zA-Z_][a-zA-Z0-9_]*), got {namespace!r}")
        extra = dict(labels or {})
        for name in extra:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__") or name in (
                    *_LABELS.values(), "quantile"):
                raise InvalidArgumentError(f"label {name!r} is not a label name the collector can add")
        self.producer = producer
        self.namespace = namespace
        self.labels = extra

    def describe(self) -> Iterable[Metric]:
        """The families every scrape may yield, so a registry can refuse duplicate names."""
        for kpl_name, exports in METRICS.items():
            for export in exports:
                yield self._family(export, self._own_label_names(kpl_name) + list(self.labels))

    def collect(self) -> Iterable[Metric]:
        snapshot = self.producer.metrics()
        for kpl_name, entries in sorted(snapshot.items()):
            exports = METRICS.get(kpl_name)
            if exports is None:
                exports = (SummaryOf(_snake(kpl_name), f"The producer's {kpl_name} metric (count and sum).",
                                     0.001 if _unit(entries) == "Milliseconds" else 1.0),)
            if not exports:
                continue
            own_names = self._own_label_names(kpl_name, entries)
            leaves = list(finest_level(entries))
            for export in exports:
                family = self._family(export, own_names + list(self.labels))
                for labels, count, total in leaves:
                    values = [labels.get(name, "") for name in own_names] + list(self.labels.values())
                    _add(family, export, values, count, total)
                yield family

    # --- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _own_label_names(kpl_name: str, entries: list[dict[str, Any]] | None = None) -> list[str]:
        """``stream``, ``shard``, then the metric's other dimensions (``error_code``)."""
        extra_dims = {name for entry in entries or () for name in entry.get("dimensions", {}) if name not in _LEVELS}
        if kpl_name == "ErrorsByCode":
            extra_dims.add("ErrorCode")
        return ["stream", "shard", *sorted(_LABELS.get(name, _snake(name)) for name in extra_dims)]

    def _family(self, export: CounterOf | SummaryOf, label_names: list[str]) -> Metric:
        name = f"{self.namespace}_{export.name}"
        if isinstance(export, CounterOf):
            return CounterMetricFamily(name, export.help, labels=label_names)
        return SummaryMetricFamily(name, export.help, labels=label_names)


def _add(family: Metric, export: CounterOf | SummaryOf, values: list[str], count: float, total: float) -> None:
    if isinstance(export, CounterOf):
        value = total if export.statistic == "sum" else count - total
        assert isinstance(family, CounterMetricFamily)
        family.add_metric(values, max(0.0, value))
    else:
        assert isinstance(family, SummaryMetricFamily)
        family.add_metric(values, count_value=round(count), sum_value=total * export.scale)


def finest_level(entries: list[dict[str, Any]]) -> Iterator[tuple[dict[str, str], float, float]]:
    """Each observation once, at the finest level it was recorded: ``(labels, count, sum)``.

    The producer records an observation at the global level, then per stream, then per shard, as far
    as its granularity goes.  A coarser entry minus the finer entries under it is what was recorded at
    that level only (a record without a known shard, say); it is exported with the finer label empty.
    Counts and sums add up, so the subtraction is exact.
    """
    groups: dict[tuple[tuple[str, str], ...], dict[tuple[str, ...], tuple[float, float]]] = {}
    for entry in entries:
        dims: dict[str, str] = dict(entry.get("dimensions", {}))
        extra = tuple(sorted((name, value) for name, value in dims.items() if name not in _LEVELS))
        path = tuple(dims[name] for name in _LEVELS if name in dims)
        count, total = float(entry.get("count", 0.0)), float(entry.get("sum", 0.0))
        previous = groups.setdefault(extra, {}).get(path, (0.0, 0.0))
        groups[extra][path] = (previous[0] + count, previous[1] + total)
    for extra, paths in groups.items():
        extra_labels = {_LABELS.get(name, _snake(name)): value for name, value in extra}
        for path, (recorded_count, recorded_total) in paths.items():
            count, total = recorded_count, recorded_total
            for child, (child_count, child_total) in paths.items():
                if len(child) == len(path) + 1 and child[:len(path)] == path:
                    count -= child_count
                    total -= child_total
            if count < 0.5:  # counts are whole numbers: nothing was recorded at this level only
                continue
            labels = {"stream": path[0] if path else "", "shard": path[1] if len(path) > 1 else ""}
            yield {**labels, **extra_labels}, count, total


def _unit(entries: list[dict[str, Any]]) -> str:
    return str(entries[0].get("unit", "")) if entries else ""


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()

