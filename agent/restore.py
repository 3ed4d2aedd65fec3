"""Where each file resumes after a restart, including rotations that happened while the agent was stopped.

A checkpoint row names a file by path, file id (device, inode) and fingerprint (a digest of its first
bytes), and gives the offset up to which it was delivered.  At start-up every row is matched with what
is on disk now:

* **the same file**: a listed file with the row's file id and fingerprint, at least as long as the row
  says it was.  It resumes at the checkpointed offset, wherever it now lives (a rename within the
  pattern, as logrotate's ``create`` does, keeps the inode);
* **renamed out of the pattern**: the row's file id and fingerprint, found next to the checkpointed path
  but no longer matching the pattern (``app.log`` became ``app.log.1`` and the pattern is ``app.log``).
  Its unread tail is read, then it is let go, as the running agent does with a file renamed away;
* **copytruncate**: the row's inode is listed but shorter than it was, or with other first bytes.  Its
  old content is in a copy: a file in the listing or next to the checkpointed path that starts with the
  fingerprinted bytes and holds at least the checkpointed offset.  The copy resumes at that offset and
  the truncated file starts again at 0, so nothing is sent twice and nothing is lost.  Without a copy
  the unread bytes are lost, and a warning says how many.

Rows the Java agent wrote carry no fingerprint: they match by file id alone (the Java agent's own rule),
and a copy of such a file cannot be recognised.  Listing directories and reading first bytes is
blocking: :func:`plan_restore` runs in a thread.
"""

from __future__ import annotations

import os
import re
import stat as stat_module
from dataclasses import dataclass, field

from agent.checkpoints import CheckpointRow
from agent.globs import IGNORED_EXTENSIONS
from agent.tracking import FileKey, Seen, fingerprint_text, java_file_id, read_prefix

_FILE_ID = re.compile(r"\(dev=([0-9a-f]+),ino=([0-9]+)\)")


@dataclass(frozen=True, slots=True)
class Resume:
    """A file that resumes at a checkpointed offset."""

    seen: Seen
    offset: int
    row: CheckpointRow
    #: "checkpoint" (the same file), "renamed" (found outside the pattern) or "copy" (copytruncate).
    how: str
    #: False when the file is outside the pattern: the flow reads it to its end and lets it go.
    listed: bool


@dataclass(frozen=True, slots=True)
class Truncated:
    """A checkpointed file truncated while the agent was stopped, and what became of its unread bytes."""

    row: CheckpointRow
    #: The copy the unread bytes are read from, if one was found.
    copy: Seen | None
    #: At least this many bytes after the checkpoint were never read (0 when read to its end, or copied).
    lost_bytes: int


@dataclass(slots=True)
class RestorePlan:
    resumed: dict[FileKey, Resume] = field(default_factory=dict)
    truncated: list[Truncated] = field(default_factory=list)


def parse_file_id(file_id: str) -> FileKey | None:
    match = _FILE_ID.fullmatch(file_id)
    return (int(match.group(1), 16), int(match.group(2))) if match else None


def _fingerprint_length(row: CheckpointRow) -> int:
    return 0 if row.fingerprint is None else int(row.fingerprint.split(":", 1)[0])


def fingerprint_matches(row: CheckpointRow, prefix: bytes | None) -> bool:
    """True when ``prefix`` starts with the bytes ``row`` fingerprinted (always for a Java agent row)."""
    if row.fingerprint is None:
        return True
    if prefix is None:
        return False
    length = _fingerprint_length(row)
    return len(prefix) >= length and fingerprint_text(prefix[:length]) == row.fingerprint


def is_same_file(row: CheckpointRow, seen: Seen) -> bool:
    """``seen`` is the file ``row`` checkpointed, not truncated since: a file only grows until truncated."""
    return (row.file_id == java_file_id(*seen.key) and fingerprint_matches(row, seen.prefix)
            and seen.size >= max(row.offset, row.size))


