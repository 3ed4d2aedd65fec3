"""The benchmark harness: quick scaling, the table, the options, and variants run in child processes.

The child-process tests run a variant against the sink in its own process; they take a few seconds.
"""

from __future__ import annotations

import argparse
import base64

import pytest

from bench.harness import Measurement, Options, Result, Variant, format_table, quick_kwargs, run_child, run_variants
from bench.workload import Workload
from tests.support.sink import SinkProcess


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


def run(name: str, cpu_s: float, *, target: str = "bench.peers:x", misroutes: bool = False, **sink: object) -> Result:
    return Result(Variant(name, target, misroutes=misroutes), ok=True,
                  measurement=Measurement(1000, wall_s=1.0, cpu_s=cpu_s), sink=sink_counters(**sink) if sink else {})


def test_a_row_delivered_correctly_only_when_the_sink_saw_every_record_in_its_shard() -> None:
    from bench.harness import delivered_correctly

    assert delivered_correctly(run("good", 0.005, verify="route"))
    assert not delivered_correctly(run("lost", 0.005, verify="route", user_records=990))
    assert not delivered_correctly(run("misrouted", 0.005, verify="route", misrouted_user_records=3))
    assert delivered_correctly(run("unverified", 0.005))  # a sink that cannot tell: the variant's word counts
    assert not delivered_correctly(run("flagged", 0.005, misroutes=True))


def test_best_peer_is_the_cheapest_peer_that_delivered_correctly_and_the_table_shows_the_ratio() -> None:
    from bench.producer_bench import best_peer

    rows = [run("kpl", 0.006, target="bench.producer_bench:kpl_async_producer", verify="route"),
            run("floor", 0.0003, target="bench.peers:baseline_workload"),
            run("misrouting peer", 0.004, verify="route", misrouted_user_records=900),
            run("peer a", 0.005, verify="route"), run("peer b", 0.007, verify="route")]
    best = best_peer(rows)
    assert best is not None and best.variant.name == "peer a"
    table = format_table(rows, title="t", reference=best)
    kpl_row = next(line for line in table.splitlines() if line.startswith("kpl"))
    assert "vs best peer" in table and " 1.20 " in kpl_row and "peer a's" in table


def test_stopwatch_reports_thread_cpu_garbage_collection_and_phases() -> None:
    import gc

    from bench.harness import Stopwatch

    with Stopwatch() as watch:
        cycles = []
        for _ in range(20_000):
            node: list[object] = []
            node.append(node)
            cycles.append(node)
        watch.phase("built")
        gc.collect()
    result = watch.result(1)
    assert result.gc_collections >= 1 and result.gc_s > 0
    assert 0 < result.thread_cpu_s <= result.cpu_s + 0.01
    assert 0 <= result.phases["built"] <= result.cpu_s
    assert watch._on_gc not in gc.callbacks


def test_options_repeat_the_exact_command_and_keep_a_script_s_own_arguments() -> None:
    from bench.harness import parse_options

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rate", type=float, default=5.0)

    options = parse_options("d", ["--repeat", "3", "--only", "kpl Async", "--sink", "mini", "--rate", "7"],
                            sink_choice=True, extra=extra)
    assert options.repeat == 3 and options.sink == "mini" and options.extra == {"rate": 7.0}
    assert options.command("bench.x") == (
        ".venv/bin/python -m bench.x --repeat 3 --only 'kpl Async' --sink mini --rate 7")


def test_crosscheck_compares_paired_runs_and_flags_disagreements() -> None:
    from bench.crosscheck import Pair, format_pairs

    def runs(*cpus: float) -> list[Result]:
        return [run("v", cpu) for cpu in cpus]

    # a slow spell hits the third pair on both sides: the paired ratios stay near 1
    agreeing = Pair(Variant("same", "m:f"), runs(0.005, 0.0052, 0.009), runs(0.0051, 0.0051, 0.0092))
    apart = Pair(Variant("apart", "m:g"), runs(0.005, 0.005, 0.005), runs(0.004, 0.004, 0.004))
    cpu = agreeing.difference(lambda r: r.cpu_us_per_record)
    assert cpu is not None and abs(cpu) < 0.03
    assert apart.difference(lambda r: r.cpu_us_per_record) == pytest.approx(0.25)
    # one pair far apart each way: outside the tolerance, but not systematic
    noisy = Pair(Variant("noisy", "m:h"), runs(0.005, 0.008, 0.005), runs(0.004, 0.005, 0.008))
    table = format_pairs([agreeing, apart, noisy], "a", "b", 0.10, "title")
    rows = {line.split()[0]: line for line in table.splitlines()[3:]}
    assert rows["same"].endswith("yes") and rows["apart"].endswith("NO") and "+25%" in rows["apart"]
    assert rows["noisy"].endswith("noise: CPU") and "-38..+60%" in rows["noisy"]


def test_latency_percentiles_leave_the_warm_up_out() -> None:
    from bench.latency_bench import latency_summary

    put_at = [i / 100 for i in range(300)]  # 3 s of arrivals at 100/s
    done_at = [p + (0.5 if p < 1.0 else 0.010 + (0.090 if i % 100 == 0 else 0.0)) for i, p in enumerate(put_at)]
    summary = latency_summary(put_at, done_at, start=0.0)
    assert summary["measured"] == 200 and summary["warm_up_max_ms"] == pytest.approx(500.0)
    assert summary["p50_ms"] == pytest.approx(10.0) and summary["max_ms"] == pytest.approx(100.0)
    assert summary["p99_ms"] == pytest.approx(100.0) and summary["p90_ms"] == pytest.approx(10.0)


def test_harness_runs_variants_in_child_processes_and_reports_every_row() -> None:
    workload = Workload(records=2000, record_size=50).to_dict()
    with SinkProcess(streams={"s": 4}, verify="route") as sink:
        results = run_variants([
            Variant("agg", "bench.peers:agg_boto3_producer", {"workload": workload, "stream": "s"}),
            Variant("broken", "bench.no_such_module:run", {}),
        ], sink=sink, options=Options())
    agg, broken = results
    assert agg.ok and agg.measurement is not None and agg.measurement.records == 2000
    assert agg.measurement.peak_rss_mib > 0 and agg.cpu_us_per_record > 0
    assert agg.sink["user_records"] == 2000 and agg.sink["misrouted_user_records"] == 0
    assert not broken.ok and "ModuleNotFoundError" in broken.error
    table = format_table(results, title="t")
    assert "records/s" in table and "ModuleNotFoundError" in table


def test_a_child_reports_what_its_variant_returned() -> None:
    counted = run_child({"target": "bench.peers:baseline_workload", "kwargs": {"workload": {"records": 1500}}})
    assert counted["ok"] and counted["records"] == 1500 and counted["peak_rss_mib"] > 0
    wrong = run_child({"target": "base64:b64decode", "kwargs": {"s": base64.b64encode(b"x").decode()}})
    assert not wrong["ok"] and "returned bytes" in wrong["error"]


def test_wait_until_returns_the_first_truthy_value_or_says_what_was_awaited_and_why() -> None:
    from bench.harness import wait_until

    answers = iter([None, [], [1.5]])
    assert wait_until(lambda: next(answers), 10, "answers", interval=0.001) == [1.5]
    with pytest.raises(RuntimeError, match=r"balanced not reached within 0s; leases by owner \{'A': 3\}"):
        wait_until(lambda: False, 0.01, "balanced", interval=0.001, explain=lambda: "leases by owner {'A': 3}")
