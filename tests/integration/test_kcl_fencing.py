"""Self-fencing: a worker cut off from DynamoDB stops dispatching before another worker can take its lease.

Worker X reaches DynamoDB through a fault proxy (``AWS_ENDPOINT_URL_DYNAMODB``, standard
configuration) while reading Kinesis directly; worker Y reaches both directly.  When the proxy
blackholes X's DynamoDB traffic, X can no longer renew but could go on reading and processing
records.  It must stop within the failover time of its last renewal, and Y — which takes the lease
only after seeing its counter still for the failover time — must start after X stopped.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    Producer,
    concurrent_processing,
    missing_records,
    order_violations,
    read_events,
    start_worker,
    write_properties,
)
from tests.support.faultproxy import FaultProxy
from tests.support.kinesis import create_stream
from tests.support.waiting import wait_for

FAILOVER = FAST_TIMINGS["failoverTimeMillis"] / 1000
PROCESSING_SLACK = 0.5
KEYS = [f"fence-{i:02d}" for i in range(40)]


def test_worker_that_cannot_renew_stops_before_its_lease_is_taken(
    tmp_path: Path, aws_clients: Callable[[str], Any], fault_proxy: FaultProxy,
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-fence-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 2)
    out = tmp_path / "events"
    properties = write_properties(tmp_path / "app.properties", initialPositionInStream="TRIM_HORIZON", **FAST_TIMINGS)
    # Produces until stopped (the bound only guards against a runaway test), so records keep flowing
    # through the takeover however long the loaded machine takes to get there.
    producer = Producer(kinesis, stream, KEYS, rounds=100_000, pause=0.05)
    workers = {}
    try:
        workers["X"] = start_worker(out, "X", "--stream", stream, "--application", stream, "--config",
                                    str(properties), env={"AWS_ENDPOINT_URL_DYNAMODB": fault_proxy.url})
        workers["Y"] = start_worker(out, "Y", "--stream", stream, "--application", stream, "--config",
                                    str(properties))
        producer.start()
        started = time.monotonic()

        def x_shard() -> str | None:
            """X's shard once X and Y hold one lease each (no handoff pending)."""
            try:
                items = dynamodb.scan(TableName=stream, ConsistentRead=True)["Items"]
            except dynamodb.exceptions.ResourceNotFoundException:
                return None
            owners = {item["leaseKey"]["S"]: item.get("leaseOwner", {}).get("S") for item in items
                      if "checkpointOwner" not in item}
            x_shards = [key for key, owner in owners.items() if owner == "X"]
            settled = len(owners) == 2 and sorted(owners.values(), key=str) == ["X", "Y"]
            return x_shards[0] if settled else None

        shard = wait_for(x_shard, 90, interval=0.3, message="X and Y holding one lease each")
        since = time.monotonic()
        wait_for(lambda: any(e["e"] == "rec" and e["w"] == "X" and e["s"] == shard and e["m"] > since
                             for e in read_events(out)), 60, interval=0.2, message="X processing its shard")
        cut = time.monotonic()
        fault_proxy.blackhole()
        taken = wait_for(lambda: [e for e in read_events(out) if e["e"] == "rec" and e["w"] == "Y"
                                  and e["s"] == shard and e["m"] > cut], 60, interval=0.3,
                         message="Y processing X's shard")
        assert not producer.done, "production ended before the takeover"
        fault_proxy.heal()
        producer.stop()
        wait_for(lambda: not missing_records(read_events(out), producer.produced), 120, interval=1.0,
                 message="every record delivered")

        events = read_events(out)
        x_records = [e["m"] for e in events if e["e"] == "rec" and e["w"] == "X" and e["s"] == shard
                     and since < e["m"] < taken[0]["m"]]
        last_x = max(x_records)
        first_y = taken[0]["m"]
        print(f"phases: settled {since - started:.1f}s, cut {cut - started:.1f}s, "
              f"end {time.monotonic() - started:.1f}s")
        print(f"X stopped {last_x - cut:.2f}s after the cut (fence <= {FAILOVER}s); "
              f"Y started {first_y - cut:.2f}s after it")
        # X's fence is its last renewal (sent before the cut) plus the failover time; the slack covers the
        # processor's own latency between dispatch and its log line on a loaded machine.
        assert last_x < cut + FAILOVER + PROCESSING_SLACK, "X went on dispatching past its fence"
        assert first_y > last_x
        assert any(e["e"] == "lost" and e["w"] == "X" and e["s"] == shard and cut < e["m"] for e in events)
        assert concurrent_processing(events) == []
        assert order_violations(events) == []
    finally:
        producer.stop()
        for worker in workers.values():
            if worker.alive:
                worker.kill()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=stream)
