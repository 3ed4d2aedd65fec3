"""Clickstream page views into a Kinesis stream with the KPL-compatible producer (sync API).

    examples/with-localstack python -m examples.clickstream_producer --stream clickstream --create --count 1000

Each event is the page view of the classic boto3 example ({"timestamp", "user_id", "event":
"page_view", "page"} as JSON, partition key user_id), but instead of one PutRecord call per event
(and a sleep to stay under the shard's limit) the producer aggregates events per shard, batches them
into PutRecords, rate-limits per shard and retries, and reports a result for every event.

Against AWS, run it without ``examples/with-localstack``; nothing in here knows about LocalStack.
``examples/clickstream_producer_async.py`` is the same program on the asyncio producer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import kpl
from kpl.aws import sync_client
from kpl.logs import configure_logging


def page_view(index: int, users: int) -> tuple[str, bytes]:
    user_id = f"user_{index % users}"
    event = {
        "timestamp": datetime.now(UTC).isoformat(),
        "user_id": user_id,
        "event": "page_view",
        "page": f"/page_{index % 10}",
    }
    return user_id, json.dumps(event).encode()


def create_stream(name: str, shards: int) -> None:
    kinesis = sync_client("kinesis")
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):  # it exists already
        kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def parse_arguments(description: str, argv: list[str] | None, *, properties: bool) -> argparse.Namespace:
    """The options both clickstream examples take; creates the stream when asked to."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--stream", required=True, help="the Kinesis stream to write to")
    parser.add_argument("--count", type=int, default=1000, help="page views to send")
    parser.add_argument("--users", type=int, default=100, help="distinct users (partition keys)")
    parser.add_argument("--create", action="store_true", help="create the stream if it does not exist")
    parser.add_argument("--shards", type=int, default=2, help="shards of a stream created with --create")
    if properties:
        parser.add_argument("--properties", help="a Java KPL .properties file to configure the producer")
    args = parser.parse_args(argv)
    configure_logging("warning")
    if args.create:
        create_stream(args.stream, args.shards)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(__doc__.splitlines()[0], argv, properties=True)
    config = (kpl.ProducerConfig.from_properties(args.properties) if args.properties
              else kpl.ProducerConfig(metrics_level=kpl.MetricsLevel.NONE))

    started = time.monotonic()
    with kpl.Producer(config) as producer:
        futures = [producer.put_record(args.stream, data, user_id)
                   for user_id, data in (page_view(i, args.users) for i in range(args.count))]
        producer.flush_all()
        results = [future.result() for future in futures]
    elapsed = time.monotonic() - started

    succeeded = [r for r in results if r.success]
    failures = Counter(r.error.code for r in results if r.error is not None)
    shards = Counter(r.shard_id for r in succeeded)
    retried = sum(1 for r in results if len(r.attempts) > 1)
    print(f"stream {args.stream}: {len(succeeded)} of {len(results)} page views delivered in {elapsed:.1f} s "
          f"({len(results) / elapsed:,.0f}/s), {retried} needed more than one attempt")
    for shard_id, count in sorted(shards.items()):
        print(f"  {shard_id}: {count} page views")
    for code, count in failures.most_common():
        print(f"  failed with {code}: {count}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
