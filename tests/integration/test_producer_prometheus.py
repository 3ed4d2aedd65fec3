"""kpl.prometheus.ProducerCollector: a real producer's metrics through an application's own registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import kpl
from kpl.prometheus import ProducerCollector
from tests.support.waiting import wait_for


def scrape(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    parsed: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            parsed.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return parsed


def total(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(value for sample_labels, value in samples if all(sample_labels.get(k) == v for k, v in labels.items()))


@pytest.mark.parametrize("granularity", ["shard", "global"])
def test_collector_exports_the_producers_snapshot(make_stream: Callable[..., str], granularity: str) -> None:
    stream = make_stream(shards=2)
    registry = CollectorRegistry(auto_describe=True)
    config = kpl.ProducerConfig(record_max_buffered_time_ms=50, metrics_level="detailed",
                                metrics_granularity=granularity, metrics_upload_delay_ms=60000)
    with kpl.Producer(config) as producer:
        registry.register(ProducerCollector(producer, labels={"producer": "clicks"}))
        before = scrape(registry)
        assert total(before.get("kpl_user_records_put_total", [])) == 0
        futures = [producer.put_record(stream, f"click {i}".encode(), partition_key=f"user-{i}") for i in range(40)]
        producer.flush_all(timeout=60)
        assert all(future.result().success for future in futures)
        # UserRecordsReceived is recorded by the producer's housekeeping, about once a second.
        def all_received() -> dict[str, list[tuple[dict[str, str], float]]] | None:
            metrics = scrape(registry)
            return metrics if total(metrics.get("kpl_user_records_received_total", [])) == 40 else None

        metrics = wait_for(all_received, 30, message="the 40 received records exported")
        snapshot: dict[str, Any] = producer.metrics()

    put = metrics["kpl_user_records_put_total"]
    assert total(put) == 40, put
    assert all(labels["producer"] == "clicks" for labels, _ in put)
    assert total(metrics["kpl_user_records_received_total"]) == 40
    assert total(metrics["kpl_user_records_failed_total"]) == 0
    # The KPL counts a record's data and its partition key.
    assert total(metrics["kpl_user_records_put_bytes_total"]) == sum(len(f"click {i}user-{i}") for i in range(40))
    assert total(metrics["kpl_put_records_request_duration_seconds_count"]) >= 1
    # Sums over labels are exact: each observation is exported once, at the finest level recorded.
    global_entry = next(e for e in snapshot["UserRecordsPut"] if not e["dimensions"])
    assert total(put) == global_entry["sum"]
    if granularity == "shard":
        shards = {labels["shard"] for labels, value in put if value}
        assert shards <= {"shardId-000000000000", "shardId-000000000001"} and len(shards) == 2, put
        assert all(labels["stream"] == stream for labels, _ in put)
        request_ms = next(e for e in snapshot["RequestTime"] if e["dimensions"] == {"StreamName": stream})["sum"]
        seconds = total(metrics["kpl_put_records_request_duration_seconds_sum"], stream=stream)
        assert seconds == pytest.approx(request_ms / 1000)
    else:
        assert {(labels["stream"], labels["shard"]) for labels, _ in put} == {("", "")}


def test_a_producer_without_metrics_exports_nothing(make_stream: Callable[..., str]) -> None:
    registry = CollectorRegistry()
    with kpl.Producer(metrics_level="none") as producer:
        registry.register(ProducerCollector(producer))
        producer.put_record(make_stream(), b"x", partition_key="k")
        producer.flush_all(timeout=60)
        assert not [name for name in scrape(registry) if name.startswith("kpl_")]
