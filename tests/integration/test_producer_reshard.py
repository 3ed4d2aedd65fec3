"""A shard split while producing: the stale shard map is caught by the wrong-shard check.

An aggregate predicted for the parent shard lands on whichever child owns its first record's hash
key; its other sub-records may belong to the other child.  A KCL consumer drops sub-records outside
its shard's range, so for them the write did not count: the producer must see this from the
response and send those records again, to the right child.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import kpl
from kpl.hashing import MAX_HASH_KEY
from tests.integration.test_producer_helpers import in_range, read_back, shard_ranges
from tests.support.kinesis import list_shards, wait_for_active
from tests.support.waiting import async_wait_for


async def test_split_while_producing_delivers_every_record_to_a_shard_that_owns_it(
    make_stream: Callable[..., str], kinesis: Any
) -> None:
    stream = make_stream(shards=1)
    parent = list_shards(kinesis, stream)[0]["ShardId"]
    config = kpl.ProducerConfig(record_max_buffered_time_ms=100, metrics_level="none")
    sent: list[tuple[str, bytes]] = []
    futures: list[asyncio.Future[kpl.RecordResult]] = []
    split_done = asyncio.Event()

    async def produce(producer: kpl.AsyncProducer) -> None:
        # Keep producing through the split, and for a while after it, so aggregates predicted
        # with the stale map (one shard for the whole key space) hit the children.
        i = 0
        stop_at: int | None = None
        while stop_at is None or i < stop_at:
            if stop_at is None and split_done.is_set():
                stop_at = i + 600
            key, data = f"user-{i}", f"event-{i}".encode()
            futures.append(await producer.put_record(stream, data, key))
            sent.append((key, data))
            i += 1
            if i % 50 == 0:
                await asyncio.sleep(0.02)  # pacing the workload, not synchronising

    async with kpl.AsyncProducer(config) as producer:
        warm_up = await (await producer.put_record(stream, b"warm-up", "w"))
        assert warm_up.shard_id == parent, "the producer's map holds the parent before the split"
        sent.append(("w", b"warm-up"))
        futures.append(asyncio.get_running_loop().create_future())
        futures[-1].set_result(warm_up)
        task = asyncio.create_task(produce(producer))
        await async_wait_for(lambda: len(sent) > 300, 60, message="records in flight before the split")
        await asyncio.to_thread(_split, kinesis, stream, parent)
        split_done.set()
        await asyncio.wait_for(task, timeout=120)
        await producer.flush_all()
    results = [f.result() for f in futures]
    assert all(r.success for r in results), [r for r in results if not r.success][:3]

    ranges = shard_ranges(kinesis, stream)
    assert len(ranges) == 3
    landed, _ = read_back(kinesis, stream)
    kept = in_range(landed, ranges)
    # What a consumer keeps has every record, and every result names a shard that owns its record.
    assert Counter((r.partition_key, r.data) for r in kept) >= Counter(sent)
    positions = {(r.shard_id, r.sequence_number, r.partition_key, r.data) for r in kept}
    for (key, data), result in zip(sent, results, strict=True):
        assert result.shard_id is not None
        assert kpl.hashing.partition_key_hash(key) in ranges[result.shard_id], (key, result)
        assert (result.shard_id, result.sequence_number, key, data) in positions
    retried = [r for r in results if any(a.error_code == "Wrong Shard" for a in r.attempts)]
    misplaced = len(landed) - len(kept)
    print(f"{len(sent)} records, {len(retried)} re-sent after landing on the wrong child, "
          f"{misplaced} out-of-range copies left for consumers to drop")
    assert retried, "records predicted with the stale map must have reached the other child"
    assert len(retried) == misplaced


def _split(kinesis: Any, stream: str, parent: str) -> None:
    wait_for_active(kinesis, stream)
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent, NewStartingHashKey=str((MAX_HASH_KEY + 1) // 2))
    wait_for_active(kinesis, stream)
