"""The benchmark harness's pure parts: quick scaling and the table (child processes: test_bench_sink_protocol)."""

from __future__ import annotations

from bench.harness import Measurement, Result, Variant, format_table, quick_kwargs
from bench.workload import Workload


def test_quick_runs_scale_record_counts_but_never_up() -> None:
    kwargs = {"workload": {"records": 200_000, "record_size": 100}, "expected_records": 50_000, "stream": "s"}
    assert quick_kwargs(kwargs, 0.1) == {"workload": {"records": 20_000, "record_size": 100},
                                         "expected_records": 5000, "stream": "s"}
    assert quick_kwargs({"records": 5000}, 0.1) == {"records": 1000}
    assert quick_kwargs({"records": 300}, 0.1) == {"records": 300}


def sink_counters(**changes: object) -> dict[str, object]:
    counters: dict[str, object] = {"cpu_s": 0.1, "wall_s": 3.0, "requests": 10, "records": 5, "failed": 0,
                                   "user_records": 1000, "misrouted_user_records": 0, "invalid_aggregates": 0,
                                   "served_user_records": 0, "firehose_records": 0, "verify": "count"}
    counters.update(changes)
    return counters


def test_the_table_shows_rates_costs_and_every_problem() -> None:
    good = Result(Variant("fast", "m:f", note="n"), ok=True,
                  measurement=Measurement(1000, wall_s=0.5, cpu_s=0.25, rss_start_mib=50, peak_rss_mib=60,
                                          extra={"requests": 3}), sink=sink_counters())
    short = Result(Variant("lossy", "m:g"), ok=True, measurement=Measurement(1000, 1.0, 1.0),
                   sink=sink_counters(user_records=990, misrouted_user_records=7, cpu_s=0.9))
    missing = Result(Variant("absent", "m:h"), ok=False, error="aiokpl is not installed")
    assert good.records_per_s == 2000 and good.cpu_us_per_record == 250
    table = format_table([good, short, missing], title="title")
    rows = {line.split()[0]: line for line in table.splitlines() if line.split() and line.split()[0] in
            ("fast", "lossy", "absent")}
    assert "2,000" in rows["fast"] and "250.0" in rows["fast"] and "n; requests=3" in rows["fast"]
    assert "sink was busy" in rows["lossy"] and "990 user records, not 1,000" in rows["lossy"]
    assert "7 user records in the wrong shard" in rows["lossy"]
    assert rows["absent"].endswith("aiokpl is not installed")


def test_workload_records_are_deterministic_and_sized() -> None:
    workload = Workload(records=5, record_size=32, users=3)
    items = list(workload.items())
    assert items == list(workload.items())
    assert all(len(data) == 32 for _, data in items)
    assert [data[:10] for _, data in items] == [b"%010d" % i for i in range(5)]
    assert {key for key, _ in items} <= set(workload.partition_keys())
    assert [(k.encode(), d) for k, d in items] == list(workload.items_bytes_keys())
