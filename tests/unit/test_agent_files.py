"""File patterns, identity helpers and the SQLite checkpoint store (local files only)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from agent.checkpoints import CheckpointRow, CheckpointStore
from agent.errors import CheckpointStoreError
from agent.globs import FilePattern, translate_glob
from agent.restore import plan_restore
from agent.tracking import Seen, fingerprint_text, java_file_id, last_line_boundary, scan


def touch(path: Path, data: bytes = b"x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("glob", "name", "matches"), [
    ("app.log*", "app.log", True),
    ("app.log*", "app.log.1", True),
    ("app.log*", "xapp.log", False),
    ("*.log", "a.log", True),
    ("?.log", "ab.log", False),
    ("[ab].log", "b.log", True),
    ("[!ab].log", "b.log", False),
    ("[!ab].log", "c.log", True),
    ("{access,error}.log", "error.log", True),
    ("{access,error}.log", "other.log", False),
    ("a\\*.log", "a*.log", True),
    ("a\\*.log", "ab.log", False),
])
def test_java_glob_on_names(glob: str, name: str, matches: bool) -> None:
    import re

    assert (re.fullmatch(translate_glob(glob), name) is not None) is matches


def test_pattern_lists_files_and_skips_compressed_ones(tmp_path: Path) -> None:
    for name in ("app.log", "app.log.1", "app.log.2.gz", "app.log.3.BZ2", "other.txt"):
        touch(tmp_path / name)
    (tmp_path / "app.log.d").mkdir()
    found = sorted(os.path.basename(m.path) for m in FilePattern(f"{tmp_path}/app.log*").list_matching())
    assert found == ["app.log", "app.log.1"]


def test_directory_globs_and_double_star(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "x.log")
    touch(tmp_path / "b" / "c" / "y.log")
    touch(tmp_path / "top.log")
    touch(tmp_path / "b" / "c" / "z.txt")
    every = FilePattern(f"{tmp_path}/**/*.log").list_matching()
    assert sorted(os.path.relpath(m.path, tmp_path) for m in every) == ["a/x.log", "b/c/y.log", "top.log"]
    one_level = FilePattern(f"{tmp_path}/*/x.log").list_matching()
    assert [os.path.relpath(m.path, tmp_path) for m in one_level] == ["a/x.log"]
    assert FilePattern(f"{tmp_path}/b/**/*.log").base_directory == f"{tmp_path}/b"


def test_pattern_must_end_in_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ends in"):
        FilePattern(f"{tmp_path}/**")


def test_file_id_is_the_java_agents(tmp_path: Path) -> None:
    info = touch(tmp_path / "f").stat()
    assert java_file_id(info.st_dev, info.st_ino) == f"(dev={info.st_dev:x},ino={info.st_ino})"


def test_end_of_file_starts_after_the_last_complete_line(tmp_path: Path) -> None:
    path = touch(tmp_path / "f", b"one\ntwo\nthr")
    info = path.stat()
    assert last_line_boundary(str(path), (info.st_dev, info.st_ino), info.st_size) == 8
    whole = touch(tmp_path / "g", b"one\n")
    info = whole.stat()
    assert last_line_boundary(str(whole), (info.st_dev, info.st_ino), info.st_size) == 4


def row(offset: int, prefix: bytes | None, file_id: str = "(dev=1,ino=2)", path: str = "/x",
        size: int = 100) -> CheckpointRow:
    return CheckpointRow("flow", path, file_id, 0, size, offset, None if prefix is None else fingerprint_text(prefix))


def test_restore_matches_by_file_id_and_fingerprint() -> None:
    seen = {(1, 2): Seen("/moved", (1, 2), 100, 0, b"hello world")}
    (resume,) = plan_restore([row(40, b"hello")], seen).resumed.values()
    assert (resume.offset, resume.how, resume.listed, resume.seen.path) == (40, "checkpoint", True, "/moved")
    assert not plan_restore([row(40, b"other")], seen).resumed  # inode reused by another file
    assert not plan_restore([row(40, b"hello", file_id="(dev=1,ino=3)")], seen).resumed
    (java,) = plan_restore([row(40, None)], seen).resumed.values()  # a Java agent row: file id alone
    assert java.offset == 40


def test_a_file_shorter_than_its_checkpointed_size_was_truncated() -> None:
    """Files only grow until truncated: shorter than the row's size means truncated, even past the offset."""
    seen = {(1, 2): Seen("/x", (1, 2), 90, 0, b"hello again")}
    plan = plan_restore([row(40, b"hello", size=100)], seen)
    assert not plan.resumed
    (truncated,) = plan.truncated
    assert (truncated.copy, truncated.lost_bytes) == (None, 60)


