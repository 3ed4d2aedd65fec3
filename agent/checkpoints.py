"""Checkpoints in SQLite: the Java agent's FILE_CHECKPOINTS table, plus a content fingerprint.

The table keeps the Java agent's layout (one row per flow and path, keyed by the flow id) so that an
existing database migrates by pointing ``checkpointFile`` at it, and so that the Java agent could read
ours back.  One nullable column is added: ``fingerprint``, which tells a file from another that reuses
its inode.  The database runs in WAL mode with ``synchronous=NORMAL``: a killed agent loses nothing
that was committed, and commits cost no fsync.

The running agent changes rows in memory (``put``/``remove``) and a writer task commits whatever
changed in one transaction, in a thread of its own, as fast as commits complete; so a checkpoint that
moved is on disk within a commit or two, and the event loop never waits for SQLite.  The default
location is under /var/lib: the Java agent's /var/run is a tmpfs that forgets everything at reboot.
The directory and database are created private to the agent's user (agent.private_files).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, stop_never, wait_fixed

from agent.errors import CheckpointStoreError
from agent.private_files import create_private_file, make_private_directories, warn_if_writable_by_others
from kpl.logs import get_logger
from kpl.retry import last_error, retrying

log = get_logger(__name__)

_CREATE = """
create table if not exists FILE_CHECKPOINTS(
       flow text,
       path text,
       fileId text,
       lastModifiedTime bigint,
       size bigint,
       offset bigint,
       lastUpdated datetime,
       fingerprint text,
       primary key (flow, path))
"""
_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_UPSERT = f"""
insert into FILE_CHECKPOINTS (flow, path, fileId, lastModifiedTime, size, offset, lastUpdated, fingerprint)
values (?, ?, ?, ?, ?, ?, {_NOW}, ?)
on conflict (flow, path) do update set fileId = excluded.fileId, lastModifiedTime = excluded.lastModifiedTime,
    size = excluded.size, offset = excluded.offset, lastUpdated = excluded.lastUpdated,
    fingerprint = excluded.fingerprint
