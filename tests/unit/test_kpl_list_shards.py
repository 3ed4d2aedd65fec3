"""One ListShards pagination for the producer, the worker and the tests (kpl.aws): a page after the first
carries only NextToken and MaxResults, and a stream ARN is named as StreamARN."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kpl.aws import list_shards, list_shards_blocking

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"


class ScriptedKinesis:
    """Answers ListShards from a script of pages and keeps each request (no I/O: the paging rule only)."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = list(pages)
        self.requests: list[dict[str, Any]] = []

    def list_shards(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return self.pages.pop(0)


class AsyncScriptedKinesis(ScriptedKinesis):
    async def list_shards(self, **request: Any) -> dict[str, Any]:  # type: ignore[override]
        return ScriptedKinesis.list_shards(self, **request)


PAGES = [
    {"Shards": [{"ShardId": "shardId-0"}], "NextToken": "t1"},
    {"Shards": [{"ShardId": "shardId-1"}, {"ShardId": "shardId-2"}], "NextToken": "t2"},
    {"Shards": [{"ShardId": "shardId-3"}]},
]


@pytest.mark.parametrize("face", ["async", "blocking"])
@pytest.mark.parametrize(("stream", "named"), [("orders", {"StreamName": "orders"}), (ARN, {"StreamARN": ARN})])
def test_every_page_is_read_and_later_pages_name_only_the_token(face: str, stream: str, named: dict[str, str]) -> None:
    if face == "async":
        client: ScriptedKinesis = AsyncScriptedKinesis(PAGES)
        shards = asyncio.run(list_shards(client, stream, shard_filter="AT_LATEST"))
    else:
        client = ScriptedKinesis(PAGES)
        shards = list_shards_blocking(client, stream, shard_filter="AT_LATEST")
    assert [shard["ShardId"] for shard in shards] == ["shardId-0", "shardId-1", "shardId-2", "shardId-3"]
    assert client.requests == [
        {**named, "MaxResults": 1000, "ShardFilter": {"Type": "AT_LATEST"}},
        {"NextToken": "t1", "MaxResults": 1000},
        {"NextToken": "t2", "MaxResults": 1000},
    ]


def test_without_a_filter_closed_shards_are_listed_too() -> None:
    client = ScriptedKinesis([{"Shards": []}])
    assert list_shards_blocking(client, "orders", page_size=50) == []
    assert client.requests == [{"StreamName": "orders", "MaxResults": 50}]
