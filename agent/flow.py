"""One flow's pipeline: track files, read them, cut records, batch, send, acknowledge, checkpoint.

    scan (thread) ─► reconcile ─► read blocks (thread) ─► LineCutter ─► RecordShaper ─► BatchBuilder
                                                                                           │ closed batch
    checkpoint row ◄─ OrderedFinalizer ◄─ acknowledge ◄─ Sink.deliver (retries forever) ◄──┘ queue

Everything runs on the event loop except the blocking file-system calls.  Reading stops while the
flow's :class:`ByteBudget` is spent and resumes as batches are acknowledged.  Several files are read in
turn, one block each, so a busy file does not starve the others.  On shutdown the open batches are
closed and sent within the time the agent allows; whatever is still unacknowledged then is simply
not checkpointed and is read again after a restart.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from typing import Protocol

from agent.batch import Batch, BatchBuilder, ByteBudget
from agent.checkpoints import CheckpointRow, CheckpointStore
from agent.config import FlowConfig
from agent.globs import FilePattern
from agent.records import Cut, LineCutter, RecordShaper, RecordStats
from agent.tracking import (
    COPY_SETTLE,
    FINGERPRINT_BYTES,
    IDLE_CLOSE,
    ROTATE_WAIT,
    FileKey,
    Scan,
    Seen,
    TrackedFile,
    find_copy,
    last_line_boundary,
    open_file,
    read_block,
    restore_offset,
    scan,
)
from kpl.logs import get_logger

log = get_logger(__name__)

READ_BLOCK_BYTES = 1 << 20
#: Reads shrink to what is left of the budget, but not below this.
MIN_READ_BYTES = 64 << 10
#: Seconds between two warnings about the same unreadable file.
WARN_INTERVAL = 300.0


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
        self.pattern = FilePattern(config.file_pattern)
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
        self.files: dict[FileKey, TrackedFile] = {}
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self._rows: list[CheckpointRow] | None = rows
        self._previous: dict[FileKey, Seen] = {}
        self._held: dict[FileKey, tuple[float, Seen]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._unacknowledged: dict[int, Batch] = {}
        self._warned: dict[str, float] = {}
        self._stopping = False
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._scan_seconds = 0.0
        self.restored = asyncio.Event()

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
        poll = self.config.poll_interval
        next_scan = 0.0
        while True:
            now = time.monotonic()
            if now >= next_scan:
                await self._refresh()
                # Listing a large tree can take a while: keep it under a tenth of the time.
                next_scan = time.monotonic() + max(poll, 10 * self._scan_seconds)
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
                    self._warn_unreadable(tracked.path, problem)
                    continue
            fd = tracked.fd
            assert fd is not None
            size = max(MIN_READ_BYTES, min(READ_BLOCK_BYTES, self.budget.max_bytes - self.budget.bytes))
            try:
                data = await asyncio.to_thread(read_block, fd, size, tracked.read_offset, tracked.prefix)
            except OSError as exc:
                self._warn_unreadable(tracked.path, exc.strerror or str(exc))
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

    def _enqueue_all(self, tracked: TrackedFile, closed: list[tuple[int, int, list[bytes], int]]) -> None:
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
        max_age = self.config.max_buffer_age
        flush_after = self.config.multi_line_flush_timeout
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

    # --- tracking -----------------------------------------------------------------------------------

    async def _refresh(self) -> None:
        open_fds = {key: tracked.fd for key, tracked in self.files.items() if tracked.fd is not None}
        result = await asyncio.to_thread(scan, self.pattern, self._previous, open_fds)
        self._scan_seconds = result.seconds
        for path, problem in result.unreadable:
            self._warn_unreadable(path, problem)
        previous = self._previous
        for key, seen in result.seen.items():
            if seen.prefix is None and key in previous:
                result.seen[key] = replace(seen, prefix=previous[key].prefix)
        self._previous = result.seen
        if self._rows is not None:
            await self._restore(result)
            self._rows = None
            self.restored.set()
            return
        await self._reconcile(result)

    async def _restore(self, result: Scan) -> None:
        rows = self._rows or []
        first_run = not rows
        from_java = bool(rows) and all(row.fingerprint is None for row in rows)
        newest_millis = max((row.last_modified_millis for row in rows), default=0)
        if not result.seen and not os.access(self.pattern.base_directory, os.R_OK | os.X_OK):
            log.warning("the directory of the file pattern does not exist or cannot be read; files will be picked "
                        "up once it can", flow=self.id, directory=self.pattern.base_directory)
        for key, seen in result.seen.items():
            if seen.prefix is None:
                continue
            found = restore_offset(rows, seen)
            if found is not None:
                offset, row = found
                log.info("resuming file from its checkpoint", flow=self.id, path=seen.path, offset=offset,
                         checkpointed_path=row.path if row.path != seen.path else None)
            elif first_run and self.config.initial_position == "END_OF_FILE":
                offset = await asyncio.to_thread(last_line_boundary, seen.path, key, seen.size)
                log.info("tracking file from its end (initialPosition END_OF_FILE)", flow=self.id,
                         path=seen.path, offset=offset)
            elif first_run:
                offset = 0
                log.info("tracking file from its start (initialPosition START_OF_FILE)", flow=self.id,
                         path=seen.path)
            elif from_java and seen.mtime_ns // 1_000_000 <= newest_millis:
                offset = seen.size
                log.info("file is older than the Java agent's checkpoint: treating it as shipped", flow=self.id,
                         path=seen.path)
            else:
                offset = 0
                log.info("new file since the last run: reading it from the start", flow=self.id, path=seen.path)
            self._track(seen, offset)
        # Rows of files not found are kept (a directory may not be mounted yet); the TTL removes them.
        for tracked in self.files.values():
            self.store.put(tracked.checkpoint_row(self.id))

    def _track(self, seen: Seen, offset: int) -> TrackedFile:
        tracked = TrackedFile(
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
        self.files[seen.key] = tracked
        return tracked

    async def _reconcile(self, result: Scan) -> None:
        now = time.monotonic()
        seen = result.seen
        truncated: list[tuple[TrackedFile, Seen]] = []
        for key, tracked in list(self.files.items()):
            current = seen.get(key)
            if current is not None:
                if current.path != tracked.path:
                    self._moved(tracked, current.path, "renamed")
                prefix = current.prefix
                if not tracked.finished and (
                    current.size < tracked.read_offset
                    or (prefix is not None and prefix[:len(tracked.prefix)] != tracked.prefix)
                ):
                    truncated.append((tracked, current))
                    continue
                if current.size != tracked.size or current.mtime_ns != tracked.mtime_ns:
                    tracked.last_growth = now
                tracked.size = current.size
                tracked.mtime_ns = current.mtime_ns
                if prefix is not None and len(prefix) > len(tracked.prefix):
                    tracked.prefix = prefix
                continue
            state = result.open_states.get(key)
            if tracked.fd is None or state is None:
                self.files.pop(key)
                if not tracked.finished:
                    log.info("file is gone", flow=self.id, path=tracked.path, offset=tracked.read_offset)
                continue
            if not tracked.rotated:
                tracked.rotated = True
                if state.links == 0:
                    tracked.persist = False
                    log.info("file was deleted: reading it to its end", flow=self.id, path=tracked.path,
                             behind=max(0, state.size - tracked.read_offset))
                elif state.path is not None and state.path != tracked.path:
                    self._moved(tracked, state.path, "renamed out of the file pattern")
            if state.size != tracked.size:
                tracked.last_growth = now
                tracked.size = state.size
        for tracked, current in truncated:
            await self._truncated(tracked, current, seen)
        for key, current in seen.items():
            if key in self.files or current.prefix is None:
                continue
            held = self._held.get(key)
            if held is None and self._looks_like_copy(current):
                self._held[key] = (now, current)
                continue
            if held is not None and now - held[0] < COPY_SETTLE:
                continue
            self._held.pop(key, None)
            tracked = self._track(current, 0)
            self.store.put(tracked.checkpoint_row(self.id))
            log.info("tracking new file", flow=self.id, path=current.path)
        for key in [key for key in self._held if key not in seen]:
            del self._held[key]

    def _moved(self, tracked: TrackedFile, path: str, how: str) -> None:
        log.info(f"file {how}: reading on from the same offset", flow=self.id, path=tracked.path, new_path=path,
                 offset=tracked.read_offset)
        if tracked.persist:
            self.store.remove(self.id, tracked.path)
        tracked.path = path
        tracked.rotated = True
        if tracked.persist:
            self.store.put(tracked.checkpoint_row(self.id))

    def _looks_like_copy(self, candidate: Seen) -> bool:
        prefix = candidate.prefix or b""
        for tracked in self.files.values():
            common = min(len(prefix), len(tracked.prefix))
            if common and not tracked.finished and candidate.size <= tracked.size and (
                prefix[:common] == tracked.prefix[:common]
            ):
                return True
        return False

    async def _truncated(self, tracked: TrackedFile, current: Seen, seen: dict[FileKey, Seen]) -> None:
        """``tracked`` shrank or changed its first bytes: continue in its copy, restart the inode at 0."""
        prefix = tracked.prefix
        copy: Seen | None = None
        if prefix:
            for key, (_, held) in self._held.items():
                if held.prefix is not None and held.prefix.startswith(prefix) and key in seen:
                    candidate = seen[key]
                    if candidate.size >= tracked.read_offset:
                        copy = candidate
                        break
            if copy is None:
                for key, candidate in seen.items():
                    if key not in self.files and candidate.prefix is not None and \
                            candidate.prefix.startswith(prefix) and candidate.size >= tracked.read_offset:
                        copy = candidate
                        break
            if copy is None:
                copy = await asyncio.to_thread(find_copy, os.path.dirname(tracked.path), prefix,
                                               tracked.read_offset, [*self.files, current.key])
        old_key = tracked.key
        self.files.pop(old_key)
        if copy is not None:
            self._held.pop(copy.key, None)
            tracked.close()
            old_path = tracked.path
            tracked.key = copy.key
            tracked.size = copy.size
            tracked.mtime_ns = copy.mtime_ns
            self.files[copy.key] = tracked
            log.info("file was truncated after being copied (copytruncate): reading on in the copy", flow=self.id,
                     path=old_path, copy=copy.path, offset=tracked.read_offset)
            if tracked.persist:
                self.store.remove(self.id, old_path)
            tracked.path = copy.path
            tracked.rotated = True
            if tracked.persist:
                self.store.put(tracked.checkpoint_row(self.id))
        else:
            lost = max(0, tracked.size - tracked.read_offset)
            if lost:
                log.warning("file was truncated before it was read to its end and no copy of it was found: "
                            "the unread bytes are lost", flow=self.id, path=tracked.path,
                            offset=tracked.read_offset, lost_bytes=lost)
            else:
                log.info("file was truncated: reading it again from the start", flow=self.id, path=tracked.path)
            if tracked.cutter.pending_bytes:
                self._take(tracked, tracked.cutter.flush())
            self._close_batch(tracked)
            tracked.finished = True
            tracked.persist = False
            tracked.close()
        restarted = self._track(current, 0)
        self.store.put(restarted.checkpoint_row(self.id))

    def _warn_unreadable(self, path: str, problem: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(path, -WARN_INTERVAL) < WARN_INTERVAL:
            return
        self._warned[path] = now
        log.error("cannot read file: the agent's user needs read permission on it and execute permission on "
                  "every directory above it", flow=self.id, path=path, problem=problem)

    # --- sending and acknowledging ------------------------------------------------------------------

    async def _send_forever(self) -> None:
        while True:
            batch = await self.queue.get()
            task = asyncio.create_task(self._deliver(batch))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, batch: Batch) -> None:
        while True:
            try:
                await self.sink.deliver(batch)
                break
            except Exception as exc:  # a failure the sink did not expect: the batch is kept, never dropped
                log.error("sending a batch failed unexpectedly; retrying it", flow=self.id, path=batch.source.path,
                          records=len(batch.records), error=repr(exc), exc_info=exc)
                await asyncio.sleep(self.config.retry_max_backoff)
        self._acknowledge(batch, charged=True)

    def _acknowledge(self, batch: Batch, *, charged: bool) -> None:
        tracked: TrackedFile = batch.source
        if charged:
            self.budget.release(batch.nbytes)
            self._unacknowledged.pop(id(batch), None)
        if tracked.finalizer.acknowledge(batch.ticket) and tracked.persist:
            self.store.put(tracked.checkpoint_row(self.id))
