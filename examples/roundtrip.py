"""Round-trip demo: create a stream, put records, read them back, all through LocalStack.

    make demo

Endpoints and credentials come from standard AWS configuration (the Makefile exports
AWS_ENDPOINT_URL and test credentials for LocalStack); nothing here knows about LocalStack.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from kpl.aws import async_client

PAGES = ["/home", "/products", "/cart", "/checkout", "/about"]


async def wait_active(client: Any, stream: str) -> None:
    for _ in range(600):
        summary = (await client.describe_stream_summary(StreamName=stream))["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"stream {stream} did not become ACTIVE")


async def read_everything(client: Any, stream: str, expected: int) -> list[dict[str, Any]]:
    shards = (await client.list_shards(StreamName=stream))["Shards"]
    records: list[dict[str, Any]] = []
    for shard in shards:
        iterator = (await client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ))["ShardIterator"]
        while iterator:
            page = await client.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(page["Records"])
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    if len(records) < expected:
        raise RuntimeError(f"read back {len(records)} records, expected {expected}")
    return records


async def main() -> int:
    stream = f"demo-roundtrip-{uuid.uuid4().hex[:8]}"
    async with async_client("kinesis") as client:
        await client.create_stream(StreamName=stream, ShardCount=2)
        await wait_active(client, stream)
        print(f"created stream {stream} with 2 shards")
        events = [
            {"user_id": f"user_{i % 7}", "event": "page_view", "page": PAGES[i % len(PAGES)],
             "timestamp": datetime.now(UTC).isoformat()}
            for i in range(10)
        ]
        result = await client.put_records(
            StreamName=stream,
            Records=[{"Data": json.dumps(e).encode(), "PartitionKey": e["user_id"]} for e in events],
        )
        if result["FailedRecordCount"]:
            print(f"{result['FailedRecordCount']} records failed", file=sys.stderr)
            return 1
        print(f"put {len(events)} records")
        records = await read_everything(client, stream, len(events))
        for record in sorted(records, key=lambda r: r["SequenceNumber"]):
            print(f"  read {record['PartitionKey']:<7} seq={record['SequenceNumber'][-8:]} {record['Data'].decode()}")
        await client.delete_stream(StreamName=stream)
    ok = sorted(r["Data"] for r in records) == sorted(json.dumps(e).encode() for e in events)
    print("round trip OK: every record read back" if ok else "round trip FAILED: records differ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
