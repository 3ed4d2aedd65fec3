"""How much the sink (``tests.support.sink``) itself can absorb, so it is never the bottleneck.

    .venv/bin/python -m bench.sink_selftest [--quick]

The sink runs as in a benchmark (its own process, via :class:`tests.support.sink.SinkProcess`) and is
driven by a deliberately cheap client: pre-built HTTP requests written over a few keep-alive
connections, with responses read but not parsed.  For each scenario the table shows what was
achieved and the *ceiling*: records per second the sink would absorb with one whole core, from its
own CPU time per request.  A client benchmark is trustworthy while it stays well under that ceiling
(the harness also flags runs during which the sink was busy).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bench.harness import machine_summary
from bench.workload import Workload
from kpl.aggregation import AggregateBuilder
from tests.support.sink import PrefillSpec, SinkProcess
from tests.support.sink.kinesis import MAX_GET_RECORDS_LIMIT
from tests.support.sink.model import encode_iterator

CONNECTIONS = 2
PREFILL_SHARDS = 2
KINESIS_TARGET = "Kinesis_20131202."
FIREHOSE_TARGET = "Firehose_20150804."


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    target: str
    body: bytes
    #: user records (or entries) that one request carries, for the records/s columns
    records_per_request: int
    payload_bytes_per_request: int
    sink_settings: dict[str, Any]


def _request(host: str, target: str, body: bytes) -> bytes:
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: {target}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0000\r\n"
        f"X-Amz-Date: 20260101T000000Z\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _put_records_body(entries: list[tuple[str, bytes]]) -> bytes:
    records = [{"Data": base64.b64encode(data).decode(), "PartitionKey": key} for key, data in entries]
    return json.dumps({"StreamName": "bench", "Records": records}).encode()


def _aggregates(count: int, record_size: int) -> tuple[list[tuple[str, bytes]], int]:
    """``count`` KPL aggregates of 100-byte records, ~50 KB each, and how many user records they hold."""
    items = Workload(records=count * 1000, record_size=record_size).items()
    entries: list[tuple[str, bytes]] = []
    users = 0
    builder = AggregateBuilder()
    first_key = ""
    for key, data in items:
        if not first_key:
            first_key = key
        if builder.add(key, None, data):
            continue
        entries.append((first_key, builder.build()))
        users += len(builder)
        if len(entries) == count:
            break
        builder = AggregateBuilder()
        builder.add(key, None, data)
        first_key = key
    return entries, users


def scenarios() -> list[Scenario]:
    plain_small = list(Workload(records=500, record_size=100).items())
    plain_large = list(Workload(records=500, record_size=1024).items())
    aggregated, aggregated_users = _aggregates(100, 100)
    aggregated_bytes = sum(len(data) for _, data in aggregated)
    firehose = json.dumps({"DeliveryStreamName": "bench", "Records": [
        {"Data": base64.b64encode(data).decode()} for _, data in plain_small]}).encode()
    put = KINESIS_TARGET + "PutRecords"
    get = KINESIS_TARGET + "GetRecords"

    def get_body(stream: str) -> bytes:
        iterator = encode_iterator(stream, 0, 0)
        return json.dumps({"ShardIterator": iterator, "Limit": MAX_GET_RECORDS_LIMIT}).encode()

    return [
        Scenario("PutRecords 500 x 100 B", put, _put_records_body(plain_small), 500, 500 * 100, {}),
        Scenario("PutRecords 500 x 1 KiB", put, _put_records_body(plain_large), 500, 500 * 1024, {}),
        Scenario("PutRecords 100 aggregates (5 MiB)", put, _put_records_body(aggregated), aggregated_users,
                 aggregated_bytes, {}),
        Scenario("  same, verify=count", put, _put_records_body(aggregated), aggregated_users, aggregated_bytes,
                 {"verify": "count"}),
        Scenario("  same, verify=route", put, _put_records_body(aggregated), aggregated_users, aggregated_bytes,
                 {"verify": "route"}),
        Scenario("GetRecords 10000 x 100 B", get, get_body("read-plain"), MAX_GET_RECORDS_LIMIT,
                 MAX_GET_RECORDS_LIMIT * 100, {}),
        Scenario("GetRecords aggregated (10 MiB)", get, get_body("read-agg"), 0, 0, {}),
        Scenario("Firehose PutRecordBatch 500 x 100 B", FIREHOSE_TARGET + "PutRecordBatch", firehose, 500,
                 500 * 100, {}),
    ]


async def _drive(host: str, port: int, request: bytes, duration: float) -> tuple[int, int, float]:
    """Send ``request`` back to back on one connection; (responses, response bytes, seconds)."""
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    received = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < duration:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            if status != b"200":
                raise RuntimeError(f"sink answered {status.decode()}: {head.decode(errors='replace')}")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            received += len(await reader.readexactly(length))
            done += 1
    finally:
        writer.close()
    return done, received, time.perf_counter() - start


def _run_scenario(sink: SinkProcess, scenario: Scenario, duration: float) -> list[str]:
    split = urlsplit(sink.url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    sink.configure(**{"verify": "none", **scenario.sink_settings})
    request = _request(f"{host}:{port}", scenario.target, scenario.body)
    before = sink.stats()

    async def drive_all() -> list[tuple[int, int, float]]:
        return await asyncio.gather(*(_drive(host, port, request, duration) for _ in range(CONNECTIONS)))

    runs = asyncio.run(drive_all())
    after = sink.stats()
    requests = sum(r[0] for r in runs)
    elapsed = max(r[2] for r in runs)
    # verification is deferred until the counters are read: add what decoding cost at that read
    sink_cpu = after["cpu_s"] - before["cpu_s"] + after.get("verify_cpu_s", 0.0)
    records_per_request = scenario.records_per_request
    if not records_per_request:  # aggregated reads: how many user records one response carried
        served = sum(sh["served_user_records"] for s in after["streams"].values() for sh in s["shards"]) - sum(
            sh["served_user_records"] for s in before["streams"].values() for sh in s["shards"])
        records_per_request = served // max(1, requests)
    cpu_per_request = sink_cpu / max(1, requests)
    megabytes = (scenario.payload_bytes_per_request or sum(r[1] for r in runs) / max(1, requests)) * requests / 2**20
    return [
        scenario.name,
        f"{requests / elapsed:,.0f}",
        f"{records_per_request * requests / elapsed:,.0f}",
        f"{megabytes / elapsed:,.1f}",
        f"{sink_cpu / elapsed * 100:.0f}",
        f"{cpu_per_request * 1e3:.2f}",
        f"{records_per_request / cpu_per_request:,.0f}" if cpu_per_request else "-",
    ]


def run_selftest(quick: bool = False, report: Callable[[str], None] = print) -> int:
    duration = 1.0 if quick else 3.0
    prefill = [
        f"stream=read-plain,shards={PREFILL_SHARDS},records_per_shard=100000,record_size=100",
        f"stream=read-agg,shards={PREFILL_SHARDS},records_per_shard=1000000,record_size=100,aggregate=1",
    ]
    for spec in prefill:
        PrefillSpec.parse(spec)
    header = ["scenario", "requests/s", "records/s", "MiB/s", "sink CPU %", "sink ms/req", "ceiling records/s"]
    rows = [header]
    with SinkProcess(streams={"bench": 16}, prefill=prefill) as sink:
        for scenario in scenarios():
            rows.append(_run_scenario(sink, scenario, duration))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    report(f"sink self-test: {CONNECTIONS} keep-alive connections, {duration:.0f}s per scenario, "
           "records = user records (aggregates counted by their contents)")
    for number, row in enumerate(rows):
        report("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]))
        if number == 0:
            report("  ".join("-" * w for w in widths))
    report("ceiling = records per second of sink CPU, i.e. what the sink absorbs with one whole core")
    report(f"({machine_summary()})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink_selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (1 s per scenario instead of 3)")
    return run_selftest(quick=parser.parse_args(argv).quick)


if __name__ == "__main__":
    sys.exit(main())
