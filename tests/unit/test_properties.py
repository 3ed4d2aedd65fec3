"""kpl.properties: the one reader of Java .properties files, checked against java.util.Properties.load's rules.

Property-based: whatever a Java-style writer writes reads back equal; arbitrary text never makes the
reader fail except with a ConfigurationError for a malformed ``\\uXXXX`` (as Java's IllegalArgumentException);
line ends and a byte-order mark change nothing.  Golden cases are the examples of the
``java.util.Properties.load(Reader)`` javadoc.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpl.errors import ConfigurationError
from kpl.logs import EVENT_ATTRIBUTE
from kpl.properties import PropertyEntry, last_wins, parse_properties, read_properties

pytestmark = pytest.mark.unit

#: Characters that exercise every rule: separators, comment marks, backslashes, Java whitespace, line
#: ends, characters Python's str.splitlines() would split on and Java does not, non-ASCII, non-BMP.
SPECIAL = "=:#! \\\t\f\n\r\v\x1c\x85\u2028\u00e9\u4e2d\U0001f600"
CHARACTERS = st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=("Cs",)))
TEXTS = st.text(CHARACTERS, max_size=20)


def escape(text: str, *, key: bool, escape_unicode: bool) -> str:
    """What Properties.store writes for a key or value (saveConvert), plus escaped trailing blanks.

    Java escapes only leading spaces of a value; this reader strips unescaped trailing blanks of a
    value (a documented divergence), so the writer escapes those too.
    """
    trailing = len(text) - len(text.rstrip(" \t\f"))
    out = []
    for position, char in enumerate(text):
        if char == " ":
            out.append("\\ " if key or position == 0 or position >= len(text) - trailing else " ")
        elif char in "\t\n\r\f":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\f": "f"}[char])
        elif char in "=:#!\\":
            out.append("\\" + char)
        elif escape_unicode and not " " <= char <= "~":
            encoded = char.encode("utf-16-be")
            out.extend(f"\\u{encoded[i:i + 2].hex().upper()}" for i in range(0, len(encoded), 2))
        else:
            out.append(char)
    if not key and out and out[0] == " ":
        out[0] = "\\ "
    return "".join(out)


def split_lines(line: str, cuts: list[int], indent: str) -> str:
    """``line`` continued over several natural lines at the given cut points (each continuation indented).

    A cut goes only where it cannot change the meaning: not inside an escape, not before a blank (the
    continuation's leading blanks are dropped).
    """
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        if start < cut < len(line) and line[cut] not in " \t\f" and not _inside_escape(line, cut):
            pieces.append(line[start:cut])
            start = cut
    pieces.append(line[start:])
    return f"\\\n{indent}".join(pieces)


def _inside_escape(line: str, cut: int) -> bool:
    run = len(line[:cut]) - len(line[:cut].rstrip("\\"))
    return run % 2 == 1 or bool(re.search(r"\\u[0-9A-Fa-f]{0,3}$", line[max(0, cut - 5):cut]))


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    properties = draw(st.dictionaries(TEXTS, TEXTS, max_size=6))
    escape_unicode = draw(st.booleans())
    separator = draw(st.sampled_from(["=", " = ", ":", " : ", " ", "\t", "\f="]))
    lines = []
    for key, value in properties.items():
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["# a comment = x", "! another: y \\", "", "   "])))
        # an empty key needs = or : (Properties.store writes key=value), or the line is blank
        line = escape(key, key=True, escape_unicode=escape_unicode) + (separator if key else "=") + escape(
            value, key=False, escape_unicode=escape_unicode)
        cuts = draw(st.lists(st.integers(0, max(0, len(line) - 1)), max_size=3))
        lines.append(draw(st.sampled_from(["", "  ", "\t"])) + split_lines(line, cuts, draw(st.sampled_from(
            ["", "    ", "\t\f "]))))
    return properties, draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


@given(documents())
def test_what_a_java_style_writer_writes_reads_back_equal(document: tuple[dict[str, str], str]) -> None:
    properties, text = document
    entries = parse_properties(text)
    assert {entry.key: entry.value for entry in entries} == properties
    assert len(entries) == len(properties)


@given(st.text(st.one_of(st.sampled_from(SPECIAL + "u0aF"), st.characters()), max_size=200))
def test_arbitrary_text_reads_with_ascending_line_numbers(text: str) -> None:
    natural_lines = len(re.split(r"\r\n|\r|\n", text))
    try:
        entries = parse_properties(text)
    except ConfigurationError as exc:
        assert "\\u" in text, "only a malformed \\uXXXX escape is an error"
        line = int(re.match(r"line (\d+): malformed \\uXXXX escape", str(exc)).group(1))  # type: ignore[union-attr]
        assert 1 <= line <= natural_lines
        return
    lines = [entry.line for entry in entries]
    assert lines == sorted(set(lines))
    assert all(1 <= line <= natural_lines for line in lines)


@given(st.lists(st.text(st.characters(exclude_characters="\r\n"), max_size=30), max_size=8))
def test_line_ends_and_a_byte_order_mark_change_nothing(lines: list[str]) -> None:
    def read(text: str) -> list[PropertyEntry] | str:
        try:
            return parse_properties(text)
        except ConfigurationError as exc:
            return str(exc)

    expected = read("\n".join(lines))
    for end in ("\r\n", "\r"):
        assert read(end.join(lines)) == expected
        assert read("\ufeff" + end.join(lines)) == expected


@pytest.mark.parametrize("backslashes", [1, 2, 3, 4])
def test_only_an_odd_number_of_trailing_backslashes_continues_the_line(backslashes: int) -> None:
    entries = parse_properties("key = a" + "\\" * backslashes + "\n   b\n")
    if backslashes % 2:
        assert entries == [PropertyEntry(1, "key", "a" + "\\" * (backslashes // 2) + "b")]
    else:
        assert entries == [PropertyEntry(1, "key", "a" + "\\" * (backslashes // 2)), PropertyEntry(2, "b", "")]


@pytest.mark.parametrize(("text", "expected"), [
    # the three forms of one pair in the java.util.Properties.load(Reader) javadoc
    ("Truth = Beauty\n", [(1, "Truth", "Beauty")]),
    ("  Truth:Beauty\n", [(1, "Truth", "Beauty")]),
    ("Truth                    :Beauty\n", [(1, "Truth", "Beauty")]),
    ("fruits                           apple, banana, pear, \\\n"
     "                                 cantaloupe, watermelon, \\\n"
     "                                 kiwi, mango\n",
     [(1, "fruits", "apple, banana, pear, cantaloupe, watermelon, kiwi, mango")]),
    ("cheeses\n", [(1, "cheeses", "")]),
    # \:\= is the two-character key ":="; an unknown escape drops its backslash (\b is b)
    ("\\:\\= = \\b\\z\\\"\n", [(1, ":=", "bz\"")]),
    ("a\\ key\\ttab = \\u00e9t\\u00C9 \\uD83D\\uDE00\n", [(1, "a key\ttab", "\u00e9t\u00c9 \U0001f600")]),
    # a comment is never continued; a continuation line starting with # is not a comment
    ("# comment \\\nkey = v\\\n  # not a comment\n", [(2, "key", "v# not a comment")]),
    # a blank line ends a continued line; a backslash on the last line escapes nothing
    ("a = x\\\n\nb = y\\", [(1, "a", "x"), (3, "b", "y")]),
    # a logical line holding nothing yet is still at its start (Java 9+ LineReader): comments and blanks are skipped
    ("\\\n# comment\n\\\n\n  \\\n  k = v\n", [(6, "k", "v")]),
    # separators: the first unescaped = : or blank; one = or : after blanks belongs to the separator
    ("k1 = = v\nk2::v\nk3 \t\f:  v\nk4=\n=v\n", [(1, "k1", "= v"), (2, "k2", ":v"), (3, "k3", "v"), (4, "k4", ""),
                                                   (5, "", "v")]),
    # only \r\n, \r and \n end a line; \v, \x85, \u2028 are ordinary characters (str.splitlines splits on them)
    ("a = 1\x0b2\x853\u20284\rb = 5\r\nc = 6", [(1, "a", "1\x0b2\x853\u20284"), (2, "b", "5"), (3, "c", "6")]),
    # trailing blanks of a value are dropped (a divergence from Java) unless escaped
    ("a = v \t\f\nb = v\\ \nc = \\\\  \n", [(1, "a", "v"), (2, "b", "v "), (3, "c", "\\")]),
    ("\ufeffa = 1\n", [(1, "a", "1")]),
    ("a = \ufeff\n", [(1, "a", "\ufeff")]),  # only a leading byte-order mark is dropped
])
def test_java_examples(text: str, expected: list[tuple[int, str, str]]) -> None:
    assert parse_properties(text) == [PropertyEntry(*entry) for entry in expected]


@pytest.mark.parametrize("escape", ["\\u12", "\\u12G4", "\\u", "\\uu1234"])
def test_a_malformed_unicode_escape_is_an_error_naming_the_line(escape: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^app.properties:3: malformed \\uXXXX escape"):
        parse_properties(f"a = 1\n\nb = x{escape}\n", where="app.properties")


def test_read_properties_reads_utf8_and_names_what_it_could_not_read(tmp_path: Path) -> None:
    path = tmp_path / "app.properties"
    path.write_bytes(b"\xef\xbb\xbfname = caf\xc3\xa9\r\n")
    assert read_properties(path) == [PropertyEntry(1, "name", "caf\u00e9")]
    with pytest.raises(ConfigurationError, match=r"cannot read worker file .*absent.properties: No such file"):
        read_properties(tmp_path / "absent.properties", what="worker file")
    path.write_bytes(b"a = 1\r\nb = 2\rc = \xff\n")
    with pytest.raises(ConfigurationError, match=rf"^{re.escape(str(path))}:3: properties file is not UTF-8 text"):
        read_properties(path)


def test_last_wins_keeps_the_last_entry_and_warns_once_per_duplicate(caplog: pytest.LogCaptureFixture) -> None:
    entries = parse_properties("a = 1\nb = 2\nA = 3\na = 4\n")
    with caplog.at_level("WARNING", logger="kpl.properties"):
        winners = last_wins(entries, "f.properties", str.lower)
    assert list(winners.items()) == [("b", PropertyEntry(2, "b", "2")), ("a", PropertyEntry(4, "a", "4"))]
    events = [getattr(record, EVENT_ATTRIBUTE) for record in caplog.records]
    assert events == [
        {"event": "properties key set twice; the last value wins", "file": "f.properties", "key": "A",
         "earlier_key": "a", "lines": [1, 3]},
        {"event": "properties key set twice; the last value wins", "file": "f.properties", "key": "a",
         "earlier_key": "A", "lines": [3, 4]},
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="kpl.properties"):
        assert list(last_wins(entries, "f.properties")) == ["b", "A", "a"]  # by default keys are case-sensitive
    assert [getattr(record, EVENT_ATTRIBUTE)["lines"] for record in caplog.records] == [[1, 4]]


def test_there_is_one_properties_reader() -> None:
    """The producer's and the worker's loaders read files through kpl.properties; no second parser grows back."""
    root = Path(__file__).resolve().parents[2]
    readers = {str(path.relative_to(root)) for package in ("kpl", "kcl", "agent")
               for path in (root / package).rglob("*.py") if re.search(r"""in ["']#!["']""", path.read_text())}
    assert readers == {"kpl/properties.py"}, f"read .properties files with kpl.properties.read_properties: {readers}"
    users = {str(path.relative_to(root)) for package in ("kpl", "kcl", "agent")
             for path in (root / package).rglob("*.py") if "read_properties(" in path.read_text()}
    assert users == {"kpl/properties.py", "kpl/config.py", "kcl/properties.py"}
