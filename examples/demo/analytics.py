"""Both real-time queries in one record processor, for the demo's `kcl-worker` processes.

    kcl-worker --stream NAME --application NAME-analytics --processor examples.demo.analytics:AnalyticsProcessor

It runs :class:`~examples.consumers.page_counts.PageCountProcessor` and
:class:`~examples.consumers.anomalies.AnomalyProcessor` side by side on the same records.  The shard's
checkpoint follows the page-count query (a 1-minute window is checkpointed once emitted; on a graceful
stop its open windows are emitted and everything is checkpointed), so a handover re-delivers nothing and
the page counts stay exact.  The price is paid by the anomaly query: after a handover its open 5-minute
window restarts on the new worker, which can under-count a user whose events straddle the handover.
Run :class:`AnomalyProcessor` as an application of its own when that matters: alone, it replays its
open windows after a handover instead.

For the demo's self-check it also appends the request id of every record it consumes to the file named
by ``DEMO_CONSUMED_OUTPUT`` (one per line, duplicates included).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from examples.consumers.anomalies import AnomalyProcessor
from examples.consumers.page_counts import PageCountProcessor
from examples.demo.loggen import request_id
from kcl import Checkpointer, Record, RecordProcessor

Position = tuple[int, int]
_consumed_lock = threading.Lock()


class _CheckpointRequest:
    """Stands in for the checkpointer inside a composed query: it records where the query asked to checkpoint."""

    def __init__(self) -> None:
        self.position: Position | None = None
        self.last_delivered: Position | None = None

    def checkpoint(self, target: Record | str | None = None, sub_sequence_number: int | None = None) -> None:
        if target is None:
            position = self.last_delivered
        elif isinstance(target, Record):
            position = (int(target.sequence_number), target.sub_sequence_number)
        else:
            position = (int(target), sub_sequence_number or 0)
        if position is not None and (self.position is None or position > self.position):
            self.position = position


class AnalyticsProcessor(RecordProcessor):
    def __init__(self) -> None:
        self.queries: list[tuple[RecordProcessor, _CheckpointRequest]] = [
            (PageCountProcessor(), _CheckpointRequest()), (AnomalyProcessor(), _CheckpointRequest())]
        self.checkpointed: Position | None = None
        self.consumed_path = os.environ.get("DEMO_CONSUMED_OUTPUT")

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        for query, _ in self.queries:
            query.initialize(shard_id, sequence_number, sub_sequence_number)

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> None:
        if not records:
            return
        last = records[-1]
        for query, request in self.queries:
            request.last_delivered = (int(last.sequence_number), last.sub_sequence_number)
            query.process_records(records, request, millis_behind_latest)  # type: ignore[arg-type]
        self._record_consumed(records)
        self._checkpoint(checkpointer)

    def _record_consumed(self, records: list[Record]) -> None:
        if not self.consumed_path:
            return
        ids = [rid for rid in map(request_id, (r.data for r in records)) if rid is not None]
        with _consumed_lock, open(self.consumed_path, "a", encoding="ascii") as out:
            out.write("".join(f"{rid}\n" for rid in ids))

    def _checkpoint(self, checkpointer: Checkpointer) -> None:
        _, page_counts = self.queries[0]
        safe = page_counts.position
        if safe is not None and (self.checkpointed is None or safe > self.checkpointed):
            checkpointer.checkpoint(str(safe[0]), safe[1])
            self.checkpointed = safe

    def shutdown_requested(self, checkpointer: Checkpointer) -> Any:
        for query, request in self.queries:
            query.shutdown_requested(request)  # type: ignore[arg-type]
        self._checkpoint(checkpointer)

    def shard_ended(self, checkpointer: Checkpointer) -> Any:
        for query, request in self.queries:
            query.shard_ended(request)  # type: ignore[arg-type]
        checkpointer.checkpoint()

    def lease_lost(self) -> Any:
        for query, _ in self.queries:
            query.lease_lost()
