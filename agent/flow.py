"""One flow's pipeline: track files, read them, cut records, batch, send, acknowledge, checkpoint.

    FileTracker (scan, restore, rotations: agent.tracker)
        ─► read blocks (thread) ─► LineCutter ─► RecordShaper ─► BatchBuilder
                                                                      │ closed batch
    checkpoint row ◄─ OrderedFinalizer ◄─ acknowledge ◄─ Sink.deliver ◄┘ queue (retries forever)

Everything runs on the event loop except the blocking file-system calls.  Reading stops while the
flow's :class:`ByteBudget` is spent and resumes as batches are acknowledged.  Several files are read in
turn, one block each, so a busy file does not starve the others.  On shutdown the open batches are
closed and sent within the time the agent allows; whatever is still unacknowledged then is simply
not checkpointed and is read again after a restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from tenacity import RetryCallState, stop_never, wait_fixed

from agent.batch import Batch, BatchBuilder, ByteBudget, ClosedBatch
from agent.checkpoints import CheckpointRow, CheckpointStore
from agent.config_types import FlowConfig
from agent.records import Cut, LineCutter, RecordShaper, RecordStats
from agent.tracker import FileTracker
from agent.tracking import (
    FINGERPRINT_BYTES,
    IDLE_CLOSE,
    ROTATE_WAIT,
    FileKey,
    Seen,
    TrackedFile,
    open_file,
    read_block,
)
from kpl.logs import get_logger
from kpl.retry import any_error, last_error, retrying

log = get_logger(__name__)

READ_BLOCK_BYTES = 1 << 20
#: Reads shrink to what is left of the budget, but not below this.
MIN_READ_BYTES = 64 << 10


class Sink(Protocol):
    """Where a flow's batches go.  ``deliver`` returns once every record of the batch is delivered,
    retrying for as long as it takes; it is cancelled at shutdown."""

    async def start(self) -> None: ...

    async def deliver(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class FlowProgress:
    """What the periodic progress line reports for one flow."""

    files_tracked: int
    bytes_behind: int
    checkpoint_lag_bytes: int
    oldest_unacknowledged_seconds: float
    records_parsed: int
    bytes_consumed: int
    records_skipped: int
    conversion_errors: int
    records_truncated: int
    records_dropped_too_long: int
    batches_unacknowledged: int
    unacknowledged_bytes: int


class Flow:
    """One entry of agent.json's ``flows``."""

    def __init__(
        self,
        config: FlowConfig,
        sink: Sink,
        store: CheckpointStore,
        rows: list[CheckpointRow],
    ) -> None:
        self.config = config
        self.sink = sink
        self.store = store
        self.stats = RecordStats()
        # Partition-key bytes count toward the record and batch limits (Firehose records carry none).
        overhead = config.partition_key_bytes
        self._overhead = overhead
        self.max_record_bytes = config.max_record_bytes - overhead
        self.shaper = RecordShaper(
            max_record_bytes=self.max_record_bytes,
            terminator=config.truncated_record_terminator,
            drop_long_records=config.drop_long_records,
            converters=config.converters,
            footer=config.file_footer_pattern,
            stats=self.stats,
        )
        self.budget = ByteBudget(config.publish_queue_capacity_bytes, config.publish_queue_capacity)
        self.tracker = FileTracker(config, store, rows, self._new_file, self._retire)
        self.files: dict[FileKey, TrackedFile] = self.tracker.files
        self.restored = self.tracker.restored
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._unacknowledged: dict[int, Batch] = {}
        self._stopping = False
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.config.id

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name=f"flow-reader:{self.id}")
        self._sender = asyncio.create_task(self._send_forever(), name=f"flow-sender:{self.id}")

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The reader and sender tasks: they end only when cancelled or when something went wrong."""
        return [task for task in (self._reader, self._sender) if task is not None]

    async def stop(self, timeout: float, force: asyncio.Event) -> bool:
        """Stop reading and send what was read, for up to ``timeout`` seconds or until ``force`` is set;
        True when everything read was delivered."""
        self._stopping = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for tracked in list(self.files.values()):
            self._close_batch(tracked)
        drained = asyncio.create_task(self.budget.wait_until_empty())
        forced = asyncio.create_task(force.wait())
        await asyncio.wait([drained, forced], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        forced.cancel()
        delivered = self.budget.batches == 0
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        for task in list(self._deliveries):
            task.cancel()
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        for tracked in self.files.values():
            tracked.close()
        return delivered

    @property
    def failed(self) -> BaseException | None:
        """The exception that stopped the reader or the sender, if one did."""
        for task in (self._reader, self._sender):
            if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def waiting_since(self) -> float | None:
        """``time.monotonic()`` when the oldest batch handed to the sink and not yet acknowledged was
        closed; None when every batch is acknowledged."""
        return min((batch.sealed_at for batch in self._unacknowledged.values()), default=None)

    def progress(self) -> FlowProgress:
        now = time.monotonic()
        oldest = min((batch.sealed_at for batch in self._unacknowledged.values()), default=now)
        return FlowProgress(
            files_tracked=len(self.files),
            bytes_behind=sum(tracked.behind for tracked in self.files.values()),
            checkpoint_lag_bytes=sum(
                tracked.read_offset - tracked.finalizer.checkpoint for tracked in self.files.values()
            ),
            oldest_unacknowledged_seconds=now - oldest,
            records_parsed=self.stats.records_parsed,
            bytes_consumed=self.stats.bytes_consumed,
            records_skipped=self.stats.records_skipped,
            conversion_errors=self.stats.conversion_errors,
            records_truncated=self.stats.records_truncated,
            records_dropped_too_long=self.stats.records_dropped_too_long,
            batches_unacknowledged=self.budget.batches,
            unacknowledged_bytes=self.budget.bytes,
        )

    # --- reading ------------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        poll = self.config.poll_interval_ms / 1000
        next_scan = 0.0
        while True:
            now = time.monotonic()
            if now >= next_scan:
                await self.tracker.refresh()
                # Listing a large tree can take a while: keep it under a tenth of the time.
                next_scan = time.monotonic() + max(poll, 10 * self.tracker.scan_seconds)
            progressed = False
            if not self.budget.exhausted:
                progressed = await self._read_round()
            self._run_timers(time.monotonic())
            pause = max(0.0, min(poll, next_scan - time.monotonic()))
            if self.budget.exhausted:
                await self.budget.wait_for_room(pause)
            elif not progressed:
                await asyncio.sleep(pause)

    async def _read_round(self) -> bool:
        progressed = False
        for tracked in list(self.files.values()):
            if self.budget.exhausted or self._stopping:
                break
            if tracked.finished or (tracked.read_offset >= tracked.size and not tracked.hot):
                continue
            if tracked.fd is None:
                problem = await asyncio.to_thread(open_file, tracked)
                if problem is not None:
                    self.tracker.warn_unreadable(tracked.path, problem)
                    continue
            fd = tracked.fd
            assert fd is not None
            size = max(MIN_READ_BYTES, min(READ_BLOCK_BYTES, self.budget.max_bytes - self.budget.bytes))
            try:
                data = await asyncio.to_thread(read_block, fd, size, tracked.read_offset, tracked.prefix)
            except OSError as exc:
                self.tracker.warn_unreadable(tracked.path, exc.strerror or str(exc))
                tracked.close()
                continue
            if data is None:  # replaced since the last scan: the next scan sorts out what it became
                tracked.hot = False
                continue
            tracked.hot = len(data) == size
            if not data:
                continue
            progressed = True
            now = time.monotonic()
            tracked.read_offset += len(data)
            tracked.last_data = tracked.last_growth = now
            if tracked.read_offset > tracked.size:
                tracked.size = tracked.read_offset
            self._take(tracked, tracked.cutter.feed(data))
        return progressed

    def _take(self, tracked: TrackedFile, cut: Cut) -> None:
        """Shape raw records of ``tracked`` and add them to its open batch."""
        if not cut.records:
            return
        records = cut.records
        if (cut.lengths is None and self.shaper.converters is None and self.shaper.footer is None
                and max(map(len, records)) <= self.max_record_bytes):
            self.stats.records_parsed += len(records)
            self.stats.bytes_consumed += sum(map(len, records))
            self._enqueue_all(tracked, tracked.builder.add_exact(records))
            return
        out, lengths, footer = self.shaper.shape(cut)
        self._enqueue_all(tracked, tracked.builder.add(out, lengths))
        if footer is not None:
            log.info("file footer matched: the rest of the file is not read", flow=self.id, path=tracked.path)
            self._close_batch(tracked)
            tracked.finished = True
            tracked.close()

    def _enqueue_all(self, tracked: TrackedFile, closed: list[ClosedBatch]) -> None:
        for start, end, records, nbytes in closed:
            self._enqueue(tracked, start, end, records, nbytes)

    def _enqueue(self, tracked: TrackedFile, start: int, end: int, records: list[bytes], nbytes: int) -> None:
        ticket = tracked.finalizer.register(start, end)
        batch = Batch(tracked, start, end, records, nbytes=nbytes, ticket=ticket)
        if not records:
            self._acknowledge(batch, charged=False)
            return
        self.budget.charge(nbytes)
        self._unacknowledged[id(batch)] = batch
        self.queue.put_nowait(batch)

    def _close_batch(self, tracked: TrackedFile) -> None:
        if not tracked.builder.empty:
            self._enqueue(tracked, *tracked.builder.close())

    def _run_timers(self, now: float) -> None:
        max_age = self.config.max_buffer_age_ms / 1000
        flush_after = self.config.multi_line_flush_timeout_ms / 1000
        multiline = self.config.multi_line_start_pattern is not None
        for tracked in list(self.files.values()):
            if tracked.builder.age(now) >= max_age:
                self._close_batch(tracked)
            idle = now - tracked.last_data
            if multiline and idle >= flush_after and tracked.cutter.pending_bytes:
                self._take(tracked, tracked.cutter.flush())
            if tracked.finished or tracked.hot or tracked.read_offset < tracked.size:
                continue
            if tracked.fd is None:
                continue
            if tracked.rotated and idle >= ROTATE_WAIT and now - tracked.last_growth >= ROTATE_WAIT:
                self._finish_rotated(tracked)
            elif not tracked.rotated and idle >= IDLE_CLOSE and not tracked.cutter.pending_bytes:
                self._close_batch(tracked)
                tracked.close()

    def _finish_rotated(self, tracked: TrackedFile) -> None:
        """A rotated file read to its end and quiet: send its unterminated last line and let it go."""
        if tracked.cutter.pending_bytes:
            self._take(tracked, tracked.cutter.flush())
        self._close_batch(tracked)
        tracked.close()
        if not tracked.persist:
            self.files.pop(tracked.key, None)
        log.info("finished rotated file", flow=self.id, path=tracked.path, offset=tracked.read_offset)

    # --- files -------------------------------------------------------------------------------------

    def _new_file(self, seen: Seen, offset: int) -> TrackedFile:
        """A file to read from ``offset``; header lines are skipped when it is read from its start."""
        return TrackedFile(
            path=seen.path,
            key=seen.key,
            prefix=(seen.prefix or b"")[:FINGERPRINT_BYTES],
            offset=offset,
            size=seen.size,
            mtime_ns=seen.mtime_ns,
            cutter=LineCutter(self.max_record_bytes + 1, self.config.multi_line_start_pattern,
                              skip_lines=self.config.skip_header_lines if offset == 0 else 0),
            builder=BatchBuilder(offset, self.config.max_buffer_size_records, self.config.max_buffer_size_bytes,
                                 self._overhead),
        )

    def _retire(self, tracked: TrackedFile) -> None:
        """No more reading from ``tracked`` (truncated without a copy): send what was read of it."""
        if tracked.cutter.pending_bytes:
            self._take(tracked, tracked.cutter.flush())
        self._close_batch(tracked)
        tracked.finished = True
        tracked.persist = False
        tracked.close()

    # --- sending and acknowledging ------------------------------------------------------------------

    async def _send_forever(self) -> None:
        while True:
            batch = await self.queue.get()
            task = asyncio.create_task(self._deliver(batch))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, batch: Batch) -> None:
        # A failure the sink did not expect: the batch is kept, never dropped.  stop_never: docs/agent.md
        # ("Retries never give up"); stop() cancels the deliveries at shutdown.
        async for attempt in retrying(wait=wait_fixed(self.config.retry_max_backoff_ms / 1000), stop=stop_never,
                                      retry_on=any_error,
                                      before_sleep=lambda state: self._failed_unexpectedly(state, batch)):
            with attempt:
                await self.sink.deliver(batch)
        self._acknowledge(batch, charged=True)

    def _failed_unexpectedly(self, retry_state: RetryCallState, batch: Batch) -> None:
        error = last_error(retry_state)
        log.error("sending a batch failed unexpectedly; retrying it", flow=self.id, path=batch.source.path,
                  records=len(batch.records), error=repr(error), exc_info=error)

    def _acknowledge(self, batch: Batch, *, charged: bool) -> None:
        tracked: TrackedFile = batch.source
        if charged:
            self.budget.release(batch.nbytes)
            self._unacknowledged.pop(id(batch), None)
        if tracked.finalizer.acknowledge(batch.ticket) and tracked.persist:
            self.store.put(tracked.checkpoint_row(self.id))
