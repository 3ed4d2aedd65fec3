"""Which files a flow reads, and from where: identity, rotation and restart.

A file is identified by (device, inode), the Java agent's file id, plus a fingerprint: its first bytes
(up to :data:`FINGERPRINT_BYTES`).  The inode follows a file through renames; the fingerprint tells it
apart from a new file that got a reused inode, or from the same inode truncated and written again
between two polls.

Every poll the flow's pattern is listed (in a thread) and reconciled with what is tracked:

* a tracked inode at a new path was renamed (rename-and-create rotation): it keeps its descriptor and
  offset, and its checkpoint row moves to the new path;
* a tracked inode that is no longer listed was renamed out of the pattern or deleted: its descriptor
  stays open and it is read to its end, then closed after :data:`ROTATE_WAIT` seconds without growth;
* a tracked inode that shrank, or whose first bytes changed, was truncated (copytruncate): if a file
  with the same first bytes and at least the bytes already read sits in the listing or in the same
  directory, it is the copy and reading continues there at the same offset (the unread tail is not
  lost); the truncated inode starts again at offset 0 as a new file;
* an unknown inode is a new file, read from offset 0, except at start-up, where checkpoints (matched by
  file id and fingerprint, wherever the file now lives, see agent.restore) or ``initialPosition`` decide.

agent.tracker applies these rules poll after poll; this module holds the pieces they are made of.

Files are opened when they have data and closed after :data:`IDLE_CLOSE` seconds without growth, so a
directory of a thousand dated logs does not hold a thousand descriptors; a closed file that grows is
reopened at its offset.
"""

from __future__ import annotations

import contextlib
import os
import stat as stat_module
import time
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from agent.acks import OrderedFinalizer
from agent.batch import BatchBuilder
from agent.checkpoints import CheckpointRow
from agent.globs import IGNORED_EXTENSIONS, FilePattern
from agent.records import LineCutter

FINGERPRINT_BYTES = 1024
#: Seconds a file that was renamed away or deleted stays open after it stopped growing.
ROTATE_WAIT = 5.0
#: Seconds a live file stays open after it stopped growing.
IDLE_CLOSE = 60.0
#: Seconds a new file that starts like a tracked one is held back, in case it is a copy whose original
#: is about to be truncated (copytruncate).
COPY_SETTLE = 2.0
#: How far back from the end END_OF_FILE looks for the last line boundary.
TAIL_SCAN_BYTES = 1 << 20

FileKey = tuple[int, int]


def java_file_id(dev: int, ino: int) -> str:
    """The Java agent's FileId for Linux: ``UnixFileKey.toString()``."""
    return f"(dev={dev:x},ino={ino})"


def fingerprint_text(prefix: bytes) -> str:
    return f"{len(prefix)}:{blake2b(prefix, digest_size=16).hexdigest()}"


