"""``executableName``: the command line of MultiLang mode's child processes.

The MultiLangDaemon splits ``executableName`` on spaces and starts the result as it is (no shell, the
daemon's environment and working directory).  The program (the first word) is looked for here as a
user of amazon-kclpy's samples expects: a relative name in the properties file's directory first
(``executableName = sample_kclpy_app.py`` beside ``sample.properties``), then, for a bare name, on
``PATH`` (``executableName = python3 app.py``).  The other words are passed as written, so a relative
path among them is relative to the worker's working directory, as with the Java daemon.

Everything is checked before the worker starts: a program that is missing or not executable is a
configuration error naming what was tried.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kpl.errors import ConfigurationError


def resolve_command(executable_name: str, directory: Path) -> list[str]:
    """The argument vector for ``executable_name``, its program resolved to an executable file's path."""
    words = [word for word in executable_name.split(" ") if word]
    if not words:
        raise ConfigurationError("executableName is empty")
    program, arguments = words[0], words[1:]
    path = Path(program)
    tried: list[str] = []
    found: Path | None = None
    if path.is_absolute():
        tried.append(str(path))
        found = path if path.exists() else None
    else:
        beside = directory / path
        tried.append(str(beside))
        if beside.exists():
            found = beside
        elif len(path.parts) == 1:
            tried.append("PATH")
            on_path = shutil.which(program)
            found = Path(on_path) if on_path else None
    if found is None:
        raise ConfigurationError(f"executableName {program!r} not found (looked for {' and '.join(tried)})")
    if found.is_dir() or not os.access(found, os.X_OK):
        raise ConfigurationError(
            f"executableName {program!r} resolves to {found}, which is not an executable file: make it one "
            f"(chmod +x, with a #! line) or name its interpreter (executableName = python3 {program})"
        )
    # Not resolved further: a symlink is run as named (a venv's bin/python finds its venv through it).
    return [str(found.absolute()), *arguments]
