"""Cutting file bytes into records, shaping them, and batching them with exact file offsets."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from agent.batch import BatchBuilder
from agent.records import Cut, LineCutter, RecordShaper, RecordStats, truncate_utf8


def feed_all(cutter: LineCutter, blocks: list[bytes]) -> list[bytes]:
    records: list[bytes] = []
    for block in blocks:
        records.extend(cutter.feed(block).records)
    return records


def test_lines_keep_their_newline_and_a_partial_line_waits() -> None:
    cutter = LineCutter(1000)
    assert cutter.feed(b"a\nbb\ncc").records == [b"a\n", b"bb\n"]
    assert cutter.pending_bytes == 2
    assert cutter.feed(b"c").records == []
    assert cutter.feed(b"c\nd\n").records == [b"cccc\n", b"d\n"]
    assert cutter.pending_bytes == 0


def test_carriage_returns_are_data_not_line_ends() -> None:
    cutter = LineCutter(1000)
    assert cutter.feed(b"a\r\nb\rc\n").records == [b"a\r\n", b"b\rc\n"]


def test_flush_sends_an_unterminated_line_as_it_is() -> None:
    cutter = LineCutter(1000)
    cutter.feed(b"a\nlast")
    cut = cutter.flush()
    assert cut.records == [b"last"]
    assert cut.lengths is None
    assert cutter.pending_bytes == 0


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(min_value=1, max_value=64))
def test_cutting_covers_every_byte_exactly_once(chunks: list[bytes], keep: int) -> None:
    data = b"".join(chunks)
    cutter = LineCutter(keep)
    covered = 0
    kept: list[bytes] = []
    for chunk in chunks:
        cut = cutter.feed(chunk)
        covered += sum(cut.lengths) if cut.lengths is not None else sum(map(len, cut.records))
        kept.extend(cut.records)
    final = cutter.flush()
    covered += sum(final.lengths) if final.lengths is not None else sum(map(len, final.records))
    kept.extend(final.records)
    assert covered == len(data)
    if keep > len(data):
        assert b"".join(kept) == data


def test_over_long_line_keeps_only_its_head_but_covers_all_its_bytes() -> None:
    cutter = LineCutter(5)
    cut = cutter.feed(b"0123456789")
    assert cut.records == []
    cut = cutter.feed(b"abc\nok\n")
    assert cut.records == [b"01234", b"ok\n"]
    assert cut.lengths == [14, 3]


def test_multiline_records_start_at_the_pattern() -> None:
    cutter = LineCutter(1000, re.compile(rb"\d{4}-"))
    cut = cutter.feed(b"2024-01 start\n  at x\n  at y\n2024-02 next\n")
    assert cut.records == [b"2024-01 start\n  at x\n  at y\n"]
    assert cutter.pending_bytes == len(b"2024-02 next\n")
    cut = cutter.feed(b"2024-03 third\n")
    assert cut.records == [b"2024-02 next\n"]
    flushed = cutter.flush()
    assert flushed.records == [b"2024-03 third\n"]


def test_multiline_flush_splits_a_partial_start_line_into_its_own_record() -> None:
    cutter = LineCutter(1000, re.compile(rb"\d{4}-"))
    cutter.feed(b"2024-01 a\n cont\n2024-02 partial")
    assert cutter.flush().records == [b"2024-01 a\n cont\n", b"2024-02 partial"]


def test_leading_lines_before_the_first_start_form_a_record() -> None:
    cutter = LineCutter(1000, re.compile(rb"\d{4}-"))
    cut = cutter.feed(b"junk\nmore junk\n2024-01 a\n")
    assert cut.records == [b"junk\nmore junk\n"]


def shaper(**overrides: object) -> RecordShaper:
    settings: dict[str, object] = {"max_record_bytes": 10, "terminator": b"\n", "drop_long_records": False,
                                   "converters": None, "footer": None, "stats": RecordStats()}
    settings.update(overrides)
    return RecordShaper(**settings)  # type: ignore[arg-type]


def test_truncation_appends_the_terminator() -> None:
    stats = RecordStats()
    out, lengths, _ = shaper(stats=stats).shape(Cut([b"0123456789abc\n", b"ok\n"], None))
    assert out == [b"012345678\n", b"ok\n"]
    assert lengths == [14, 3]
    assert stats.records_truncated == 1


def test_truncation_never_splits_a_utf8_character() -> None:
    data = "aaaaaaa€€€".encode()  # the euro sign is 3 bytes
    truncated = truncate_utf8(data, 10, b"|")
    assert truncated == b"aaaaaaa|"
    truncated.decode()  # valid UTF-8


@given(st.text(min_size=1, max_size=50), st.integers(min_value=2, max_value=40))
def test_truncated_records_are_valid_utf8_within_the_limit(text: str, limit: int) -> None:
    data = text.encode()
    if len(data) <= limit:
        return
    truncated = truncate_utf8(data, limit, b"\n")
    assert len(truncated) <= limit
    assert truncated.endswith(b"\n")
    truncated.decode()


def test_long_records_can_be_dropped_instead() -> None:
    stats = RecordStats()
    out, _, _ = shaper(stats=stats, drop_long_records=True).shape(Cut([b"0123456789abc\n", b"ok\n"], None))
    assert out == [None, b"ok\n"]
    assert stats.records_dropped_too_long == 1


def test_header_lines_are_skipped() -> None:
    stats = RecordStats()
    out, _, _ = shaper(stats=stats, max_record_bytes=100).shape(Cut([b"", b"", b"row\n"], [3, 3, 4], 2))
    assert out == [None, None, b"row\n"]
    assert stats.header_lines_skipped == 2


def test_header_lines_are_lines_not_multiline_records() -> None:
    """skipHeaderLines counts lines, as the Java agent does: a multi-line record is never a header."""
    cutter = LineCutter(1000, re.compile(rb"\d{4}-"), skip_lines=2)
    first = cutter.feed(b"# header one\n# head")
    assert first.records == [] and cutter.pending_bytes == 0  # no record yet, nothing to flush
    assert cutter.flush().records == []
    cut = cutter.feed(b"er two\n2026-01-01 boom\n  at a\n  at b\n2026-01-02 ok\n")
    assert cut.headers == 2
    assert cut.records == [b"", b"", b"2026-01-01 boom\n  at a\n  at b\n"]
    assert cut.lengths == [13, 13, 30]
    assert cutter.flush().records == [b"2026-01-02 ok\n"]
    stats = RecordStats()
    out, lengths, _ = shaper(stats=stats, max_record_bytes=100).shape(cut)
    assert out == [None, None, b"2026-01-01 boom\n  at a\n  at b\n"]
    assert (stats.header_lines_skipped, stats.records_parsed, sum(lengths)) == (2, 1, 56)


@given(st.lists(st.binary(max_size=30), max_size=20), st.integers(min_value=0, max_value=4), st.booleans())
def test_header_lines_cover_their_bytes_and_nothing_else_is_lost(chunks: list[bytes], skip: int,
                                                                multiline: bool) -> None:
    data = b"".join(chunks)
    cutter = LineCutter(10_000, re.compile(rb"[a-m]") if multiline else None, skip_lines=skip)
    cuts = [cutter.feed(chunk) for chunk in chunks] + [cutter.flush()]
    headers = [length for cut in cuts for length in (cut.lengths or [])[:cut.headers]]
    records = [record for cut in cuts for record in cut.records[cut.headers:]]
    lines = data.split(b"\n")
    if data.count(b"\n") >= skip:
        assert headers == [len(line) + 1 for line in lines[:skip]]
        assert b"".join(records) == b"\n".join(lines[skip:])
    else:
        assert headers == [] and records == []


def test_footer_ends_the_file() -> None:
    out, lengths, footer = shaper(max_record_bytes=100, footer=re.compile("END")).shape(
        Cut([b"a\n", b"END\n", b"after\n"], None))
    assert footer == 1
    assert out == [b"a\n"]
    assert lengths == [2]


def test_batches_cover_contiguous_ranges_and_respect_limits() -> None:
    builder = BatchBuilder(1000, max_records=3, max_bytes=1000, overhead=0)
    closed = builder.add_exact([b"a\n", b"bb\n", b"ccc\n", b"d\n"])
    assert closed == [(1000, 1009, [b"a\n", b"bb\n", b"ccc\n"], 9)]
    assert (builder.start, builder.end, builder.records) == (1009, 1011, [b"d\n"])
    assert builder.close() == (1009, 1011, [b"d\n"], 2)


def test_batches_close_on_bytes_with_partition_key_overhead() -> None:
    builder = BatchBuilder(0, max_records=500, max_bytes=20, overhead=5)
    closed = builder.add_exact([b"aaaa\n", b"bbbb\n", b"cccc\n"])
    assert closed == [(0, 10, [b"aaaa\n", b"bbbb\n"], 20)]
    assert builder.nbytes == 10


def test_dropped_records_still_cover_their_bytes() -> None:
    builder = BatchBuilder(0, max_records=2, max_bytes=1000, overhead=0)
    closed = builder.add([b"a\n", None, b"c\n"], [2, 14, 2])
    assert closed == [(0, 18, [b"a\n", b"c\n"], 4)]
