"""The agent benchmark (issue 5): lines per second per core from a file into the fast local sink.

    .venv/bin/python -m bench.agent_bench [--quick] [--repeat 3] [--only aggregation] [--json bench/results/agent.json]

Each variant runs the whole agent (agent.daemon.Agent with its checkpoint database, the same code the
``kinesis-agent`` command runs) in a fresh process on a file of 100-byte lines written beforehand, into
the sink of ``tests/support/sink/`` in a second process.  The measured window starts once the agent is up and
ends when every flow's checkpoint has reached the end of the file, so it covers reading, cutting,
batching, the producer (or the Firehose sender), the sink's answers and the acknowledgements; start-up
and shutdown are outside it.  ``CPU %`` above 100 would mean more than one core: the agent is one event
loop, so lines/s divided by CPU seconds is the per-core figure.  Peak RSS is the process's high-water
mark, to compare with the flow's byte budget (publishQueueCapacityBytes).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import Measurement, Result, Stopwatch, Variant, format_table, parse_options, run_variants
from tests.support.sink import SinkProcess

LINES = 1_000_000
LINE_BYTES = 100
#: The producer keeps each shard within the service's limits (1 MiB/s and 1000 records/s, at RateLimit
#: 150%), so the stream needs enough shards for the rate limits not to be what is measured.
SHARDS = 16
WIDE_SHARDS = 16
TARGET_LINES_PER_S = 100_000


def write_lines(path: Path, lines: int, line_bytes: int) -> int:
    """``lines`` distinct lines of ``line_bytes`` bytes (newline included), written in large chunks."""
    filler = "x" * (line_bytes - 18)
    with path.open("wb") as handle:
        for start in range(0, lines, 10_000):
            handle.write("".join(f"{n:016d} {filler}\n" for n in range(start, min(lines, start + 10_000))).encode())
    return path.stat().st_size


async def run_agent(flow_settings: dict[str, Any], lines: int, line_bytes: int,
                    lift_rate_limit: bool = False) -> Measurement:
    from agent import daemon, producer_settings
    from agent.config import load_config
    from agent.daemon import Agent
    from kpl.logs import configure_logging

    configure_logging("warning")
    if lift_rate_limit:
        # As in the producer benchmark: the sink does not throttle, so per-shard limiting measures the
        # stream's size rather than the client.  agent.json has no key for it; patch this process only.
        configured = producer_settings.producer_config
        daemon.producer_config = lambda config, flow: configured(config, flow).with_(  # type: ignore[attr-defined]
            rate_limit=10**9)
    directory = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    log = directory / "app.log"
    size = write_lines(log, lines, line_bytes)
    config_path = directory / "agent.json"
    config_path.write_text(json.dumps({
        "checkpointFile": str(directory / "checkpoints"),
        "cloudwatch.emitMetrics": False,
        "log.statusReportingPeriodSeconds": 3600,
        "flows": [{"filePattern": str(log), "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000,
                   **flow_settings}],
    }))
    agent = Agent(load_config(config_path))
    running = asyncio.create_task(agent.run())
    await agent.started.wait()
    with Stopwatch() as watch:
        while sum(tracked.finalizer.checkpoint for flow in agent.flows for tracked in flow.files.values()) < size:
            if running.done():
                raise RuntimeError(f"the agent stopped early with status {running.result()}")
            await asyncio.sleep(0.01)
    agent.request_stop()
    status = await running
    sent = sum(metrics.totals.records_sent for metrics in agent.send_metrics.values())
    return watch.result(lines, records_sent=sent, exit_status=status)


def agent_variants(lines: int) -> list[Variant]:
    target = "bench.agent_bench:run_agent"
    common = {"lines": lines, "line_bytes": LINE_BYTES}
    return [
        Variant("Kinesis, aggregation", target,
                {"flow_settings": {"kinesisStream": "bench", "aggregationEnabled": True}, **common},
                note="KPL aggregation through kpl.AsyncProducer, RANDOM partition keys"),
        Variant("Kinesis, aggregation, rate limits lifted", target,
                {"flow_settings": {"kinesisStream": "bench", "aggregationEnabled": True}, "lift_rate_limit": True,
                 **common},
                note="the producer's per-shard limiter off, as in bench/producer_bench.py"),
        Variant("Kinesis, aggregation, 4 MiB budget", target,
                {"flow_settings": {"kinesisStream": "bench", "aggregationEnabled": True,
                          "publishQueueCapacityBytes": 4 * 1024 * 1024}, **common},
                note="publishQueueCapacityBytes 4 MiB (default 16 MiB)"),
        Variant("Kinesis, no aggregation", target,
                {"flow_settings": {"kinesisStream": "bench", "aggregationEnabled": False}, **common},
                note="one Kinesis record per line"),
        Variant("Kinesis, no aggregation, DETERMINISTIC", target,
                {"flow_settings": {"kinesisStream": "bench", "partitionKeyOption": "DETERMINISTIC"}, **common},
                note="MD5 of each line as its partition key"),
        Variant("Firehose", target, {"flow_settings": {"deliveryStream": "bench"}, **common},
                note="PutRecordBatch, 500 lines per call"),
        Variant("Kinesis, aggregation, CSVTOJSON", target,
                {"flow_settings": {"kinesisStream": "bench", "aggregationEnabled": True,
                          "dataProcessingOptions": [{"optionName": "CSVTOJSON", "customFieldNames": ["n", "x"],
                                                     "delimiter": " "}]},
                 **common},
                note="a converter on every line (CSVTOJSON)"),
    ]


def closing_note(results: list[Result]) -> str:
    ok = {r.variant.name: r for r in results if r.ok and r.measurement is not None}
    ours = ok.get("Kinesis, aggregation")
    if ours is None:
        return "the 'Kinesis, aggregation' row did not run"
    assert ours.measurement is not None
    per_core = ours.measurement.records / ours.measurement.cpu_s if ours.measurement.cpu_s else 0.0
    return (f"{LINE_BYTES}-byte lines, Kinesis with aggregation: {per_core:,.0f} lines per CPU second "
            f"({ours.records_per_s:,.0f} lines/s wall), peak RSS {ours.measurement.peak_rss_mib:.0f} MiB; "
            f"target >= {TARGET_LINES_PER_S:,} lines/s per core: "
            f"{'met' if per_core >= TARGET_LINES_PER_S else 'NOT met'}")


def main() -> int:
    options = parse_options(__doc__.split("\n\n")[0])
    with SinkProcess(streams={"bench": SHARDS}, delivery_streams=("bench",)) as sink:
        results = run_variants(agent_variants(LINES), sink=sink, options=options)
    print(format_table(results, title=f"kinesis-agent, {LINE_BYTES}-byte lines from one file, "
                                      f"{SHARDS}-shard sink stream"))
    print()
    print(closing_note(results))
    print("measured with: .venv/bin/python -m bench.agent_bench" + (" --quick" if options.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
