"""From bytes read out of a file to the records a flow sends.

Two steps with one job each:

* :class:`LineCutter` (one per open file) cuts blocks into raw records: lines ending in ``\\n``, or
  multi-line records that begin at a line matching ``multiLineStartPattern``.  The first
  ``skipHeaderLines`` lines of a file read from its start are header *lines* (as in the Java agent),
  set aside before lines are grouped into records, so a multi-line record is never taken for a header.
  An unterminated last line is held until its newline arrives (or the multi-line flush timeout
  passes, or the file is finished), never dropped.  A record longer than the limit keeps only its
  first bytes in memory; the rest is counted so that file offsets stay exact.
* :class:`RecordShaper` (one per flow) turns raw records into what is sent: header lines dropped,
  converters applied, over-long records truncated at a UTF-8 boundary with the terminator (or dropped),
  a footer line ending the file.

Both work on whole lists: ``bytes.splitlines`` cuts a block in C, and the common case (no converters,
nothing over-long) passes the cut list through untouched.  Counters live in :class:`RecordStats`, which
is updated once per block, never per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from agent.converters import ConverterChain
from agent.errors import ConversionError

NEWLINE = b"\n"


@dataclass(slots=True)
class RecordStats:
    records_parsed: int = 0
    bytes_consumed: int = 0
    records_skipped: int = 0
    header_lines_skipped: int = 0
    conversion_errors: int = 0
    records_truncated: int = 0
    records_dropped_too_long: int = 0


class Cut(NamedTuple):
    """Raw records cut from a file, and the file bytes each one covers.

    ``lengths`` is None when every record covers exactly ``len(record)`` bytes (the common case);
    otherwise it lists the covered length of each record (an over-long record keeps fewer bytes than
    it covers).
    """

    records: list[bytes]
    lengths: list[int] | None
    #: The first ``headers`` records are skipped header lines (empty, covering their bytes).
    headers: int = 0


EMPTY_CUT = Cut([], None)


class LineCutter:
    """Cuts one file's bytes into raw records (see the module docstring)."""

    __slots__ = ("_header_lengths", "_header_pending", "_record", "_record_covered", "_record_kept", "keep_limit",
                 "partial", "partial_covered", "skip_lines", "start_pattern")

    def __init__(self, keep_limit: int, start_pattern: re.Pattern[bytes] | None = None, skip_lines: int = 0) -> None:
        #: Bytes of a record kept in memory; a longer record is over the send limit anyway.
        self.keep_limit = keep_limit
        self.start_pattern = start_pattern
        #: The unterminated last line (at most keep_limit bytes of it) and the file bytes it covers.
        self.partial = b""
        self.partial_covered = 0
        # The multi-line record being assembled: its kept lines, kept size and covered size.
        self._record: list[bytes] = []
        self._record_kept = 0
        self._record_covered = 0
        #: Header lines still to skip; the covered length of those skipped so far, and of the header
        #: line being read.  They are handed on together once the last one is complete, so that a
        #: checkpoint never lands between two header lines (a restart would take the second for data).
        self.skip_lines = skip_lines
        self._header_lengths: list[int] = []
        self._header_pending = 0

    @property
    def pending_bytes(self) -> int:
        """File bytes read but not yet part of a finished record (header lines are not records)."""
        return self.partial_covered + self._record_covered

    def feed(self, block: bytes) -> Cut:
        """Cut ``block`` (the bytes that follow everything fed before) into finished records."""
        if not block:
            return EMPTY_CUT
        if self.skip_lines:
            block = self._skip_header_lines(block)
            if self.skip_lines:
                return EMPTY_CUT
            headers, self._header_lengths = self._header_lengths, []
            cut = self._cut(block) if block else EMPTY_CUT
            lengths = cut.lengths if cut.lengths is not None else [len(record) for record in cut.records]
            return Cut([b""] * len(headers) + cut.records, headers + lengths, len(headers))
        return self._cut(block)

    def _skip_header_lines(self, block: bytes) -> bytes:
        """Consume header lines from the start of ``block``; what follows the last one."""
        start = 0
        while self.skip_lines:
            newline = block.find(NEWLINE, start)
            if newline < 0:
                self._header_pending += len(block) - start
                return b""
            self._header_lengths.append(self._header_pending + newline + 1 - start)
            self._header_pending = 0
            self.skip_lines -= 1
            start = newline + 1
        return block[start:]

    def _cut(self, block: bytes) -> Cut:
        newline = block.find(NEWLINE)
        if newline < 0:
            self._extend_partial(block)
            return EMPTY_CUT
        lengths: list[int] | None = None
        if self.partial_covered:
            head = block[:newline + 1]
            first_covered = self.partial_covered + len(head)
            first = self._capped(self.partial + head)
            self.partial = b""
            self.partial_covered = 0
            rest = block[newline + 1:]
            lines, lengths = self._split(rest)
            lines.insert(0, first)
            if lengths is not None or len(first) != first_covered:
                if lengths is None:
                    lengths = [len(line) for line in lines]
                else:
                    lengths.insert(0, first_covered)
                lengths[0] = first_covered
        else:
            lines, lengths = self._split(block)
        if self.start_pattern is None:
            return Cut(lines, lengths)
        return self._group(lines, lengths)

    def _split(self, data: bytes) -> tuple[list[bytes], list[int] | None]:
        """Complete lines of ``data`` (keeping their newline); the unterminated tail goes to ``partial``."""
        if not data:
            return [], None
        if b"\r" in data:
            lines = [line + NEWLINE for line in data.split(NEWLINE)]
            lines[-1] = lines[-1][:-1]
        else:
            lines = data.splitlines(keepends=True)
        if lines and not lines[-1].endswith(NEWLINE):
            self._extend_partial(lines.pop())
        elif lines and not lines[-1]:
            lines.pop()
        limit = self.keep_limit
        if lines and max(map(len, lines)) > limit:
            lengths = [len(line) for line in lines]
            lines = [line[:limit] if len(line) > limit else line for line in lines]
            return lines, lengths
        return lines, None

    def _extend_partial(self, data: bytes) -> None:
        room = self.keep_limit - len(self.partial)
        if room > 0:
            self.partial += data[:room]
        self.partial_covered += len(data)

    def _capped(self, data: bytes) -> bytes:
        return data if len(data) <= self.keep_limit else data[:self.keep_limit]

    def _group(self, lines: list[bytes], lengths: list[int] | None) -> Cut:
        assert self.start_pattern is not None
        match = self.start_pattern.match
        out: list[bytes] = []
        out_lengths: list[int] = []
        for index, line in enumerate(lines):
            covered = len(line) if lengths is None else lengths[index]
            if self._record_covered and match(line):
                out.append(self._take_record())
                out_lengths.append(self._record_covered)
                self._record_covered = 0
            self._add_line(line, covered)
        exact = all(len(record) == length for record, length in zip(out, out_lengths, strict=True))
        return Cut(out, None if exact else out_lengths)

    def _add_line(self, line: bytes, covered: int) -> None:
        room = self.keep_limit - self._record_kept
        if room > 0:
            kept = line[:room]
            self._record.append(kept)
            self._record_kept += len(kept)
        self._record_covered += covered

    def _take_record(self) -> bytes:
        record = b"".join(self._record)
        self._record = []
        self._record_kept = 0
        return record

    def flush(self) -> Cut:
        """Everything held, as finished records: the multi-line record and the unterminated line.

        Used when the multi-line flush timeout passes and when a file is finished; an unterminated
        line is sent as it is, without a newline added.
        """
        records: list[bytes] = []
        lengths: list[int] = []
        if self.partial_covered:
            partial, partial_covered = self.partial, self.partial_covered
            self.partial = b""
            self.partial_covered = 0
            if self.start_pattern is not None:
                if self._record_covered and self.start_pattern.match(partial):
                    records.append(self._take_record())
                    lengths.append(self._record_covered)
                    self._record_covered = 0
                self._add_line(partial, partial_covered)
            else:
                records.append(partial)
                lengths.append(partial_covered)
        if self._record_covered:
            records.append(self._take_record())
            lengths.append(self._record_covered)
            self._record_covered = 0
        exact = all(len(record) == length for record, length in zip(records, lengths, strict=True))
        return Cut(records, None if exact else lengths)


