from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kpl.cloudwatch import CloudWatchPublisher, MetricsRegistry, dimensions
from tests.support.waiting import wait_for


async def test_publisher_uploads_statistic_sets(aws_clients: Callable[[str], Any],
                                                unique_name: Callable[[str], str]) -> None:
    namespace = unique_name("ns")
    registry = MetricsRegistry()
    publisher = CloudWatchPublisher(registry, namespace, interval=3600)
    await publisher.start()
    try:
        for value in (10.0, 20.0, 30.0):
            registry.put("BufferingTime", value, "Milliseconds", dimensions(StreamName="clicks"))
        await publisher.publish()
    finally:
        await publisher.close()
    assert publisher.uploads == 1 and publisher.failures == 0
    cloudwatch = aws_clients("cloudwatch")
    metrics = wait_for(lambda: cloudwatch.list_metrics(Namespace=namespace)["Metrics"], 30, message="metric listed")
    assert metrics[0]["MetricName"] == "BufferingTime"
    assert metrics[0]["Dimensions"] == [{"Name": "StreamName", "Value": "clicks"}]
