"""Clickstream page views into a Kinesis stream with the KPL-compatible producer (asyncio API).

    examples/with-localstack python -m examples.clickstream_producer_async --stream clickstream --create --count 1000

The asyncio twin of ``clickstream_producer.py``: ``await producer.put_record(...)`` returns a future per
event without waiting for the send; it only waits when the producer's outstanding-records bound is
reached (backpressure), so memory stays bounded however fast events arrive.  Results are consumed as
they complete, while later events are still being put.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import kpl
from examples.clickstream_producer import page_view, parse_arguments


async def produce(stream: str, count: int, users: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()

    def tally(future: asyncio.Future[kpl.RecordResult]) -> None:
        result = future.result()  # a RecordResult: delivery failures are results, not exceptions
        outcomes["delivered" if result.success else f"failed with {result.error.code if result.error else '?'}"] += 1
        if len(result.attempts) > 1:
            outcomes["retried"] += 1

    async with kpl.AsyncProducer(metrics_level=kpl.MetricsLevel.NONE) as producer:
        for index in range(count):
            user_id, data = page_view(index, users)
            future = await producer.put_record(stream, data, partition_key=user_id)
            future.add_done_callback(tally)
        await producer.flush_all()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(__doc__.splitlines()[0], argv, properties=False)
    started = time.monotonic()
    outcomes = asyncio.run(produce(args.stream, args.count, args.users))
    elapsed = time.monotonic() - started
    print(f"stream {args.stream}: {outcomes['delivered']} of {args.count} page views delivered in {elapsed:.1f} s, "
          f"{outcomes['retried']} needed more than one attempt")
    for outcome, count in sorted(outcomes.items()):
        if outcome.startswith("failed"):
            print(f"  {outcome}: {count}")
    return 0 if outcomes["delivered"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
