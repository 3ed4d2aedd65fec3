"""Files the agent creates are private to its user, whatever the umask it was started with.

A service manager may start the agent with umask 000 (systemd's default for services is 0022, but
unit files, init scripts and containers set their own).  The checkpoint database records which log
files exist and how far they were shipped, and a world-writable one lets any local user make the agent
skip or re-send data; the agent's own log names files and streams.  So directories the agent creates
are 0700, the checkpoint database and its WAL files 0600 and the log file 0640, set explicitly after
creation rather than left to the umask.  Existing files keep their modes (an operator may have chosen
them), but a checkpoint file or directory that others can write is reported at start-up.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TextIO

from kpl.logs import get_logger

log = get_logger(__name__)

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
LOG_FILE_MODE = 0o640


def make_private_directories(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700 (existing ones are left alone)."""
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: not ours to change
        os.chmod(path, PRIVATE_DIRECTORY_MODE)


def create_private_file(path: Path, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Create ``path`` empty with exactly ``mode`` if it does not exist; True when it was created here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def open_log_file(path: str | os.PathLike[str]) -> TextIO:
    """Open the agent's log file for appending; a new file is created 0640 whatever the umask."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOG_FILE_MODE)
        os.fchmod(fd, LOG_FILE_MODE)
    except FileExistsError:
        fd = os.open(path, flags)
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


def writable_by_others(path: Path) -> str | None:
    """``"group"``, ``"world"`` or ``"group and world"`` when others may write ``path``; else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    who = [name for bit, name in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "world")) if mode & bit]
    return " and ".join(who) or None


def warn_if_writable_by_others(*paths: Path) -> None:
    for path in paths:
        who = writable_by_others(path)
        if who is not None:
            mode = stat.S_IMODE(path.stat().st_mode)
            log.warning("checkpoint path is writable by others: another user could make the agent skip or re-send "
                        "data; fix it with chmod go-w", path=str(path), mode=f"{mode:04o}", writable_by=who)
