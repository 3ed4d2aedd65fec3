"""The Kinesis operations the sink serves, JSON body in, JSON result out, as the service answers them.

Writes route every entry by its hash key (the explicit one, else MD5 of the partition key, with
:mod:`kpl.hashing`) to the shard whose range holds it, and answer per entry with that shard's id and
a fresh sequence number, or with the injected failure.  Validation follows the service: a bad entry
(missing partition key, oversized record, bad explicit hash key) fails the whole request with the
service's error code, and the request limits (500 entries, 10 MiB) are enforced.

PutRecords and GetRecords render their JSON by hand: they are the hot paths, and building dicts for
``json.dumps`` costs more than the routing itself.

Verification (``verify=count`` or ``route``) is deferred: PutRecords answers at once and queues each
aggregate it took; :meth:`KinesisService.verify_pending` decodes them when the counters are read
(the harness reads them after a run) or when the queue holds more than ``VERIFY_BACKLOG_BYTES``.
Decoding in the request path made a client that waits for its answer (boto3's ``put_records``,
async-kinesis) wait for the sink's decoding too, which cut its records/s by up to half; decoding
between requests still delayed the next request by one aggregate's decoding (docs/bench.md, "Why the
peers ran slower against the sink").
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections import deque
from typing import Any

from kpl import aggregation
from kpl.hashing import effective_hash_key, parse_explicit_hash_key
from tests.support.sink.model import (
    ACCOUNT_ID,
    DEFAULT_MAX_RECORD_SIZE_KIB,
    PrefillSpec,
    Shard,
    SinkError,
    SinkSettings,
    StoredRecord,
    Stream,
    decode_iterator,
    encode_iterator,
    render_tail,
)

MAX_PUT_RECORDS_ENTRIES = 500
MAX_PUT_RECORDS_REQUEST_BYTES = 10 * 1024 * 1024
MAX_GET_RECORDS_LIMIT = 10_000
MAX_GET_RECORDS_BYTES = 10 * 1024 * 1024
MAX_LIST_SHARDS_PAGE = 1000
#: Base64 text of aggregates awaiting verification beyond which PutRecords verifies the oldest at once.
VERIFY_BACKLOG_BYTES = 512 * 1024 * 1024
#: Base64 of the aggregation magic's first three bytes: how an aggregate is spotted without decoding it.
AGGREGATE_PREFIX_B64 = base64.b64encode(aggregation.MAGIC[:3]).decode()

#: (shard, data as base64 text (JSON) or bytes (CBOR), partition key, size)
Routed = tuple[Shard, str | bytes, str, int]


def _base64_text(data: str | bytes) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode()


class KinesisService:
    def __init__(self, settings: SinkSettings, region: str = "us-east-1", seed: int = 7) -> None:
        self.settings = settings
        self.region = region
        self.streams: dict[str, Stream] = {}
        self._random = random.Random(seed)
        #: aggregates put but not yet verified: (stream, shard, base64 data, the retained copy if any)
        self._unverified: deque[tuple[Stream, Shard, str | bytes, StoredRecord | None]] = deque()
        self._unverified_bytes = 0

    # --- set-up and counters -------------------------------------------------------------------------

    def create_stream(self, name: str, shards: int, max_record_size_kib: int = DEFAULT_MAX_RECORD_SIZE_KIB) -> Stream:
        if name in self.streams:
            raise SinkError("ResourceInUseException", f"Stream {name} under account {ACCOUNT_ID} already exists.")
        if not 1024 <= max_record_size_kib <= 10240:
            raise SinkError("ValidationException",
                            f"MaxRecordSizeInKiB must be within [1024, 10240], got {max_record_size_kib}")
        stream = self.streams[name] = Stream(name, shards, self.region, max_record_size_kib)
        return stream

    def prefill(self, spec: PrefillSpec) -> Stream:
        stream = self.streams.get(spec.stream) or self.create_stream(spec.stream, spec.shards)
        stream.prefill(spec)
        return stream

    def reset_counters(self) -> None:
        self.verify_pending()
        for stream in self.streams.values():
            stream.reset_counters()

    def stats(self) -> dict[str, Any]:
        self.verify_pending()
        return {name: stream.stats() for name, stream in self.streams.items()}

    def verify_pending(self, keep_bytes: int = 0) -> None:
        """Verify queued aggregates, oldest first, until at most ``keep_bytes`` of them remain."""
        queue = self._unverified
        while queue and self._unverified_bytes > keep_bytes:
            stream, shard, data, stored = queue.popleft()
            self._unverified_bytes -= len(data)
            users = self._verify_aggregate(stream, shard, data)
            stream.counters.user_records += users
            if stored is not None:
                stored.user_records = users

    def _stream(self, body: dict[str, Any]) -> Stream:
        name = body.get("StreamName")
        if not name:
            arn = body.get("StreamARN")
            if not arn:
                raise SinkError("ValidationException", "either StreamName or StreamARN is required")
            name = str(arn).rpartition("/")[2]
        stream = self.streams.get(name)
        if stream is None:
            if not self.settings.auto_create:
                raise SinkError("ResourceNotFoundException", f"Stream {name} under account {ACCOUNT_ID} not found.")
            stream = self.create_stream(name, self.settings.default_shards)
        return stream

    # --- control plane -------------------------------------------------------------------------------

    def create_stream_operation(self, body: dict[str, Any]) -> dict[str, Any]:
        count = body.get("ShardCount")
        if count is None:
            if (body.get("StreamModeDetails") or {}).get("StreamMode") != "ON_DEMAND":
                raise SinkError("ValidationException", "ShardCount is required for a PROVISIONED stream")
            count = 4
        if not body.get("StreamName"):
            raise SinkError("ValidationException", "StreamName is required")
        self.create_stream(body["StreamName"], int(count),
                           int(body.get("MaxRecordSizeInKiB", DEFAULT_MAX_RECORD_SIZE_KIB)))
        return {}

    def delete_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        del self.streams[self._stream(body).name]
        return {}

    def describe_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        limit = min(int(body.get("Limit", 100)), 100)
        start = stream.shard(body["ExclusiveStartShardId"]).index + 1 if body.get("ExclusiveStartShardId") else 0
        return {"StreamDescription": {
            **self._header(stream),
            "Shards": [shard.describe() for shard in stream.shards[start:start + limit]],
            "HasMoreShards": start + limit < len(stream.shards),
        }}

    def describe_stream_summary(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        return {"StreamDescriptionSummary": {
            **self._header(stream),
            "OpenShardCount": len(stream.shards),
            "ConsumerCount": 0,
            "MaxRecordSizeInKiB": stream.max_record_size_kib,
        }}

    @staticmethod
    def _header(stream: Stream) -> dict[str, Any]:
        return {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": stream.created,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
        }

    def list_shards(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pages of at most 1000 shards; a NextToken page must not name the stream again (as in the service)."""
        token = body.get("NextToken")
        if token:
            if body.get("StreamName") or body.get("StreamARN"):
                raise SinkError("InvalidArgumentException", "NextToken and StreamName cannot be provided together.")
            try:
                name, start_text = base64.urlsafe_b64decode(token.encode()).decode().split("|")
                start = int(start_text)
            except (ValueError, binascii.Error) as error:
                raise SinkError("InvalidArgumentException", f"invalid NextToken {token!r}") from error
            stream = self._stream({"StreamName": name})
        else:
            stream = self._stream(body)
            after = body.get("ExclusiveStartShardId")
            shard_filter = body.get("ShardFilter") or {}
            if shard_filter.get("Type") == "AFTER_SHARD_ID":
                after = shard_filter.get("ShardId")
            # Shard ids are zero-padded, so their string order is their index order.  Every shard is
            # open, so the other filter types (AT_LATEST, AT_TRIM_HORIZON, ...) select them all.
            start = sum(1 for shard in stream.shards if shard.shard_id <= after) if after else 0
        limit = int(body.get("MaxResults", MAX_LIST_SHARDS_PAGE))
        if not 1 <= limit <= 10000:
            raise SinkError("InvalidArgumentException", f"MaxResults must be within [1, 10000], got {limit}")
        limit = min(limit, MAX_LIST_SHARDS_PAGE)
        result: dict[str, Any] = {"Shards": [shard.describe() for shard in stream.shards[start:start + limit]]}
        if start + limit < len(stream.shards):
            result["NextToken"] = base64.urlsafe_b64encode(f"{stream.name}|{start + limit}".encode()).decode()
        return result

    def list_streams(self, body: dict[str, Any]) -> dict[str, Any]:
        streams = [self.streams[name] for name in sorted(self.streams)]
        return {
            "StreamNames": [stream.name for stream in streams],
            "HasMoreStreams": False,
            "StreamSummaries": [
                {"StreamName": s.name, "StreamARN": s.arn, "StreamStatus": "ACTIVE",
                 "StreamModeDetails": {"StreamMode": "PROVISIONED"}, "StreamCreationTimestamp": s.created}
                for s in streams
            ],
        }

    # --- writes --------------------------------------------------------------------------------------

    def put_records(self, body: dict[str, Any]) -> str:
        stream = self._stream(body)
        entries = body.get("Records")
        if not isinstance(entries, list) or not entries:
            raise SinkError("ValidationException", "Records must be a non-empty list")
        if len(entries) > MAX_PUT_RECORDS_ENTRIES:
            raise SinkError(
                "ValidationException",
                "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have "
                f"length less than or equal to {MAX_PUT_RECORDS_ENTRIES}",
            )
        settings = self.settings
        fail_rate = settings.fail_rate
        rand = self._random.random
        verify = settings.verify != "none"
        retain = settings.retain
        now = time.time()
        counters = stream.counters
        parts: list[str] = []
        failed = 0
        accepted_bytes = 0
        for shard, data, partition_key, size in self._route(stream, entries):
            if fail_rate and rand() < fail_rate:
                failed += 1
                shard.counters.failed += 1
                parts.append(self._failed_entry(stream, shard))
                continue
            position = shard.next_position
            shard.next_position = position + 1
            shard.counters.records += 1
            shard.counters.bytes += size
            accepted_bytes += size
            stored = StoredRecord(render_tail(_base64_text(data), partition_key), size, 1, now) if retain else None
            if stored is not None:
                shard.appended.append(stored)
            if (data.startswith(AGGREGATE_PREFIX_B64) if isinstance(data, str) else data.startswith(aggregation.MAGIC)):
                counters.aggregated_records += 1
                if verify:
                    self._unverified.append((stream, shard, data, stored))
                    self._unverified_bytes += len(data)
            elif verify:
                counters.user_records += 1
            parts.append(f'{{"SequenceNumber":"{shard.sequence_prefix}{position:030d}","ShardId":"{shard.shard_id}"}}')
        if settings.verify_inline:
            self.verify_pending()
        elif self._unverified_bytes > VERIFY_BACKLOG_BYTES:
            self.verify_pending(VERIFY_BACKLOG_BYTES)
        counters.records += len(entries) - failed
        counters.failed += failed
        counters.bytes += accepted_bytes
        return f'{{"FailedRecordCount":{failed},"Records":[{",".join(parts)}],"EncryptionType":"NONE"}}'

    def put_record(self, body: dict[str, Any]) -> dict[str, Any]:
        entry = {key: body[key] for key in ("Data", "PartitionKey", "ExplicitHashKey") if key in body}
        stream = self._stream(body)
        result = json.loads(self.put_records({"StreamName": stream.name, "Records": [entry]}))["Records"][0]
        if "ErrorCode" in result:
            raise SinkError(result["ErrorCode"], result["ErrorMessage"])
        return {**result, "EncryptionType": "NONE"}

    def _failed_entry(self, stream: Stream, shard: Shard) -> str:
        code = self.settings.fail_code
        if code == "ProvisionedThroughputExceededException":
            message = f"Rate exceeded for shard {shard.shard_id} in stream {stream.name} under account {ACCOUNT_ID}."
        else:
            message = "Internal service failure."
        return f'{{"ErrorCode":"{code}","ErrorMessage":"{message}"}}'

    @staticmethod
    def _route(stream: Stream, entries: list[Any]) -> list[Routed]:
        """Every entry validated (one bad entry fails the request) and paired with its shard and size."""
        limit = stream.max_record_size_kib * 1024
        cached_shard = stream.shard_of_key.get
        total = 0
        routed: list[Routed] = []
        for number, entry in enumerate(entries, 1):
            try:
                data = entry["Data"]
                partition_key = entry["PartitionKey"]
            except (KeyError, TypeError) as error:
                message = f"record {number}: Data and PartitionKey are required"
                raise SinkError("ValidationException", message) from error
            key_length = len(partition_key) if isinstance(partition_key, str) else 0
            if not 1 <= key_length <= 256:
                raise SinkError("ValidationException", f"record {number}: PartitionKey must be 1 to 256 characters")
            if type(data) is bytes:  # CBOR: the data itself
                size = len(data)
            elif type(data) is str:  # JSON: the size of the decoded data without decoding it
                size = len(data) * 3 // 4 - (2 if data.endswith("==") else 1 if data.endswith("=") else 0)
            else:
                raise SinkError("SerializationException", f"record {number}: Data must be a blob")
            size += key_length if partition_key.isascii() else len(partition_key.encode())
            if size > limit:
                raise SinkError("ValidationException",
                                f"record {number}: partition key plus data is {size} bytes, over the stream's "
                                f"maximum record size of {limit} bytes")
            total += size
            explicit = entry.get("ExplicitHashKey")
            if explicit:
                try:
                    shard = stream.shard_for_key(parse_explicit_hash_key(explicit))
                except (ValueError, TypeError) as error:
                    raise SinkError("InvalidArgumentException",
                                    f"record {number}: invalid ExplicitHashKey {explicit!r}: must be a decimal "
                                    "integer within [0, 2^128-1]") from error
            else:
                shard = cached_shard(partition_key) or stream.shard_for_partition_key(partition_key)
            routed.append((shard, data, partition_key, size))
        if total > MAX_PUT_RECORDS_REQUEST_BYTES:
            raise SinkError("InvalidArgumentException",
                            f"PutRecords request of {total} bytes exceeds {MAX_PUT_RECORDS_REQUEST_BYTES} bytes")
        return routed

    def _verify_aggregate(self, stream: Stream, shard: Shard, data: str | bytes) -> int:
        """User records in an aggregate (1 if it is not a valid one); with verify=route, counts misrouted ones."""
        try:
            records = aggregation.decode(data if isinstance(data, bytes) else base64.b64decode(data))
        except (aggregation.AggregationFormatError, binascii.Error):
            stream.counters.invalid_aggregates += 1
            return 1
        if self.settings.verify == "route":
            in_range = shard.hash_range.__contains__
            shard_of = stream.shard_of_key.get
            misrouted = 0
            for record in records:
                if record.explicit_hash_key is not None:
                    misrouted += not in_range(effective_hash_key(record.partition_key, record.explicit_hash_key))
                else:
                    owner = shard_of(record.partition_key) or stream.shard_for_partition_key(record.partition_key)
                    misrouted += owner is not shard
            stream.counters.misrouted_user_records += misrouted
        return len(records)

    # --- reads ---------------------------------------------------------------------------------------

    def get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(body)
        shard = stream.shard(body.get("ShardId", ""))
        kind = body.get("ShardIteratorType")
        if kind == "TRIM_HORIZON":
            position = 0
        elif kind == "LATEST":
            position = shard.next_position
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if "StartingSequenceNumber" not in body:
                raise SinkError("InvalidArgumentException", f"{kind} needs a StartingSequenceNumber")
            position = shard.position_of(body["StartingSequenceNumber"]) + (kind == "AFTER_SEQUENCE_NUMBER")
        elif kind == "AT_TIMESTAMP":
            if "Timestamp" not in body:
                raise SinkError("InvalidArgumentException", "AT_TIMESTAMP needs a Timestamp")
            position = shard.first_position_at_or_after(float(body["Timestamp"]))
        else:
            raise SinkError("ValidationException", f"unknown ShardIteratorType {kind!r}")
        return {"ShardIterator": encode_iterator(stream.name, shard.index, position)}

    def get_records(self, body: dict[str, Any]) -> str:
        """Up to ``Limit`` records and 10 MiB from the iterator's position; MillisBehindLatest from arrivals."""
        self.verify_pending()  # user-record counts of retained aggregates
        name, shard_index, position = decode_iterator(body.get("ShardIterator", ""))
        stream = self._stream({"StreamName": name})
        if shard_index >= len(stream.shards):
            raise SinkError("ResourceNotFoundException", f"shard {shard_index} of stream {name} does not exist")
        shard = stream.shards[shard_index]
        limit = int(body.get("Limit", MAX_GET_RECORDS_LIMIT))
        if not 1 <= limit <= MAX_GET_RECORDS_LIMIT:
            raise SinkError("InvalidArgumentException", f"Limit must be within [1, {MAX_GET_RECORDS_LIMIT}]")
        end = shard.readable_end
        parts, _size, users = shard.render(position, min(end, position + limit), MAX_GET_RECORDS_BYTES)
        next_position = position + len(parts)
        shard.counters.served_records += len(parts)
        shard.counters.served_user_records += users
        behind = 0
        if next_position < end:
            behind = max(1, int((shard.arrival(end - 1) - shard.arrival(next_position)) * 1000))
        iterator = encode_iterator(stream.name, shard.index, next_position)
        return f'{{"Records":[{",".join(parts)}],"NextShardIterator":"{iterator}","MillisBehindLatest":{behind}}}'
