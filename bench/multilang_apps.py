"""The consumers bench/multilang_bench.py compares: the same work through each API.

Each counts the user records it is given (decoding the data, as any real consumer must), writes the
shard's running count to ``$BENCH_PROGRESS/<shard>`` after every batch and checkpoints after every batch
(``checkpoint()``: everything delivered so far), and checkpoints in ``shutdown_requested``/``shardEnded``.

* :class:`CountingProcessor`: the native :class:`kcl.RecordProcessor` (``processor = bench.multilang_apps:
  CountingProcessor``).
* ``python -m bench.multilang_apps protocol``: a MultiLang child written with the standard library only,
  one JSON message per line each way.
* ``python -m bench.multilang_apps kclpy``: the same as an amazon-kclpy ``KCLProcess`` app (amazon_kclpy
  must be importable: PYTHONPATH).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the children import nothing but the standard library (and amazon_kclpy)
    import kcl

PROGRESS = Path(os.environ.get("BENCH_PROGRESS", "."))


def _report(shard: str, count: int) -> None:
    (PROGRESS / shard).write_text(str(count))


class CountingProcessor:
    """All five methods of :class:`kcl.RecordProcessor`, without importing kcl into the children."""

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.shard, self.count, self.size = shard_id, 0, 0

    def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                        millis_behind_latest: int) -> None:
        for record in records:
            self.size += len(record.data)
        self.count += len(records)
        _report(self.shard, self.count)
        checkpointer.checkpoint()

    def lease_lost(self) -> None:
        pass

    def shard_ended(self, checkpointer: kcl.Checkpointer) -> None:
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: kcl.Checkpointer) -> None:
        checkpointer.checkpoint()


def protocol_main() -> None:
    """A MultiLang child in the protocol's own terms (stdlib only)."""
    stdin, stdout = sys.stdin, sys.stdout
    shard, count, size = "?", 0, 0

    def send(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    def checkpoint() -> None:
        send({"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None})
        stdin.readline()  # the outcome; a benchmark has nothing to do about an error

    for line in stdin:
        message = json.loads(line)
        action = message["action"]
        if action == "initialize":
            shard = message["shardId"]
        elif action == "processRecords":
            records = message["records"]
            for record in records:
                size += len(base64.b64decode(record["data"]))
            count += len(records)
            _report(shard, count)
            checkpoint()
        elif action in ("shardEnded", "shutdownRequested"):
            checkpoint()
        send({"action": "status", "responseFor": action})


def kclpy_main() -> None:
    """The same consumer written against amazon-kclpy."""
    from amazon_kclpy import kcl as kclpy  # type: ignore[import-not-found]
    from amazon_kclpy.v3 import processor  # type: ignore[import-not-found]

    class Counting(processor.RecordProcessorBase):  # type: ignore[misc]
        def initialize(self, initialize_input: Any) -> None:
            self.shard, self.count, self.size = initialize_input.shard_id, 0, 0

        def process_records(self, process_records_input: Any) -> None:
            records = process_records_input.records
            for record in records:
                self.size += len(record.binary_data)
            self.count += len(records)
            _report(self.shard, self.count)
            process_records_input.checkpointer.checkpoint()

        def lease_lost(self, lease_lost_input: Any) -> None:
            pass

        def shard_ended(self, shard_ended_input: Any) -> None:
            shard_ended_input.checkpointer.checkpoint()

        def shutdown_requested(self, shutdown_requested_input: Any) -> None:
            shutdown_requested_input.checkpointer.checkpoint()

    kclpy.KCLProcess(Counting()).run()


if __name__ == "__main__":
    {"protocol": protocol_main, "kclpy": kclpy_main}[sys.argv[1]]()