def read_prefix(path: str, key: FileKey, length: int = FINGERPRINT_BYTES) -> bytes | None:
    """The first bytes of the file at ``path``, if it still is the file ``key``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != key:
            return None
        return os.pread(fd, length, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Seen:
    """One listed file as the latest scan saw it."""

    path: str
    key: FileKey
    size: int
    mtime_ns: int
    #: First bytes, read when the file is new to the scan or changed since the previous one.
    prefix: bytes | None


@dataclass(frozen=True, slots=True)
class OpenState:
    """fstat of a tracked open descriptor."""

    size: int
    links: int
    path: str | None


@dataclass(slots=True)
class Scan:
    seen: dict[FileKey, Seen]
    open_states: dict[FileKey, OpenState]
    unreadable: list[tuple[str, str]]
    seconds: float


def scan(pattern: FilePattern, previous: dict[FileKey, Seen], open_fds: dict[FileKey, int]) -> Scan:
    """List the pattern and stat what is tracked (blocking: runs in a thread)."""
    started = time.monotonic()
    seen: dict[FileKey, Seen] = {}
    unreadable: list[tuple[str, str]] = []
    for match in pattern.list_matching():
        info = match.stat
        key = (info.st_dev, info.st_ino)
        if key in seen:
            continue  # a second hard link to a file already listed
        before = previous.get(key)
        prefix: bytes | None = None
        if before is None or before.size != info.st_size or before.mtime_ns != info.st_mtime_ns:
            if not os.access(match.path, os.R_OK):
                unreadable.append((match.path, "permission denied"))
                continue
            prefix = read_prefix(match.path, key)
            if prefix is None:
                # Replaced between listing and opening, or not openable: looked at again next time.
                continue
        seen[key] = Seen(match.path, key, info.st_size, info.st_mtime_ns, prefix)
    open_states: dict[FileKey, OpenState] = {}
    for key, fd in open_fds.items():
        if key in seen:
            continue
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        path: str | None = None
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if not target.endswith(" (deleted)"):
                path = target
        open_states[key] = OpenState(info.st_size, info.st_nlink, path)
    return Scan(seen, open_states, unreadable, time.monotonic() - started)


def read_block(fd: int, size: int, offset: int, prefix: bytes) -> bytes | None:
    """Up to ``size`` bytes at ``offset``; None when the file no longer starts with ``prefix``.

    Checking the first bytes after reading closes the window in which a file truncated and rewritten
    since the last scan would be read at its old offset, in the middle of its new content.  (When a
    copytruncate raced the read instead, the discarded bytes are read again from the copy.)
    """
    data = os.pread(fd, size, offset)
    if data and prefix and os.pread(fd, len(prefix), 0) != prefix:
        return None
    return data


def find_copy(directory: str, prefix: bytes, min_size: int, exclude: Iterable[FileKey]) -> Seen | None:
    """A file in ``directory`` that starts with ``prefix`` and holds at least ``min_size`` bytes: the copy
    copytruncate made before truncating (blocking: runs in a thread)."""
    excluded = set(exclude)
    best: Seen | None = None
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        if entry.name.lower().endswith(IGNORED_EXTENSIONS):
            continue
        try:
            info = entry.stat()
        except OSError:
            continue
        key = (info.st_dev, info.st_ino)
        if not stat_module.S_ISREG(info.st_mode) or key in excluded or info.st_size < min_size:
            continue
        head = read_prefix(entry.path, key, len(prefix))
        if head != prefix:
            continue
        if best is None or info.st_mtime_ns > best.mtime_ns:
            best = Seen(entry.path, key, info.st_size, info.st_mtime_ns, head)
    return best


def last_line_boundary(path: str, key: FileKey, size: int) -> int:
    """Where END_OF_FILE starts: just after the last newline (so a line being written is not cut)."""
    start = max(0, size - TAIL_SCAN_BYTES)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return size
    try:
        if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != key:
            return size
        tail = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    newline = tail.rfind(b"\n")
    if newline >= 0:
        return start + newline + 1
    return 0 if start == 0 else size


class TrackedFile:
    """One file a flow reads: its identity, descriptor, offsets and the records being cut from it."""

    def __init__(
        self,
        *,
        path: str,
        key: FileKey,
        prefix: bytes,
        offset: int,
        size: int,
        mtime_ns: int,
        cutter: LineCutter,
        builder: BatchBuilder,
    ) -> None:
        self.path = path
        self.key = key
        self.prefix = prefix
        self.fd: int | None = None
        #: Next byte to read.
        self.read_offset = offset
        self.size = size
        self.mtime_ns = mtime_ns
        self.finalizer = OrderedFinalizer(offset)
        self.cutter = cutter
        self.builder = builder
        #: The path no longer names this file (renamed away, deleted, or it is a copytruncate copy).
        self.rotated = False
        #: Checkpoints are written for this file (False once it is deleted or superseded).
        self.persist = True
        #: No more reading: the footer matched, or a truncation without a copy retired it.
        self.finished = False
        #: The last read filled a whole block: read again without waiting for the next scan.
        self.hot = False
        now = time.monotonic()
        self.last_data = now
        self.last_growth = now

    @property
    def file_id(self) -> str:
        return java_file_id(*self.key)

    @property
    def behind(self) -> int:
        return max(0, self.size - self.read_offset)

    def checkpoint_row(self, flow: str) -> CheckpointRow:
        return CheckpointRow(
            flow=flow,
            path=self.path,
            file_id=self.file_id,
            last_modified_millis=self.mtime_ns // 1_000_000,
            size=self.size,
            offset=self.finalizer.checkpoint,
            fingerprint=fingerprint_text(self.prefix),
        )

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def __repr__(self) -> str:
        return f"TrackedFile({self.path!r}, {self.file_id}, offset={self.read_offset})"


def open_file(tracked: TrackedFile) -> str | None:
    """Open ``tracked`` by its path (blocking); None on success, else why it could not be opened."""
    try:
        fd = os.open(tracked.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return exc.strerror or str(exc)
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != tracked.key:
        os.close(fd)
        return "the path now names another file"
    tracked.fd = fd
    return None
