from __future__ import annotations

import threading
from datetime import UTC, datetime

from kpl.cloudwatch import MetricsRegistry, dimensions, to_metric_data


def test_registry_aggregates_and_drains() -> None:
    registry = MetricsRegistry()
    dims = dimensions(StreamName="s", ShardId=None)
    assert dims == (("StreamName", "s"),)
    for value in (1.0, 5.0, 3.0):
        registry.put("RequestTime", value, "Milliseconds", dims)
    registry.put("UserRecordsPut", 1.0, count=10)
    pending = registry.drain()
    stats = pending[("RequestTime", dims, "Milliseconds")]
    assert (stats.count, stats.sum, stats.minimum, stats.maximum) == (3, 9.0, 1.0, 5.0)
    assert registry.drain() == {}
    assert registry.total("UserRecordsPut").sum == 10
    assert registry.total("RequestTime", StreamName="s").average == 3.0
    data = to_metric_data(pending, datetime.now(UTC))
    assert {d["MetricName"] for d in data} == {"RequestTime", "UserRecordsPut"}


def test_restore_merges_undelivered_data() -> None:
    registry = MetricsRegistry()
    registry.put("A", 2.0)
    undelivered = registry.drain()
    registry.put("A", 4.0)
    registry.restore(undelivered)
    stats = registry.drain()[("A", (), "Count")]
    assert (stats.count, stats.sum) == (2, 6.0)


def test_concurrent_writers_lose_nothing() -> None:
    registry = MetricsRegistry()

    def write() -> None:
        for _ in range(10_000):
            registry.put("N", 1.0)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert registry.total("N").count == 40_000
