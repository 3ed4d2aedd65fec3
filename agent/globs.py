"""Which files a flow's ``filePattern`` names.

The Java agent applies a Java ``glob:`` to the file name only (``*``, ``?``, ``[a-z]``, ``[!a-z]``,
``{a,b}``, ``\\`` escapes; ``*`` never crosses a ``/``) inside one literal directory.  Here every path
component may be such a glob, and a component that is exactly ``**`` matches any number of
directories, zero included (#78 in the Java agent's tracker).  Compressed files (.gz, .bz2, .zip) are
skipped, as the Java agent does, because they are rotated copies that were already shipped.

Listing does syscalls and can be slow on large trees, so callers run :func:`list_matching` in a thread.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

IGNORED_EXTENSIONS = (".gz", ".bz2", ".zip")
_GLOB_CHARS = frozenset("*?[{\\")


def translate_glob(component: str) -> str:
    """A regular expression for one path component written as a Java glob."""
    out: list[str] = []
    i = 0
    n = len(component)
    in_group = False
    while i < n:
        char = component[i]
        if char == "\\" and i + 1 < n:
            out.append(re.escape(component[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = component.find("]", i + 2 if component[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' in glob {component!r}")
            body = component[i + 1:end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append("[" + body + "]")
            i = end + 1
            continue
        elif char == "{" and not in_group:
            in_group = True
            out.append("(?:")
        elif char == "}" and in_group:
            in_group = False
            out.append(")")
        elif char == "," and in_group:
            out.append("|")
        else:
            out.append(re.escape(char))
        i += 1
    if in_group:
        raise ValueError(f"unclosed '{{' in glob {component!r}")
    return "".join(out)


def is_glob(component: str) -> bool:
    return any(char in _GLOB_CHARS for char in component)


@dataclass(frozen=True, slots=True)
class Match:
    path: str
    stat: os.stat_result


class FilePattern:
    """A compiled ``filePattern``: literal directories are joined, glob components are listed."""

    def __init__(self, pattern: str) -> None:
        path = PurePosixPath(pattern)
        if not path.is_absolute():
            raise ValueError(f"filePattern must be an absolute path, got {pattern!r}")
        self.pattern = pattern
        self.parts: list[str | re.Pattern[str]] = []
        for part in path.parts[1:]:
            if part == "**":
                self.parts.append(part)
            elif is_glob(part):
                self.parts.append(re.compile(translate_glob(part)))
            else:
                self.parts.append(part)
        if self.parts and self.parts[-1] == "**":
            raise ValueError(f"filePattern {pattern!r} ends in '**'; add a file-name pattern such as **/*.log")
        literal: list[str] = []
        for part in path.parts[1:-1]:
            if part == "**" or is_glob(part):
                break
            literal.append(part)
        #: The deepest directory that names no glob: where an operator should look first.
        self.base_directory = "/" + "/".join(literal)

    def list_matching(self) -> list[Match]:
        """Regular files (symlinks followed) the pattern names now, skipping compressed ones."""
        found: dict[str, Match] = {}
        for path in self._walk("/", 0):
            lowered = path.lower()
            if lowered.endswith(IGNORED_EXTENSIONS):
                continue
            try:
                info = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[path] = Match(path, info)
        return list(found.values())

    def _walk(self, directory: str, index: int) -> Iterator[str]:
        part = self.parts[index]
        last = index == len(self.parts) - 1
        if part == "**":
            yield from self._walk(directory, index + 1)
            for child in _subdirectories(directory):
                yield from self._walk(child, index)
            return
        if isinstance(part, str):
            candidate = os.path.join(directory, part)
            if last:
                yield candidate
            elif os.path.isdir(candidate):
                yield from self._walk(candidate, index + 1)
            return
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            if part.fullmatch(entry.name) is None:
                continue
            if last:
                yield entry.path
            elif _is_dir(entry):
                yield from self._walk(entry.path, index + 1)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _subdirectories(directory: str) -> list[str]:
    try:
        # Symlinked directories are not followed under "**": a link cycle would never end.
        return [entry.path for entry in os.scandir(directory) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return []