class RecordShaper:
    """Applies a flow's record rules to raw records (see the module docstring)."""

    def __init__(
        self,
        *,
        max_record_bytes: int,
        terminator: bytes,
        drop_long_records: bool,
        converters: ConverterChain | None,
        footer: re.Pattern[str] | None,
        stats: RecordStats,
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.terminator = terminator
        self.drop_long_records = drop_long_records
        self.converters = converters
        self.footer = footer
        self.stats = stats

    def shape(self, cut: Cut) -> tuple[list[bytes | None], list[int], int | None]:
        """For each raw record: what is sent (None: nothing), the bytes it covers; and the footer index.

        The first ``cut.headers`` raw records are header lines and are not sent.
        """
        records = cut.records
        count = len(records)
        stats = self.stats
        stats.records_parsed += count
        lengths = cut.lengths if cut.lengths is not None else [len(record) for record in records]
        stats.bytes_consumed += sum(lengths)
        out: list[bytes | None] = list(records)
        footer_index: int | None = None
        if cut.headers:
            for index in range(cut.headers):
                out[index] = None
            stats.header_lines_skipped += cut.headers
            stats.records_parsed -= cut.headers
        if self.footer is not None:
            for index in range(count):
                if out[index] is not None and self.footer.fullmatch(
                    records[index].decode("utf-8", "replace").strip()
                ):
                    footer_index = index
                    del out[index:]
                    del lengths[index:]
                    break
        if self.converters is not None:
            convert = self.converters.convert
            for index, record in enumerate(out):
                if record is None:
                    continue
                try:
                    converted = convert(record)
                except ConversionError:
                    stats.conversion_errors += 1
                    continue
                if converted is None:
                    stats.records_skipped += 1
                out[index] = converted
        limit = self.max_record_bytes
        if any(record is not None and len(record) > limit for record in out):
            for index, record in enumerate(out):
                if record is None or len(record) <= limit:
                    continue
                if self.drop_long_records:
                    stats.records_dropped_too_long += 1
                    out[index] = None
                else:
                    stats.records_truncated += 1
                    out[index] = truncate_utf8(record, limit, self.terminator)
        return out, lengths, footer_index


def truncate_utf8(data: bytes, limit: int, terminator: bytes) -> bytes:
    """``data`` cut to ``limit`` bytes ending in ``terminator``, never inside a UTF-8 character."""
    cut = limit - len(terminator)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut] + terminator
