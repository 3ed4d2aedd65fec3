"""A consumer application on the KCL-compatible worker, in process (the Python API behind ``kcl-worker``).

    examples/with-localstack python -m examples.consumer_app --stream clickstream --application clickstream-printer

It prints every page view it reads with its shard and position, checkpoints after each batch, and
stops gracefully on Ctrl-C / SIGTERM (``--records`` stops it once it has printed that many,
``--seconds`` after a while).  Start it twice with the
same ``--application`` and the two processes share the shards through the lease table; stop one and
the other takes its shards over.  The lease table is created on first use and has the Java KCL's schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable

import kcl
from kpl.logs import configure_logging


def say(text: str) -> None:
    """Print whole lines: processors of several shards print from their own threads, and print()
    writes the text and its newline separately, so their lines could run together."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


class PrintPageViews(kcl.RecordProcessor):
    def __init__(self, on_printed: Callable[[int], None]) -> None:
        self.on_printed = on_printed  # told how many records each batch printed

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.shard_id = shard_id
        say(f"{shard_id}: starting after {sequence_number}")

    def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                        millis_behind_latest: int) -> None:
        lines = []
        for record in records:
            try:
                event = json.loads(record.data)
                text = f"{event.get('user_id', '?')} viewed {event.get('page', '?')}"
            except ValueError:
                text = repr(record.data[:80])
            lines.append(f"{self.shard_id} {record.sequence_number[-6:]}/{record.sub_sequence_number}: {text}\n")
        if lines:
            say("".join(lines))
        checkpointer.checkpoint()
        self.on_printed(len(records))

    def shutdown_requested(self, checkpointer: kcl.Checkpointer) -> None:
        checkpointer.checkpoint()


async def consume(stream: str, application: str, seconds: float | None, records: int | None) -> None:
    config = kcl.WorkerConfig(initial_position_in_stream=kcl.InitialPosition.TRIM_HORIZON)
    loop = asyncio.get_running_loop()
    printed = 0

    def count(batch: int) -> None:  # called from the processor's thread: the count goes to the loop
        loop.call_soon_threadsafe(add, batch)

    def add(batch: int) -> None:
        nonlocal printed
        printed += batch
        if records is not None and printed >= records:
            worker.request_stop()

    worker = kcl.Worker(stream, application, lambda: PrintPageViews(count), config)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, worker.request_stop)
    if seconds is not None:
        loop.call_later(seconds, worker.request_stop)
    await worker.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", required=True)
    parser.add_argument("--application", required=True, help="application name, also the lease table's name")
    parser.add_argument("--records", type=int, help="stop once this many records have been printed")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: run until stopped)")
    args = parser.parse_args(argv)
    configure_logging("warning")
    try:
        asyncio.run(consume(args.stream, args.application, args.seconds, args.records))
    except kcl.KclError as exc:
        print(f"consumer_app: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
