"""An archiver consumer: records into S3 as gzip batches under ``year=YYYY/month=MM/day=DD/``, as Firehose does.

    kcl-worker --stream NAME --application NAME-archiver --processor examples.demo.archiver:S3Archiver

Settings come from the environment: ``ARCHIVE_BUCKET`` (required), ``ARCHIVE_PREFIX`` (default
``archive/``), ``ARCHIVE_BATCH_RECORDS`` (default 500) and ``ARCHIVE_BATCH_SECONDS`` (default 5).

At-least-once: a batch is checkpointed only after its object is in S3.  Object keys are derived from the
position of the batch's first record, so a batch re-sent after a crash overwrites its own object instead
of adding a duplicate one.  Partitions use the records' arrival time in UTC, like Firehose's default.
"""

from __future__ import annotations

import gzip
import os
import time
from datetime import UTC, datetime

from kcl import Checkpointer, Record, RecordProcessor
from kpl.aws import sync_client


class S3Archiver(RecordProcessor):
    def __init__(self) -> None:
        bucket = os.environ.get("ARCHIVE_BUCKET")
        if not bucket:
            raise RuntimeError("S3Archiver needs ARCHIVE_BUCKET in the environment")
        self.bucket = bucket
        self.prefix = os.environ.get("ARCHIVE_PREFIX", "archive/")
        self.batch_records = int(os.environ.get("ARCHIVE_BATCH_RECORDS", "500"))
        self.batch_seconds = float(os.environ.get("ARCHIVE_BATCH_SECONDS", "5"))
        self.s3 = sync_client("s3")
        self.shard_id = ""
        self.buffer: list[Record] = []
        self.buffer_started = 0.0
        self.objects_written = 0

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.shard_id = shard_id

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> None:
        # With callProcessRecordsEvenForEmptyRecordList the worker calls this on idle reads too, which is
        # what uploads a partial batch once it is old enough.
        if not self.buffer:
            if not records:
                return
            self.buffer_started = time.monotonic()
        self.buffer.extend(records)
        if len(self.buffer) >= self.batch_records or time.monotonic() - self.buffer_started >= self.batch_seconds:
            self.flush(checkpointer)

    def flush(self, checkpointer: Checkpointer) -> None:
        if not self.buffer:
            return
        first, last = self.buffer[0], self.buffer[-1]
        arrived = first.approximate_arrival_timestamp or datetime.now(UTC)
        day = arrived.astimezone(UTC)
        key = (f"{self.prefix}year={day:%Y}/month={day:%m}/day={day:%d}/"
               f"{self.shard_id}-{first.sequence_number}-{first.sub_sequence_number:05d}.jsonl.gz")
        body = gzip.compress(b"".join(r.data if r.data.endswith(b"\n") else r.data + b"\n" for r in self.buffer))
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentEncoding="gzip",
                           ContentType="application/x-ndjson")
        checkpointer.checkpoint(last)
        self.objects_written += 1
        self.buffer = []

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        self.flush(checkpointer)
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        self.flush(checkpointer)

    def lease_lost(self) -> None:
        # Not checkpointed, so the next owner reads these records again: nothing is lost.
        self.buffer = []
