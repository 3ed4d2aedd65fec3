"""The agent's Prometheus metrics, read from the flows at every scrape.

A collector rather than counters updated on the hot path: the flows already count everything (for the
progress line and CloudWatch), so a scrape reads those figures and the hot path pays nothing.  Series
of files that are no longer tracked simply stop being exported.

Names follow Prometheus conventions (``_total`` counters, bytes and seconds); every series has a
``flow`` label (the flow id, as in the checkpoint table and the logs).  docs/agent.md lists them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.health import delivery_stall
from kpl import __version__

if TYPE_CHECKING:
    from agent.daemon import Agent

PREFIX = "kinesis_agent"

#: (name without prefix and _total, help, where the value comes from).
_READ_COUNTERS = (
    ("records_read", "Records cut from the files: lines, or multi-line records with multiLineStartPattern.",
     "records_parsed"),
    ("read_bytes", "Bytes of the files turned into records.", "bytes_consumed"),
    ("header_lines_skipped", "Lines skipped by skipHeaderLines.", "header_lines_skipped"),
    ("records_skipped", "Records a converter dropped (LOGTOJSON lines that do not match).", "records_skipped"),
    ("conversion_errors", "Records a converter failed on (sent unconverted).", "conversion_errors"),
    ("records_truncated", "Records cut to the record size limit.", "records_truncated"),
    ("records_dropped", "Records over the size limit dropped (longRecordOption DROP).", "records_dropped_too_long"),
)
_SEND_COUNTERS = (
    ("record_send_attempts", "Records sent to the destination, each attempt counted.", "records_attempted"),
    ("records_shipped", "Records the destination accepted.", "records_sent"),
    ("records_failed", "Records the destination rejected in an attempt; every one is retried until delivered.",
     "record_errors"),
    ("shipped_bytes", "Bytes of records the destination accepted.", "bytes_sent"),
    ("service_errors", "Requests that failed as a whole (Kinesis flows: delivery rounds in which every record "
     "failed).", "service_errors"),
)


class AgentCollector(Collector):
    """Every flow's figures, for ``/metrics``."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterable[Metric]:
        agent = self.agent
        now = time.monotonic()
        flows = list(agent.flows)
        info = InfoMetricFamily(f"{PREFIX}_build", "The agent's version.")
        info.add_metric([], {"version": __version__})
        yield info

        for name, text, attribute in _READ_COUNTERS:
            family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["flow"])
            for flow in flows:
                family.add_metric([flow.id], getattr(flow.stats, attribute))
            yield family
        for name, text, attribute in _SEND_COUNTERS:
            family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["flow"])
            for flow in flows:
                family.add_metric([flow.id], getattr(agent.send_metrics[flow.id].totals, attribute))
            yield family
        retries = CounterMetricFamily(f"{PREFIX}_send_retries", "Sends retried after a backoff, by the error that "
                                      "caused them.", labels=["flow", "error"])
        for flow in flows:
            for code, count in sorted(agent.send_metrics[flow.id].retries_by_error.items()):
                retries.add_metric([flow.id, code], count)
        yield retries
        saves = CounterMetricFamily(f"{PREFIX}_checkpoint_save_failures", "Checkpoint database writes that failed "
                                    "(retried).")
        saves.add_metric([], agent.store.failures)
        yield saves

        gauges = {
            "files_tracked": GaugeMetricFamily(f"{PREFIX}_files_tracked", "Files the flow follows.",
                                               labels=["flow"]),
            "checkpoint_lag_bytes": GaugeMetricFamily(
                f"{PREFIX}_checkpoint_lag_bytes", "Bytes read but not yet covered by the checkpoints (sent and "
                "unacknowledged, or in the batch being filled).", labels=["flow"]),
            "checkpoint_age_seconds": GaugeMetricFamily(
                f"{PREFIX}_checkpoint_age_seconds", "Age of the oldest batch sent and not yet acknowledged: how long "
                "the checkpoints have been held back by delivery (0 when every batch is acknowledged).",
                labels=["flow"]),
            "unacknowledged_batches": GaugeMetricFamily(
                f"{PREFIX}_unacknowledged_batches", "Batches read and not yet acknowledged.", labels=["flow"]),
            "unacknowledged_bytes": GaugeMetricFamily(
                f"{PREFIX}_unacknowledged_bytes", "Bytes read and not yet acknowledged (bounded by "
                "publishQueueCapacityBytes).", labels=["flow"]),
            "delivery_stall_seconds": GaugeMetricFamily(
                f"{PREFIX}_delivery_stall_seconds", "How long the flow has had records waiting without delivering "
                "any (0 when none wait); /readyz fails above prometheus.maxDeliveryStallMillis.", labels=["flow"]),
        }
        behind = GaugeMetricFamily(f"{PREFIX}_file_behind_bytes", "Bytes of a tailed file not read yet.",
                                   labels=["flow", "path"])
        for flow in flows:
            progress = flow.progress()
            waiting = flow.waiting_since()
            values = {
                "files_tracked": progress.files_tracked,
                "checkpoint_lag_bytes": progress.checkpoint_lag_bytes,
                "checkpoint_age_seconds": 0.0 if waiting is None else max(0.0, now - waiting),
                "unacknowledged_batches": progress.batches_unacknowledged,
                "unacknowledged_bytes": progress.unacknowledged_bytes,
                "delivery_stall_seconds": delivery_stall(flow, agent.send_metrics[flow.id], now),
            }
            for key, gauge in gauges.items():
                gauge.add_metric([flow.id], values[key])
            by_path: dict[str, int] = {}
            for tracked in flow.files.values():  # a path may be tracked twice for a moment (rotation)
                by_path[tracked.path] = by_path.get(tracked.path, 0) + tracked.behind
            for path, nbytes in sorted(by_path.items()):
                behind.add_metric([flow.id, path], nbytes)
        yield from gauges.values()
        yield behind