"""
RETRY_DELAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    flow: str
    path: str
    #: The Java agent's file id: ``(dev=<hex>,ino=<decimal>)``.
    file_id: str
    last_modified_millis: int
    size: int
    offset: int
    #: ``<length>:<hex digest>`` of the file's first bytes; None in rows written by the Java agent.
    fingerprint: str | None


def _fix_hint(path: Path) -> str:
    return (f"create the directory and give the agent's user write access to it (for example "
            f"'sudo install -d -o aws-kinesis-agent-user -m 700 {path.parent}'), or set checkpointFile in "
            f"agent.json to a writable path")


class CheckpointStore:
    """The FILE_CHECKPOINTS table, written from memory by a background writer."""

    def __init__(self, path: Path, *, ttl_days: int = 7, query_timeout: float = 30.0) -> None:
        self.path = path
        self.ttl_days = ttl_days
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        self._connection: sqlite3.Connection | None = None
        self._query_timeout = query_timeout
        self._changes: dict[tuple[str, str], CheckpointRow | None] = {}
        self._changed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.commits = 0
        self.failures = 0

    # --- opening (blocking; done once at start-up) --------------------------------------------------

    def open(self) -> None:
        """Create the directory, the database and the table; CheckpointStoreError says how to fix a failure."""
        self._executor.submit(self._open).result()

    def _open(self) -> None:
        try:
            make_private_directories(self.path.parent)
        except OSError as exc:
            raise CheckpointStoreError(
                f"cannot create the checkpoint directory {self.path.parent}: {exc.strerror}; {_fix_hint(self.path)}"
            ) from None
        # Created here, the database is 0600 whatever the umask, and SQLite gives its WAL files the
        # database's mode.  (A path that is a directory or not writable fails just below, with the fix.)
        with contextlib.suppress(OSError):
            create_private_file(self.path)
        warn_if_writable_by_others(self.path.parent, self.path, *self._wal_files())
        try:
            connection = sqlite3.connect(self.path, timeout=self._query_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise CheckpointStoreError(
                f"cannot open the checkpoint database {self.path}: {exc}; {_fix_hint(self.path)}"
            ) from None
        try:
            connection.execute("pragma journal_mode=WAL")
            connection.execute("pragma synchronous=NORMAL")
            connection.execute(_CREATE)
            columns = {row[1] for row in connection.execute("pragma table_info(FILE_CHECKPOINTS)")}
            if "fingerprint" not in columns:
                connection.execute("alter table FILE_CHECKPOINTS add column fingerprint text")
            # Fail now, not at the first checkpoint, when the database is readable but not writable.
            connection.execute("begin immediate")
            connection.execute("commit")
        except sqlite3.Error as exc:
            connection.close()
            raise CheckpointStoreError(
                f"cannot write the checkpoint database {self.path}: {exc}; {_fix_hint(self.path)}"
            ) from None
        self._connection = connection

    def _wal_files(self) -> list[Path]:
        return [path for path in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm")) if path.exists()]

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise CheckpointStoreError("the checkpoint store is not open")
        return self._connection

    # --- start-up reads (blocking) ------------------------------------------------------------------

    def load(self, flow: str) -> list[CheckpointRow]:
        return self._executor.submit(self._load, flow).result()

    def _load(self, flow: str) -> list[CheckpointRow]:
        rows = self._db().execute(
            "select flow, path, fileId, lastModifiedTime, size, offset, fingerprint from FILE_CHECKPOINTS "
            "where flow = ? order by lastUpdated desc", (flow,)
        ).fetchall()
        return [CheckpointRow(*row) for row in rows]

    def delete_expired(self) -> int:
        """Delete rows not updated for ``ttl_days`` (the Java agent's checkpointTimeToLiveDays)."""
        def run() -> int:
            cursor = self._db().execute(
                "delete from FILE_CHECKPOINTS where datetime(lastUpdated, ?) < CURRENT_TIMESTAMP",
                (f"+{self.ttl_days} days",),
            )
            return cursor.rowcount
        return self._executor.submit(run).result()

    # --- running ----------------------------------------------------------------------------------

    def put(self, row: CheckpointRow) -> None:
        self._changes[(row.flow, row.path)] = row
        self._idle.clear()
        self._changed.set()

    def remove(self, flow: str, path: str) -> None:
        self._changes[(flow, path)] = None
        self._idle.clear()
        self._changed.set()

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="checkpoint-writer")

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_error_log = -60.0

        def failed(retry_state: RetryCallState) -> None:
            nonlocal last_error_log
            if time.monotonic() - last_error_log > 60:
                last_error_log = time.monotonic()
                error = last_error(retry_state)
                log.error("cannot save checkpoints; retrying (data is not lost, but a restart now would "
                          "re-send what was delivered since the last save)", path=str(self.path), error=str(error))

        while True:
            if not self._changes:
                self._idle.set()
                await self._changed.wait()
            # stop_never: failed checkpoint saves are retried until the database takes them (docs/agent.md,
            # kinesis_agent_checkpoint_save_failures_total); close() cancels the writer.
            async for attempt in retrying(wait=wait_fixed(RETRY_DELAY_SECONDS), stop=stop_never,
                                          retry_on=lambda error: isinstance(error, sqlite3.Error), before_sleep=failed):
                with attempt:
                    self._changed.clear()
                    changes, self._changes = self._changes, {}
                    try:
                        await loop.run_in_executor(self._executor, self._commit, changes)
                    except sqlite3.Error:
                        self.failures += 1
                        for key, row in changes.items():  # newer changes of the same rows win
                            self._changes.setdefault(key, row)
                        raise
                    self.commits += 1

    def _commit(self, changes: dict[tuple[str, str], CheckpointRow | None]) -> None:
        db = self._db()
        upserts: list[tuple[Any, ...]] = []
        deletes: list[tuple[str, str]] = []
        for key, row in changes.items():
            if row is None:
                deletes.append(key)
            else:
                upserts.append((row.flow, row.path, row.file_id, row.last_modified_millis, row.size, row.offset,
                                row.fingerprint))
        db.execute("begin")
        try:
            if deletes:
                db.executemany("delete from FILE_CHECKPOINTS where flow = ? and path = ?", deletes)
            if upserts:
                db.executemany(_UPSERT, upserts)
            db.execute("commit")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("rollback")
            raise

    async def flush(self) -> None:
        """Return once everything put so far is committed (or the writer is not running)."""
        if self._writer is None or self._writer.done():
            if self._changes:
                changes, self._changes = self._changes, {}
                await asyncio.get_running_loop().run_in_executor(self._executor, self._commit, changes)
            return
        await self._idle.wait()

    async def close(self) -> None:
        """Commit what is pending, stop the writer and close the database."""
        try:
            await asyncio.wait_for(self.flush(), timeout=max(5.0, self._query_timeout))
        finally:
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
                self._writer = None
            if self._changes:
                changes, self._changes = self._changes, {}
                with contextlib.suppress(sqlite3.Error):
                    self._executor.submit(self._commit, changes).result()
            if self._connection is not None:
                connection = self._connection
                self._connection = None
                self._executor.submit(connection.close).result()
            self._executor.shutdown(wait=True)
