"""What the lease table costs in the steady state: one read of the table per worker per taker interval
(the Java KCL 2.x taker's cadence), renewals that only write, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import kcl
from tests.support.kinesis import create_stream
from tests.support.waiting import async_wait_for

CONFIG = kcl.WorkerConfig(failover_time_ms=3000, metrics_level=kcl.MetricsLevel.NONE,
                          idle_time_between_reads_ms=1000, shard_sync_interval_ms=60_000)


class Idle(kcl.RecordProcessor):
    def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                        millis_behind_latest: int) -> None: ...


async def test_steady_state_reads_one_table_scan_per_worker_per_taker_interval(
    aws_clients: Callable[[str], Any],
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-costs-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 4)
    workers = [kcl.Worker(stream, stream, Idle, CONFIG.with_(worker_id=name)) for name in ("A", "B")]
    taker, renewal = CONFIG.scan_interval, CONFIG.renewal_interval  # 6.05 s and 0.975 s
    try:
        for worker in workers:
            await worker.start()
        await async_wait_for(lambda: [len(w.held_shards) for w in workers] == [2, 2], 60, interval=0.1,
                             message="2 + 2 leases")
        # Counting requests over a stretch of time is a measurement, not synchronisation: there is no
        # condition to wait for, only time passing.  The steady state is taken to start one taker interval
        # after the balance (the balancing's follow-up reads end within about a renewal interval), and the
        # window is two taker intervals long; its real length is measured, since a loaded machine
        # oversleeps, and the bounds below hold for any length.
        await asyncio.sleep(taker)
        before = [worker.lease_table_requests for worker in workers]
        started = time.monotonic()
        await asyncio.sleep(2 * taker)
        after = [worker.lease_table_requests for worker in workers]
        window = time.monotonic() - started
        for first, second in zip(before, after, strict=True):
            spent = {op: n - first.get(op, 0) for op, n in second.items() if n != first.get(op, 0)}
            # Renewals are conditional UpdateItems; nothing else is sent while nothing moves.
            assert set(spent) <= {"Scan", "UpdateItem:renew"}, spent
            # Reads start at least a taker interval apart (fixed delay), so a window of W seconds holds at
            # most floor(W / T) + 1 of them; one more is allowed for an early expiry check that a renewal
            # delayed by the machine's load may cause.  The design before this one read about every half
            # renewal interval: some 25 reads per worker here.
            assert 1 <= spent.get("Scan", 0) <= math.floor(window / taker) + 2, (spent, window)
            # Renewals run at a fixed rate: at most floor(W / R) + 1 per lease (a late round is not made up twice).
            assert 2 <= spent.get("UpdateItem:renew", 0) <= 2 * (math.floor(window / renewal) + 1), (spent, window)
    finally:
        for worker in workers:
            await worker.stop()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=stream)


async def test_a_worker_on_a_new_table_takes_the_leases_it_created_at_once(
    aws_clients: Callable[[str], Any],
) -> None:
    """The start-up shard sync reads the table, then creates the leases: that read no longer describes the
    table, so the taker's first run reads again instead of finding nothing to take and waiting a whole taker
    interval (20 s with the default failover time; the README's first worker took nothing for that long)."""
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = f"kt-kcl-first-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 2)
    config = kcl.WorkerConfig(metrics_level=kcl.MetricsLevel.NONE, worker_id="first")
    worker = kcl.Worker(stream, stream, Idle, config)
    try:
        await worker.start()
        await async_wait_for(lambda: len(worker.held_shards) == 2, config.scan_interval / 2, interval=0.1,
                             message="both new leases taken well within one taker interval")
    finally:
        await worker.stop()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=stream)
