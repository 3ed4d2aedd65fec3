"""A worker's Prometheus metrics, read from the worker at every scrape.

A collector rather than prometheus-client counters updated on the hot path: the worker already counts
everything per batch and per lease operation (kcl.metrics, for CloudWatch), so a scrape reads those
figures and processing pays nothing more.  ``kcl-worker --metrics-port`` registers it on the endpoint's
registry; an application running :class:`kcl.Worker` itself may register it on its own::

    registry.register(KclCollector(worker))

Names follow Prometheus conventions (``_total`` counters, seconds and bytes); per-shard series carry a
``shard`` label.  Gauges describe the shards this worker holds now; counters cover every shard it has
processed since it started.  docs/kcl.md lists them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from kpl import __version__

if TYPE_CHECKING:
    from kcl.worker import Worker

PREFIX = "kcl"


class KclCollector(Collector):
    """One worker's figures, for ``/metrics``."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterable[Metric]:
        worker = self.worker
        info = InfoMetricFamily(f"{PREFIX}_worker", "The worker: its id, application, stream and lease table.")
        table = worker.lease_table
        info.add_metric([], {"worker": worker.worker_id, "application": worker.application_name,
                             "stream": worker.stream_name, "table": table.name if table else "",
                             "version": __version__})
        yield info
        yield from self._shard_counters()
        yield from self._shard_gauges()
        yield from self._leases()
        yield from self._errors()

    def _shard_counters(self) -> Iterable[Metric]:
        shards = sorted(self.worker.metrics.shards.items())
        records = CounterMetricFamily(f"{PREFIX}_records_processed", "User records handed to process_records that "
                                      "returned (KPL aggregates count their sub-records).", labels=["shard"])
        data = CounterMetricFamily(f"{PREFIX}_processed_bytes", "Bytes of record data processed.", labels=["shard"])
        processing = SummaryMetricFamily(f"{PREFIX}_processing_seconds", "Time in process_records, per call that "
                                         "returned (_count: batches processed).", labels=["shard"])
        dead = CounterMetricFamily(f"{PREFIX}_dead_lettered_records", "Records handed to the dead_letter callback.",
                                   labels=["shard"])
        for shard, totals in shards:
            records.add_metric([shard], totals.records)
            data.add_metric([shard], totals.data_bytes)
            processing.add_metric([shard], count_value=totals.batches, sum_value=totals.processing_seconds)
            dead.add_metric([shard], totals.dead_lettered_records)
        yield from (records, data, processing, dead)

    def _shard_gauges(self) -> Iterable[Metric]:
        worker = self.worker
        coordinator = worker.coordinator
        held = sorted(coordinator.held.all(), key=lambda lease: lease.shard_id) if coordinator else []
        behind = GaugeMetricFamily(f"{PREFIX}_behind_latest_seconds", "MillisBehindLatest of the shard's last read "
                                   "handled, in seconds: how far processing is from the tip of the shard.",
                                   labels=["shard"])
        progress = GaugeMetricFamily(f"{PREFIX}_progress_age_seconds", "Seconds since the shard's last read was "
                                     "handled (a batch processed, or an empty read passed over); grows while a "
                                     "processor is stuck.", labels=["shard"])
        checkpoint = GaugeMetricFamily(f"{PREFIX}_checkpoint_age_seconds", "Seconds the oldest processed record not "
                                       "covered by a checkpoint has waited (0 when the checkpoint covers everything "
                                       "processed).", labels=["shard"])
        renewal = GaugeMetricFamily(f"{PREFIX}_lease_renewal_age_seconds", "Seconds since the lease's last successful "
                                    "renewal was sent; at the failover time the lease is self-fenced.",
                                    labels=["shard"])
        now_wall, now = time.time(), time.monotonic()
        consumers = worker.shard_consumers
        for lease in held:
            if lease.lost:
                continue
            shard = lease.shard_id
            last = worker.metrics.progress(shard, lease.acquired_at)
            if last is not None:
                behind.add_metric([shard], last[0] / 1000)
                progress.add_metric([shard], max(0.0, now_wall - last[1]))
            consumer = consumers.get(shard)
            if consumer is not None:
                checkpoint.add_metric([shard], consumer.checkpoint_age(now))
            assert coordinator is not None
            renewal.add_metric([shard], max(0.0, coordinator.held.clock() - lease.last_renewal_sent))
        yield from (behind, progress, checkpoint, renewal)

    def _leases(self) -> Iterable[Metric]:
        worker = self.worker
        coordinator = worker.coordinator
        totals = worker.metrics.leases
        held = GaugeMetricFamily(f"{PREFIX}_leases_held", "Leases this worker holds.")
        held.add_metric([], sum(1 for lease in coordinator.held.all() if not lease.lost) if coordinator else 0)
        yield held
        for name, text, value in (
            ("leases_taken", "Leases this worker became the owner of (available, expired, or handed over to it).",
             totals.taken),
            ("leases_stolen", "Leases this worker asked other workers for, to balance the load.", totals.stolen),
            ("leases_lost", "Leases lost: taken by another worker, deleted, or not renewed within the failover time.",
             totals.lost),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", text)
            family.add_metric([], value)
            yield family
        renewals = CounterMetricFamily(f"{PREFIX}_lease_renewals", "Lease renewals, by result.", labels=["result"])
        renewals.add_metric(["success"], totals.renewals)
        renewals.add_metric(["failure"], totals.renewal_failures)
        yield renewals
        table = worker.lease_table
        requests = CounterMetricFamily(f"{PREFIX}_lease_table_requests", "Requests to the lease table, by operation.",
                                       labels=["operation"])
        unanswered = GaugeMetricFamily(f"{PREFIX}_lease_table_unanswered_seconds", "Seconds since the lease table "
                                       "last answered, if a request has failed since (0 while it answers); "
                                       "/healthz fails above the failover time.")
        since = table.unanswered_since if table is not None else None
        unanswered.add_metric([], 0.0 if since is None else max(0.0, time.monotonic() - since))
        for operation, count in sorted(dict(table.requests).items() if table is not None else ()):
            requests.add_metric([operation], count)
        yield requests
        yield unanswered

    def _errors(self) -> Iterable[Metric]:
        worker = self.worker
        errors = dict(worker.metrics.errors)
        table = worker.lease_table
        if table is not None:
            for key, count in dict(table.failures).items():
                errors[key] = errors.get(key, 0) + count
        family = CounterMetricFamily(f"{PREFIX}_errors", "Failed calls, by operation (GetRecords, SubscribeToShard, "
                                     "ListShards, lease table operations such as UpdateItem:renew, ProcessRecords) and "
                                     "error code (the service's, or the exception's class name).",
                                     labels=["operation", "code"])
        for (operation, code), count in sorted(errors.items()):
            family.add_metric([operation, code], count)
        yield family