def identity(path: Path) -> tuple[str, str, int]:
    info = path.stat()
    return java_file_id(info.st_dev, info.st_ino), fingerprint_text(path.read_bytes()[:1024]), info.st_size


def checkpoint(path: Path, offset: int) -> CheckpointRow:
    file_id, fingerprint, size = identity(path)
    return CheckpointRow("flow", str(path), file_id, 0, size, offset, fingerprint)


def test_copytruncate_while_stopped_resumes_the_copy_at_the_offset(tmp_path: Path) -> None:
    log = touch(tmp_path / "app.log", b"".join(b"old line %03d\n" % n for n in range(100)))
    saved = checkpoint(log, 700)  # 1300 bytes, delivered up to 700
    with log.open("ab") as handle:
        handle.write(b"written while stopped\n")
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())  # logrotate copytruncate: copy, then truncate
    log.write_bytes(b"")
    log.write_bytes(b"new generation\n")
    for pattern in ("app.log", "app.log*"):  # the copy outside or inside the pattern
        plan = plan_restore([saved], scan(FilePattern(f"{tmp_path}/{pattern}"), {}, {}).seen)
        (resume,) = plan.resumed.values()
        assert (resume.seen.path, resume.offset, resume.how) == (str(tmp_path / "app.log.1"), 700, "copy")
        assert resume.listed is (pattern == "app.log*")
        (truncated,) = plan.truncated
        assert truncated.lost_bytes == 0 and truncated.copy is not None


def test_a_copy_of_a_file_not_read_at_all_is_read_from_its_start(tmp_path: Path) -> None:
    log = touch(tmp_path / "app.log", b"never read\n")
    saved = checkpoint(log, 0)
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    log.write_bytes(b"")
    (resume,) = plan_restore([saved], scan(FilePattern(f"{tmp_path}/app.log"), {}, {}).seen).resumed.values()
    assert (resume.seen.path, resume.offset) == (str(tmp_path / "app.log.1"), 0)


def test_copytruncate_without_a_copy_counts_the_lost_bytes(tmp_path: Path) -> None:
    log = touch(tmp_path / "app.log", b"x" * 99 + b"\n")
    saved = checkpoint(log, 60)
    log.write_bytes(b"")
    plan = plan_restore([saved], scan(FilePattern(f"{tmp_path}/app.log"), {}, {}).seen)
    assert not plan.resumed
    assert [t.lost_bytes for t in plan.truncated] == [40]


def test_renamed_out_of_the_pattern_while_stopped_is_read_to_its_end(tmp_path: Path) -> None:
    log = touch(tmp_path / "app.log", b"first\nsecond\n")
    saved = checkpoint(log, 6)
    log.rename(tmp_path / "app.log.1")
    touch(tmp_path / "app.log", b"new\n")
    plan = plan_restore([saved], scan(FilePattern(f"{tmp_path}/app.log"), {}, {}).seen)
    (resume,) = plan.resumed.values()
    assert (resume.seen.path, resume.offset, resume.how, resume.listed) == (
        str(tmp_path / "app.log.1"), 6, "renamed", False)
    assert not plan.truncated


def test_a_stale_row_of_a_renamed_file_is_not_taken_for_a_truncation(tmp_path: Path) -> None:
    log = touch(tmp_path / "app.log.1", b"first\nsecond\n")
    current = checkpoint(log, 13)
    stale = CheckpointRow("flow", str(tmp_path / "app.log"), current.file_id, 0, 6, 6, current.fingerprint)
    plan = plan_restore([current, stale], scan(FilePattern(f"{tmp_path}/app.log*"), {}, {}).seen)
    assert [resume.offset for resume in plan.resumed.values()] == [13]
    assert not plan.truncated


# --- the checkpoint store -------------------------------------------------------------------------------


