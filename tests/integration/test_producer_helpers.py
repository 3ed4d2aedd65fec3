"""Reading back what the producer wrote, shared by the producer's integration tests (no tests here)."""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kpl import RecordResult
from kpl.aggregation import decode, is_aggregated
from kpl.hashing import HashRange, effective_hash_key
from tests.support.kinesis import list_shards, read_shard


@dataclass(frozen=True)
class Landed:
    """One user record as a consumer finds it in the stream."""

    shard_id: str
    sequence_number: str
    partition_key: str
    explicit_hash_key: str | None
    data: bytes

    @property
    def hash_key(self) -> int:
        return effective_hash_key(self.partition_key, self.explicit_hash_key)


def shard_ranges(kinesis: Any, stream: str) -> dict[str, HashRange]:
    """Every shard of the stream, open and closed."""
    return {shard["ShardId"]: HashRange.from_shard(shard) for shard in list_shards(kinesis, stream)}


def read_back(kinesis: Any, stream: str) -> tuple[list[Landed], list[dict[str, Any]]]:
    """(user records deaggregated with kpl.aggregation, the raw Kinesis records) of every shard."""
    landed: list[Landed] = []
    raw: list[dict[str, Any]] = []
    for shard_id in shard_ranges(kinesis, stream):
        for record in read_shard(kinesis, stream, shard_id):
            raw.append({**record, "ShardId": shard_id})
            data = record["Data"]
            if is_aggregated(data):
                landed.extend(Landed(shard_id, record["SequenceNumber"], sub.partition_key, sub.explicit_hash_key,
                                     sub.data) for sub in decode(data))
            else:
                landed.append(Landed(shard_id, record["SequenceNumber"], record["PartitionKey"], None, data))
    return landed, raw


def deaggregate_with_aws_kinesis_agg(raw: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """(partition key, data) of every user record, as aws-kinesis-agg's deaggregator sees them."""
    import aws_kinesis_agg.aggregator  # noqa: F401  (its messages_pb2 needs this imported first)
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    envelopes = [{"Data": r["Data"], "PartitionKey": r["PartitionKey"], "SequenceNumber": r["SequenceNumber"],
                  "ApproximateArrivalTimestamp": 0} for r in raw]
    return [(sub["kinesis"]["partitionKey"], base64.b64decode(sub["kinesis"]["data"]))
            for sub in iter_deaggregate_records(envelopes, data_format="Boto3")]


def in_range(landed: list[Landed], ranges: dict[str, HashRange]) -> list[Landed]:
    """What a KCL consumer keeps: sub-records inside the hash range of the shard they are in."""
    return [record for record in landed if record.hash_key in ranges[record.shard_id]]


def assert_results_match_stream(sent: list[tuple[str, bytes]], results: list[RecordResult],
                                landed: list[Landed]) -> None:
    """Every success names a shard and sequence number where that very record is found."""
    by_position = Counter((r.shard_id, r.sequence_number, r.partition_key, r.data) for r in landed)
    for (key, data), result in zip(sent, results, strict=True):
        assert result.success, result
        assert by_position[(result.shard_id, result.sequence_number, key, data)] >= 1, (key, result)
