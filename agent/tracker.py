"""Which files a flow follows, poll after poll: restore at start-up, then renames, truncations and new files.

The rules are in agent.tracking (identity, fingerprints, copies) and agent.restore (start-up).  The
:class:`FileTracker` applies them to each scan of the flow's pattern, keeps the checkpoint rows in step
with what it decided (a renamed file's row moves to its new path), and says what happened in the log:
files tracked, resumed, renamed, truncated (with the offset kept or the bytes lost), unreadable, and a
pattern that matches nothing (at start, then every :data:`EMPTY_PATTERN_WARN_INTERVAL` while it stays so).

What happens to records (reading, cutting, batching) is the flow's business; the tracker creates files
through ``new_file`` and hands a file it gives up on to ``retire``, which sends what was read of it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import replace

from agent.checkpoints import CheckpointRow, CheckpointStore
from agent.config_types import FileStartPosition, FlowConfig
from agent.globs import FilePattern
from agent.restore import Resume, plan_restore
from agent.tracking import (
    COPY_SETTLE,
    FileKey,
    Scan,
    Seen,
    TrackedFile,
    find_copy,
    last_line_boundary,
    open_file,
    scan,
)
from kpl.logs import get_logger

log = get_logger(__name__)

#: Seconds between two warnings about the same unreadable file.
WARN_INTERVAL = 300.0
#: Seconds between two warnings about a pattern that keeps matching no file.
EMPTY_PATTERN_WARN_INTERVAL = 300.0


class FileTracker:
    """The files of one flow (``files``), reconciled with every scan of its pattern."""

    def __init__(
        self,
        config: FlowConfig,
        store: CheckpointStore,
        rows: list[CheckpointRow],
        new_file: Callable[[Seen, int], TrackedFile],
        retire: Callable[[TrackedFile], None],
    ) -> None:
        self.config = config
        self.flow_id = config.id
        self.pattern = FilePattern(config.file_pattern)
        self.store = store
        self.files: dict[FileKey, TrackedFile] = {}
        self.restored = asyncio.Event()
        self.scan_seconds = 0.0
        self.empty_pattern_warn_interval = EMPTY_PATTERN_WARN_INTERVAL
        self._new_file = new_file
        self._retire = retire
        self._rows: list[CheckpointRow] | None = rows
        self._previous: dict[FileKey, Seen] = {}
        self._held: dict[FileKey, tuple[float, Seen]] = {}
        self._warned: dict[str, float] = {}
        self._empty_since: float | None = None
        self._empty_warned = 0.0

    async def refresh(self) -> None:
        """List the pattern (in a thread) and reconcile: the first call restores from the checkpoints."""
        open_fds = {key: tracked.fd for key, tracked in self.files.items() if tracked.fd is not None}
        result = await asyncio.to_thread(scan, self.pattern, self._previous, open_fds)
        self.scan_seconds = result.seconds
        for path, problem in result.unreadable:
            self.warn_unreadable(path, problem)
        previous = self._previous
        for key, seen in result.seen.items():
            if seen.prefix is None and key in previous:
                result.seen[key] = replace(seen, prefix=previous[key].prefix)
        self._previous = result.seen
        self._check_empty(result)
        if self._rows is not None:
            await self._restore(result)
            self._rows = None
            self.restored.set()
            return
        await self._reconcile(result)

    def warn_unreadable(self, path: str, problem: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(path, -WARN_INTERVAL) < WARN_INTERVAL:
            return
        self._warned[path] = now
        log.error("cannot read file: the agent's user needs read permission on it and execute permission on "
                  "every directory above it", flow=self.flow_id, path=path, problem=problem)

    def _check_empty(self, result: Scan) -> None:
        if result.seen or result.unreadable:
            self._empty_since = None
            return
        now = time.monotonic()
        starting = self._rows is not None
        if self._empty_since is None:
            self._empty_since = now
            if not starting:
                return  # a rotation can empty the listing for a moment: warn only if it lasts
        elif now - self._empty_warned < self.empty_pattern_warn_interval or \
                now - self._empty_since < self.empty_pattern_warn_interval:
            return
        self._empty_warned = now
        directory = self.pattern.base_directory
        since = None if starting else round(now - self._empty_since)
        if not os.access(directory, os.R_OK | os.X_OK):
            log.warning("the directory of the file pattern does not exist or cannot be read; files will be picked "
                        "up once it can", flow=self.flow_id, directory=directory, empty_for_seconds=since)
        else:
            log.warning("the file pattern matches no file; files will be picked up as soon as they appear",
                        flow=self.flow_id, file_pattern=self.config.file_pattern, empty_for_seconds=since)

    # --- start-up ---------------------------------------------------------------------------------

    async def _restore(self, result: Scan) -> None:
        rows = self._rows or []
        first_run = not rows
        from_java = bool(rows) and all(row.fingerprint is None for row in rows)
        newest_millis = max((row.last_modified_millis for row in rows), default=0)
        plan = await asyncio.to_thread(plan_restore, rows, result.seen)
        restarted: set[FileKey] = set()
        for truncation in plan.truncated:
            row = truncation.row
            restarted.update(key for key, seen in result.seen.items() if seen.path == row.path)
            if truncation.copy is not None:
                log.info("file was rotated by copytruncate while the agent was stopped: resuming its copy at the "
                         "checkpointed offset, and the truncated file from its start", flow=self.flow_id,
                         path=row.path, copy=truncation.copy.path, offset=row.offset)
            elif truncation.lost_bytes:
                log.warning("file was truncated while the agent was stopped, before it was read to its end, and no "
                            "copy of it was found: the unread bytes are lost; reading it from the start",
                            flow=self.flow_id, path=row.path, offset=row.offset, lost_bytes=truncation.lost_bytes)
            else:
                log.info("file was truncated while the agent was stopped, after it was read to its end: reading it "
                         "from the start", flow=self.flow_id, path=row.path, offset=row.offset, lost_bytes=0)
        for resume in plan.resumed.values():
            await self._resume(resume)
        for key, seen in result.seen.items():
            if seen.prefix is None or key in self.files:
                continue
            if key in restarted:
                offset = 0
            elif first_run and self.config.initial_position is FileStartPosition.END_OF_FILE:
                offset = await asyncio.to_thread(last_line_boundary, seen.path, key, seen.size)
                log.info("tracking file from its end (initialPosition END_OF_FILE)", flow=self.flow_id,
                         path=seen.path, offset=offset)
            elif first_run:
                offset = 0
                log.info("tracking file from its start (initialPosition START_OF_FILE)", flow=self.flow_id,
                         path=seen.path)
            elif from_java and seen.mtime_ns // 1_000_000 <= newest_millis:
                offset = seen.size
                log.info("file is older than the Java agent's checkpoint: treating it as shipped", flow=self.flow_id,
                         path=seen.path)
            else:
                offset = 0
                log.info("new file since the last run: reading it from the start", flow=self.flow_id,
                         path=seen.path)
            self._track(seen, offset)
        # Rows of files not found are kept (a directory may not be mounted yet); the TTL removes them.
        for tracked in self.files.values():
            self.store.put(tracked.checkpoint_row(self.flow_id))

    async def _resume(self, resume: Resume) -> None:
        seen, row = resume.seen, resume.row
        if resume.how == "checkpoint":
            log.info("resuming file from its checkpoint", flow=self.flow_id, path=seen.path, offset=resume.offset,
                     checkpointed_path=row.path if row.path != seen.path else None)
        elif resume.how == "renamed":
            log.info("file was renamed out of the file pattern while the agent was stopped: reading it to its end",
                     flow=self.flow_id, path=row.path, new_path=seen.path, offset=resume.offset)
        tracked = self._track(seen, resume.offset)
        if resume.how != "checkpoint":
            tracked.rotated = True  # it will not grow any more: its unterminated last line is sent at the end
        if not resume.listed:
            # Outside the pattern, the file is followed through its descriptor, as when renamed away at run time.
            problem = await asyncio.to_thread(open_file, tracked)
            if problem is not None:
                self.files.pop(tracked.key)
                self.warn_unreadable(seen.path, problem)
        if row.path != tracked.path and tracked.key in self.files:
            self.store.remove(self.flow_id, row.path)

    def _track(self, seen: Seen, offset: int) -> TrackedFile:
        tracked = self._new_file(seen, offset)
        self.files[seen.key] = tracked
        return tracked

    # --- while running ------------------------------------------------------------------------------

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
                    log.info("file is gone", flow=self.flow_id, path=tracked.path, offset=tracked.read_offset)
                continue
            if not tracked.rotated:
                tracked.rotated = True
                if state.links == 0:
                    tracked.persist = False
                    log.info("file was deleted: reading it to its end", flow=self.flow_id, path=tracked.path,
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
            self.store.put(tracked.checkpoint_row(self.flow_id))
            log.info("tracking new file", flow=self.flow_id, path=current.path)
        for key in [key for key in self._held if key not in seen]:
            del self._held[key]

    def _moved(self, tracked: TrackedFile, path: str, how: str) -> None:
        log.info(f"file {how}: reading on from the same offset", flow=self.flow_id, path=tracked.path,
                 new_path=path, offset=tracked.read_offset)
        if tracked.persist:
            self.store.remove(self.flow_id, tracked.path)
        tracked.path = path
        tracked.rotated = True
        if tracked.persist:
            self.store.put(tracked.checkpoint_row(self.flow_id))

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
        self.files.pop(tracked.key)
        if copy is not None:
            self._held.pop(copy.key, None)
            tracked.close()
            old_path = tracked.path
            tracked.key = copy.key
            tracked.size = copy.size
            tracked.mtime_ns = copy.mtime_ns
            self.files[copy.key] = tracked
            log.info("file was truncated after being copied (copytruncate): reading on in the copy from the same "
                     "offset", flow=self.flow_id, path=old_path, copy=copy.path, offset=tracked.read_offset,
                     lost_bytes=0)
            if tracked.persist:
                self.store.remove(self.flow_id, old_path)
            tracked.path = copy.path
            tracked.rotated = True
            if tracked.persist:
                self.store.put(tracked.checkpoint_row(self.flow_id))
        else:
            lost = max(0, tracked.size - tracked.read_offset)
            if lost:
                log.warning("file was truncated before it was read to its end and no copy of it was found: "
                            "the unread bytes are lost", flow=self.flow_id, path=tracked.path,
                            offset=tracked.read_offset, lost_bytes=lost)
            else:
                log.info("file was truncated after it was read to its end: reading it again from the start",
                         flow=self.flow_id, path=tracked.path, offset=tracked.read_offset, lost_bytes=0)
            self._retire(tracked)
        restarted = self._track(current, 0)
        self.store.put(restarted.checkpoint_row(self.flow_id))