def test_store_reads_and_extends_a_java_agent_database(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints"
    java = sqlite3.connect(path)
    java.execute("create table if not exists FILE_CHECKPOINTS(flow text, path text, fileId text, "
                 "lastModifiedTime bigint, size bigint, offset bigint, lastUpdated datetime, primary key (flow, path))")
    java.execute("insert into FILE_CHECKPOINTS values ('kinesis:s:/var/log/app.log*', '/var/log/app.log', "
                 "'(dev=fd01,ino=42)', 1700000000000, 500, 400, strftime('%Y-%m-%d %H:%M:%f', 'now'))")
    java.commit()
    java.close()
    store = CheckpointStore(path)
    store.open()
    try:
        (restored,) = store.load("kinesis:s:/var/log/app.log*")
        assert restored == CheckpointRow("kinesis:s:/var/log/app.log*", "/var/log/app.log", "(dev=fd01,ino=42)",
                                         1700000000000, 500, 400, None)
    finally:
        asyncio.run(store.close())
    mode = sqlite3.connect(path).execute("pragma journal_mode").fetchone()[0]
    assert mode == "wal"


def test_store_writes_rows_from_memory(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "db" / "checkpoints")
    store.open()

    async def scenario() -> None:
        store.start()
        store.put(row(10, b"a", path="/a"))
        store.put(row(20, b"a", path="/a"))
        store.put(row(5, b"b", path="/b"))
        store.remove("flow", "/b")
        await store.flush()

    asyncio.run(scenario())
    asyncio.run(store.close())
    assert rows_in(tmp_path / "db" / "checkpoints") == [("/a", 20)]


def test_a_failed_checkpoint_save_is_retried_with_newer_changes_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from agent import checkpoints

    monkeypatch.setattr(checkpoints, "RETRY_DELAY_SECONDS", 0.01)
    path = tmp_path / "checkpoints"
    store = CheckpointStore(path)
    store.open()
    commit = store._commit
    attempts: list[dict[tuple[str, str], CheckpointRow | None]] = []

    def locked_twice(changes: dict[tuple[str, str], CheckpointRow | None]) -> None:
        attempts.append(dict(changes))
        if len(attempts) == 1:  # the checkpoint of /a moves on while the first save fails
            loops[0].call_soon_threadsafe(store.put, row(20, b"a", path="/a"))
        if len(attempts) <= 2:
            raise sqlite3.OperationalError("database is locked")
        commit(changes)

    store._commit = locked_twice  # type: ignore[method-assign]
    loops: list[asyncio.AbstractEventLoop] = []

    async def scenario() -> None:
        loops.append(asyncio.get_running_loop())
        store.start()
        store.put(row(10, b"a", path="/a"))
        store.put(row(5, b"b", path="/b"))
        await asyncio.wait_for(store.flush(), 30)

    caplog.set_level(logging.ERROR, logger="agent")
    asyncio.run(scenario())
    asyncio.run(store.close())
    assert (store.failures, store.commits) == (2, 1)
    assert attempts[1][("flow", "/a")] == row(20, b"a", path="/a"), "the newer row of /a wins over the failed one"
    assert attempts[1][("flow", "/b")] == row(5, b"b", path="/b"), "what failed is kept"
    assert rows_in(path) == [("/a", 20), ("/b", 5)]
    assert [record.getMessage() for record in caplog.records if "cannot save checkpoints" in record.getMessage()]
    assert len(caplog.records) == 1, "once a minute, not per failure"


def test_store_expires_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints"
    store = CheckpointStore(path, ttl_days=7)
    store.open()
    asyncio.run(_put_and_close(store, [row(1, b"a", path="/old"), row(2, b"b", path="/new")]))
    db = sqlite3.connect(path)
    db.execute("update FILE_CHECKPOINTS set lastUpdated = datetime('now', '-8 days') where path = '/old'")
    db.commit()
    db.close()
    store = CheckpointStore(path, ttl_days=7)
    store.open()
    assert store.delete_expired() == 1
    asyncio.run(store.close())
    assert rows_in(path) == [("/new", 2)]


def rows_in(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("select path, offset from FILE_CHECKPOINTS order by path").fetchall()


async def _put_and_close(store: CheckpointStore, rows: list[CheckpointRow]) -> None:
    store.start()
    for item in rows:
        store.put(item)
    await store.close()


def test_uncreatable_directory_says_what_to_do(tmp_path: Path) -> None:
    blocker = touch(tmp_path / "not-a-directory")
    with pytest.raises(CheckpointStoreError,
                       match=r"cannot create the checkpoint directory .*give the agent's user write access"):
        CheckpointStore(blocker / "sub" / "checkpoints").open()


def test_checkpoint_path_that_is_a_directory_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointStoreError, match=r"cannot open the checkpoint database .*set checkpointFile"):
        CheckpointStore(tmp_path / "checkpoints").open()
