"""``python -m tests.support.sink``: the sink on 127.0.0.1 until SIGTERM or SIGINT (see the package docstring).

With ``--port 0`` it binds a free port and prints ``READY <url>`` once it accepts connections, which is
what :class:`tests.support.sink.process.SinkProcess` waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tests.support.sink.model import VERIFY_MODES, PrefillSpec, SinkError, SinkSettings
from tests.support.sink.server import Sink, serve

DESCRIPTION = "A fast local AWS sink: Kinesis, Firehose and CloudWatch as far as the toolkit's clients use them."


def build_sink(args: argparse.Namespace) -> Sink:
    settings = SinkSettings(
        fail_rate=args.fail_rate, latency_ms=args.latency_ms, verify=args.verify, verify_inline=args.verify_inline,
        retain=args.retain,
        auto_create=args.auto_create, default_shards=args.shards,
    )
    sink = Sink(settings, region=args.region)
    for spec in args.stream or ["bench"]:
        name, _, shards = spec.partition(":")
        sink.kinesis.create_stream(name, int(shards) if shards else args.shards)
    for name in args.delivery_stream or ["bench"]:
        sink.firehose.create(name)
    for text in args.prefill or []:
        sink.kinesis.prefill(PrefillSpec.parse(text))
    return sink


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.sink", description=DESCRIPTION)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--shards", type=int, default=4, help="shards of each --stream without its own count")
    parser.add_argument("--stream", action="append", metavar="NAME[:SHARDS]",
                        help="Kinesis stream to create (default: one named 'bench')")
    parser.add_argument("--delivery-stream", action="append", metavar="NAME",
                        help="Firehose delivery stream to create (default: one named 'bench')")
    parser.add_argument("--prefill", action="append", metavar="SPEC",
                        help="pre-filled stream, e.g. stream=reads,shards=4,records_per_shard=100000,"
                             "record_size=100,aggregate=1")
    parser.add_argument("--verify", choices=VERIFY_MODES, default="none",
                        help="decode aggregates to count user records (count) and check their shards (route)")
    parser.add_argument("--verify-inline", action="store_true",
                        help="verify before answering (the old behaviour, which slows waiting clients)")
    parser.add_argument("--fail-rate", type=float, default=0.0,
                        help="share of put entries answered ProvisionedThroughputExceededException")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every AWS response")
    parser.add_argument("--retain", action="store_true", help="keep put records so GetRecords returns them")
    parser.add_argument("--auto-create", action="store_true", help="create unknown streams on first use")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sink = build_sink(args)
    except (ValueError, SinkError) as error:
        print(f"tests.support.sink: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(sink, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
