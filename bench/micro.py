"""Micro-measurements behind the producer's design choices (issue 13's levers), in this process.

    .venv/bin/python -m bench.micro encode      # kpl's aggregate encoder vs the protobuf runtime
    .venv/bin/python -m bench.micro awaitable   # what put_record's ready path may return
    .venv/bin/python -m bench.micro request     # the CPU of one PutRecords call, as the producer makes it

``encode``: the same user records (the producer benchmark's workload, 100-byte and 1 KiB) into one
aggregate, by :class:`kpl.aggregation.AggregateBuilder` (hand-written protobuf, cached headers) and by
message objects of the upb protobuf runtime (``AggregatedRecord`` with ``records.add()``, then
``SerializeToString``), each with the magic and the MD5 trailer; both results decode to the same
records.  ``awaitable``: the CPU per ``await`` of the cheapest objects that hand a value back without
suspending: a coroutine (what ``AsyncProducer.put_record`` returns), a resolved ``asyncio.Future``,
and an object whose ``__await__`` is a generator.  ``request``: PutRecords calls through the producer's
own data client (aiobotocore, kpl's body writer, CBOR) against ``bench.minisink``, with one entry and with
100 entries of 100 bytes: the fixed cost of a request (botocore, signing, aiohttp), which a producer
bounded by RecordMaxBufferedTime pays more often than one that sends only full batches.  Thread CPU
time, best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable, Coroutine, Generator
from hashlib import md5
from typing import Any

from bench.workload import Workload
from kpl.aggregation import MAGIC, AggregateBuilder, aggregated_record_message, decode


def _best(run: Callable[[], object], repeat: int, rounds: int) -> float:
    """Seconds per call of ``run``: the best of ``rounds`` rounds of ``repeat`` calls."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(repeat):
            run()
        best = min(best, (time.thread_time() - started) / repeat)
    return best


def encode(rounds: int) -> None:
    message = aggregated_record_message()
    for size, count in ((100, 445), (1024, 49)):  # about one 51,200-byte aggregate of each
        records = [(key, None, data) for key, data in Workload(records=count, record_size=size).items()]

        def hand(records: list[tuple[str, None, bytes]] = records) -> bytes:
            builder = AggregateBuilder(max_size=1 << 30)
            builder.extend(records)
            return builder.build()

        def runtime(records: list[tuple[str, None, bytes]] = records) -> bytes:
            aggregate = message()
            index: dict[str, int] = {}
            for key, _, data in records:
                position = index.get(key)
                if position is None:
                    position = index[key] = len(index)
                    aggregate.partition_key_table.append(key)
                record = aggregate.records.add()
                record.partition_key_index = position
                record.data = data
            body: bytes = aggregate.SerializeToString()
            return MAGIC + body + md5(body).digest()

        assert decode(hand()) == decode(runtime())
        for name, run in (("kpl.aggregation.AggregateBuilder", hand), ("protobuf runtime (upb) messages", runtime)):
            print(f"{size:>5} B  {name:<34} {_best(run, 100, rounds) / count * 1e9:7.0f} ns per record")


async def _ready(value: object) -> object:
    return value


class _AwaitObject:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Generator[None, None, object]:
        yield from ()  # a generator that returns at once
        return self.value


async def _awaitable(rounds: int) -> None:
    loop = asyncio.get_running_loop()
    new_future: Callable[[], asyncio.Future[object]] = functools.partial(asyncio.Future, loop=loop)
    value = new_future()
    repeat = 200_000

    async def timed(body: Callable[[], Coroutine[Any, Any, None]]) -> float:
        best = float("inf")
        for _ in range(rounds):
            started = time.thread_time()
            await body()
            best = min(best, (time.thread_time() - started) / repeat)
        return best

    async def nothing() -> None:
        for _ in range(repeat):
            pass

    async def coroutine() -> None:
        for _ in range(repeat):
            await _ready(value)

    async def resolved_future() -> None:
        for _ in range(repeat):
            done = new_future()
            done.set_result(value)
            await done

    async def await_object() -> None:
        for _ in range(repeat):
            await _AwaitObject(value)

    floor = await timed(nothing)
    for name, body in (("coroutine (put_record's ready path)", coroutine), ("resolved asyncio.Future", resolved_future),
                       ("object with a generator __await__", await_object)):
        print(f"{name:<38} {(await timed(body) - floor) * 1e9:5.0f} ns per await")


async def _request(rounds: int) -> None:
    import kpl
    from kpl.aws import async_client
    from kpl.wire import install_put_records_codec

    async with async_client("kinesis", kpl.ProducerConfig().kinesis_client_config()) as client:
        install_put_records_codec(client, cbor=True)
        for entries in (1, 100):
            records = [{"Data": b"x" * 100, "PartitionKey": "a", "ExplicitHashKey": "1"}] * entries
            best = float("inf")
            for _ in range(rounds):
                started = time.thread_time()
                for _ in range(100):
                    await client.put_records(StreamName="bench", Records=records)
                best = min(best, (time.thread_time() - started) / 100)
            print(f"PutRecords with {entries:>3} entries: {best * 1000:.2f} ms CPU per request")


def request(rounds: int) -> None:
    import os

    from bench.minisink_process import MiniSinkProcess

    with MiniSinkProcess(streams={"bench": 16}) as sink:
        os.environ.update(sink.aws_env())
        asyncio.run(_request(rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("encode", "awaitable", "request"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"(CPython {sys.version.split()[0]}; thread CPU time, best of {args.rounds} rounds)")
    if args.what == "encode":
        encode(args.rounds)
    elif args.what == "request":
        request(args.rounds)
    else:
        asyncio.run(_awaitable(args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