def plan_restore(rows: list[CheckpointRow], seen: dict[FileKey, Seen]) -> RestorePlan:
    """Match checkpoint rows (newest first) with the listed files and with the rows' directories."""
    plan = RestorePlan()
    used: set[int] = set()
    for key, current in seen.items():
        if current.prefix is None:
            continue
        for index, row in enumerate(rows):
            if index not in used and is_same_file(row, current):
                used.add(index)
                plan.resumed[key] = Resume(current, row.offset, row, "checkpoint", listed=True)
                break
    listed_ids = {java_file_id(*key): key for key in seen}
    directories: dict[str, list[Seen]] = {}
    handled: set[str] = set()
    for index, row in enumerate(rows):
        if index in used or row.file_id in handled:
            continue
        handled.add(row.file_id)  # an older row of the same inode is stale (a path the file left)
        truncated_key = listed_ids.get(row.file_id)
        if truncated_key is not None:
            if truncated_key in plan.resumed or seen[truncated_key].path != row.path:
                continue  # the inode is another file's now, or this row is stale
            copy = None
            if _fingerprint_length(row) > 0:  # no first bytes (a Java row, an empty file): no copy to know
                copy = _find_copy(row, seen, plan, directories, exclude=truncated_key)
            if copy is not None:
                plan.resumed[copy.key] = Resume(copy, row.offset, row, "copy", listed=copy.key in seen)
            unread = 0 if copy is not None else max(0, row.size - row.offset)
            plan.truncated.append(Truncated(row, copy, unread))
        elif row.fingerprint is not None:
            renamed = _find_renamed(row, seen, plan, directories)
            if renamed is not None:
                plan.resumed[renamed.key] = Resume(renamed, row.offset, row, "renamed", listed=False)
    return plan


def _directory(path: str, directories: dict[str, list[Seen]]) -> list[Seen]:
    """Regular files next to ``path`` (first bytes not read yet), listed once per restore."""
    directory = os.path.dirname(path)
    if directory not in directories:
        entries: list[Seen] = []
        try:
            scanned = list(os.scandir(directory))
        except OSError:
            scanned = []
        for entry in scanned:
            if entry.name.lower().endswith(IGNORED_EXTENSIONS):
                continue
            try:
                info = entry.stat()
            except OSError:
                continue
            if stat_module.S_ISREG(info.st_mode):
                entries.append(Seen(entry.path, (info.st_dev, info.st_ino), info.st_size, info.st_mtime_ns, None))
        directories[directory] = entries
    return directories[directory]


def _with_prefix(candidate: Seen) -> Seen | None:
    prefix = read_prefix(candidate.path, candidate.key)
    if prefix is None:
        return None
    return Seen(candidate.path, candidate.key, candidate.size, candidate.mtime_ns, prefix)


def _find_renamed(row: CheckpointRow, seen: dict[FileKey, Seen], plan: RestorePlan,
                  directories: dict[str, list[Seen]]) -> Seen | None:
    key = parse_file_id(row.file_id)
    if key is None:
        return None
    for candidate in _directory(row.path, directories):
        if candidate.key != key or key in seen or key in plan.resumed or candidate.size <= row.offset:
            continue
        found = _with_prefix(candidate)
        if found is not None and fingerprint_matches(row, found.prefix) and found.size >= row.size:
            return found
    return None


def _find_copy(row: CheckpointRow, seen: dict[FileKey, Seen], plan: RestorePlan,
               directories: dict[str, list[Seen]], *, exclude: FileKey) -> Seen | None:
    """The newest file that starts with the bytes ``row`` fingerprinted and holds its offset."""
    matched = {resume.seen.key for resume in plan.resumed.values()}

    def usable(candidate: Seen) -> bool:
        return candidate.key != exclude and candidate.key not in matched and candidate.size >= row.offset

    listed = [candidate for candidate in seen.values()
              if usable(candidate) and fingerprint_matches(row, candidate.prefix)]
    if not listed:
        for candidate in _directory(row.path, directories):
            if usable(candidate) and candidate.key not in seen:
                found = _with_prefix(candidate)
                if found is not None and fingerprint_matches(row, found.prefix):
                    listed.append(found)
    return max(listed, key=lambda candidate: candidate.mtime_ns, default=None)
