"""The one reader of Java ``.properties`` files, shared by the producer's and the worker's config loaders.

KPL and KCL configurations are files that ``java.util.Properties.load`` reads, so the rules here are
that method's, not an approximation of them: a file that means something to the Java libraries means
the same here.

* Natural lines end at ``\\r\\n``, ``\\r`` or ``\\n`` (nothing else: not ``\\v``, ``\\x85``, ``\\u2028``).
* Whitespace is space, ``\\t`` and ``\\f``; leading whitespace of a line is ignored.
* A line whose first non-blank character is ``#`` or ``!`` is a comment; a comment is never continued.
* A line ending in an odd number of backslashes continues on the next line, whose leading whitespace
  is dropped (an even number is escaped backslashes: no continuation).
* The key ends at the first unescaped ``=``, ``:`` or whitespace; whitespace around the separator is
  skipped; a line with only a key has the empty value.
* In keys and values ``\\t \\n \\r \\f`` and ``\\uXXXX`` are escapes and ``\\c`` is ``c`` for any other
  character (``\\=``, ``\\:``, ``\\ ``, ``\\#``, ``\\\\``).  A malformed ``\\uXXXX`` is an error, as in Java.

Two documented divergences, both for files written by people rather than by ``Properties.store``: the
text is UTF-8 (Java's ``load(InputStream)`` reads ISO-8859-1) with a leading byte-order mark dropped,
and unescaped trailing whitespace of a value is stripped (Java keeps it; write ``\\ `` to keep a space).

A key set twice is not an error: as in Java the last value wins, and :func:`last_wins` logs a warning
naming the key and both lines, because a file that says two things usually has a mistake in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from kpl.errors import ConfigurationError
from kpl.logs import get_logger

__all__ = ["PropertyEntry", "last_wins", "parse_properties", "read_properties"]

log = get_logger(__name__)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLANK = " \t\f"
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_HEX = frozenset("0123456789abcdefABCDEF")


class PropertyEntry(NamedTuple):
    """One key-value pair of a properties text, with the natural line its logical line starts on."""

    line: int
    key: str
    value: str


def read_properties(path: str | Path, *, what: str = "properties file") -> list[PropertyEntry]:
    """Every entry of the file at ``path``, in file order; ``what`` names the file in errors."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {source}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(data[:exc.start].decode("utf-8", "replace"))) + 1
        raise ConfigurationError(
            f"{source}:{line}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        ) from None
    return parse_properties(text, where=str(source))


def parse_properties(text: str, *, where: str = "") -> list[PropertyEntry]:
    """Every entry of a properties text, in order; ``where`` (a file name) prefixes error messages."""
    return [_entry(number, logical, f"{where}:{number}" if where else f"line {number}")
            for number, logical in _logical_lines(text.removeprefix("\ufeff"))]


def last_wins(
    entries: Iterable[PropertyEntry], where: str, setting: Callable[[str], str] = str,
) -> dict[str, PropertyEntry]:
    """setting -> the entry that sets it last, ordered by those entries' lines; a warning per overridden one.

    ``setting`` maps a key to what it sets, so that two names of one setting (a key and its alias)
    count as the same; by default every key is its own setting.
    """
    winners: dict[str, PropertyEntry] = {}
    for entry in entries:
        name = setting(entry.key)
        earlier = winners.pop(name, None)
        if earlier is not None:
            log.warning("properties key set twice; the last value wins", file=where, key=entry.key,
                        earlier_key=earlier.key, lines=[earlier.line, entry.line])
        winners[name] = entry
    return winners


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of its first natural line, logical line) for each line holding an entry.

    As in Java's ``LineReader``: a logical line holding nothing yet (only continued backslashes) is
    still at its start, so a blank line or a comment line after it is skipped like any other.
    """
    lines = _LINE_BREAK.split(text)
    count = len(lines) - 1 if lines[-1] == "" else len(lines)  # a final line break ends the text, no line
    pending: list[str] = []
    start = 0
    for index in range(count):
        line = lines[index].lstrip(_BLANK)
        if not any(pending):
            pending = []
            if not line or line[0] in "#!":
                continue
            start = index + 1
        if _continues(line):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, "".join(pending)
        pending = []
    if pending:  # continued on the last line: the backslash escapes nothing (Java drops it)
        yield start, "".join(pending)


def _continues(line: str) -> bool:
    """True when the line ends in an odd number of backslashes (the last one escapes the line end)."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _entry(number: int, logical: str, where: str) -> PropertyEntry:
    escaped = False
    key_end = value_start = len(logical)
    separated = False
    for position, char in enumerate(logical):
        if not escaped and char in "=:":
            key_end, value_start, separated = position, position + 1, True
            break
        if not escaped and char in _BLANK:
            key_end, value_start = position, position + 1
            break
        escaped = char == "\\" and not escaped
    while value_start < len(logical):
        char = logical[value_start]
        if char not in _BLANK:
            if separated or char not in "=:":
                break
            separated = True
        value_start += 1
    value_end = len(logical)
    while value_end > value_start and logical[value_end - 1] in _BLANK and not _escaped(logical, value_end - 1):
        value_end -= 1
    return PropertyEntry(number, _unescape(logical[:key_end], where),
                         _unescape(logical[value_start:value_end], where))


def _escaped(text: str, position: int) -> bool:
    """True when the character at ``position`` follows an odd run of backslashes."""
    start = position
    while start > 0 and text[start - 1] == "\\":
        start -= 1
    return (position - start) % 2 == 1


def _unescape(text: str, where: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    position = 0
    surrogates = False
    while position < len(text):
        char = text[position]
        position += 1
        if char != "\\":
            out.append(char)
            continue
        if position == len(text):
            break  # a lone final backslash (only at the very end of a file) escapes nothing
        char = text[position]
        position += 1
        if char == "u":
            digits = text[position:position + 4]
            if len(digits) < 4 or not _HEX.issuperset(digits):
                raise ConfigurationError(f"{where}: malformed \\uXXXX escape \\u{digits} (four hex digits expected)")
            code = int(digits, 16)
            surrogates = surrogates or 0xD800 <= code <= 0xDFFF
            out.append(chr(code))
            position += 4
        else:
            out.append(_SIMPLE_ESCAPES.get(char, char))
    result = "".join(out)
    if surrogates:
        # Java strings are UTF-16: \uD83D\uDE00 is one character (a lone surrogate stays as it is).
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return result
