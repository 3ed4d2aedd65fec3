"""kpl.prometheus: the KPL's statistic sets as Prometheus families (synthetic snapshots, no producer)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kpl.prometheus import METRICS, ProducerCollector, finest_level


def entry(count: float, total: float, unit: str = "Count", **dims: str) -> dict[str, Any]:
    return {"dimensions": dims, "unit": unit, "count": count, "sum": total, "min": 0, "max": 1, "avg": 0}


class Snapshot:
    def __init__(self, data: dict[str, list[dict[str, Any]]]) -> None:
        self.data = data

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        return self.data


def scrape(snapshot: dict[str, list[dict[str, Any]]], **kwargs: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ProducerCollector(Snapshot(snapshot), **kwargs))
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def test_each_observation_once_at_its_finest_level() -> None:
    # 10 records: 6 on shard 0, 3 on shard 1, 1 whose shard was unknown (recorded per stream only).
    entries = [entry(10, 9), entry(10, 9, StreamName="s"), entry(6, 6, StreamName="s", ShardId="0"),
               entry(3, 2, StreamName="s", ShardId="1")]
    leaves = sorted((labels["shard"], count, total) for labels, count, total in finest_level(entries))
    assert leaves == [("", 1.0, 1.0), ("0", 6.0, 6.0), ("1", 3.0, 2.0)]
    metrics = scrape({"UserRecordsPut": entries})
    assert sorted(metrics["kpl_user_records_put_total"], key=lambda s: s[0]["shard"]) == [
        ({"stream": "s", "shard": ""}, 1.0), ({"stream": "s", "shard": "0"}, 6.0), ({"stream": "s", "shard": "1"}, 2.0)]
    assert sum(v for _, v in metrics["kpl_user_records_failed_total"]) == 1.0


def test_global_only_and_error_codes() -> None:
    metrics = scrape({
        "UserRecordsPending": [entry(4, 100)],
        "ErrorsByCode": [entry(5, 5, ErrorCode="Throttled"), entry(5, 5, StreamName="s", ErrorCode="Throttled"),
                         entry(2, 2, ErrorCode="InternalFailure"),
                         entry(2, 2, StreamName="s", ErrorCode="InternalFailure")],
        "AllErrors": [entry(7, 7)],
        "BufferingTime": [entry(2, 300, "Milliseconds")],
    })
    assert metrics["kpl_user_records_pending_count"] == [({"stream": "", "shard": ""}, 4.0)]
    assert metrics["kpl_user_records_pending_sum"] == [({"stream": "", "shard": ""}, 100.0)]
    assert sorted(metrics["kpl_errors_total"], key=lambda s: s[0]["error_code"]) == [
        ({"stream": "s", "shard": "", "error_code": "InternalFailure"}, 2.0),
        ({"stream": "s", "shard": "", "error_code": "Throttled"}, 5.0)]
    assert not [name for name in metrics if "all_errors" in name]
    assert metrics["kpl_buffering_time_seconds_sum"] == [({"stream": "", "shard": ""}, 0.3)]


def test_a_metric_the_collector_does_not_know_is_still_exported() -> None:
    metrics = scrape({"SomethingNewTime": [entry(2, 50, "Milliseconds", StreamName="s")]}, namespace="app_kpl")
    assert metrics["app_kpl_something_new_time_count"] == [({"stream": "s", "shard": ""}, 2.0)]
    assert metrics["app_kpl_something_new_time_sum"] == [({"stream": "s", "shard": ""}, 0.05)]


def test_describe_names_every_family_so_duplicates_are_refused() -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ProducerCollector(Snapshot({})))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(ProducerCollector(Snapshot({})))
    registry.register(ProducerCollector(Snapshot({}), namespace="other"))
    assert len(METRICS) == 15


@pytest.mark.parametrize("kwargs", [{"namespace": "kpl-x"}, {"labels": {"stream": "a"}}, {"labels": {"bad-name": "a"}}])
def test_bad_names_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ProducerCollector(Snapshot({}), **kwargs)
