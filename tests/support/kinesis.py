"""Kinesis helpers for tests: streams that are ACTIVE when returned, and reading everything back."""

from __future__ import annotations

from typing import Any

from kpl.aws import list_shards_blocking
from tests.support.waiting import wait_for


def create_stream(client: Any, name: str, shards: int = 1, timeout: float = 60.0) -> dict[str, Any]:
    client.create_stream(StreamName=name, ShardCount=shards)
    return wait_for_active(client, name, timeout)


def wait_for_active(client: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    def active() -> dict[str, Any] | None:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return summary if summary["StreamStatus"] == "ACTIVE" else None

    return wait_for(active, timeout, interval=0.1, message=f"stream {name} ACTIVE")


def list_shards(client: Any, name: str) -> list[dict[str, Any]]:
    return list_shards_blocking(client, name)


def read_shard(client: Any, name: str, shard_id: str, idle_reads: int = 2) -> list[dict[str, Any]]:
    """All records of one shard from TRIM_HORIZON until it is drained (or closed and finished)."""
    iterator = client.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    empty = 0
    while iterator:
        page = client.get_records(ShardIterator=iterator, Limit=10000)
        records.extend(page["Records"])
        iterator = page.get("NextShardIterator")
        if page["Records"]:
            empty = 0
        elif page.get("MillisBehindLatest", 0) == 0:
            empty += 1
            if empty >= idle_reads:
                break
    return records


def read_all(client: Any, name: str) -> dict[str, list[dict[str, Any]]]:
    """Records of every shard (open and closed), keyed by shard id."""
    return {shard["ShardId"]: read_shard(client, name, shard["ShardId"]) for shard in list_shards(client, name)}


def wait_for_records(client: Any, name: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Read the whole stream until at least ``count`` records are there."""
    def enough() -> list[dict[str, Any]] | None:
        records = [r for shard in read_all(client, name).values() for r in shard]
        return records if len(records) >= count else None

    return wait_for(enough, timeout, interval=0.2, message=f"{count} records in {name}")
