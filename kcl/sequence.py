"""Positions in a shard as the lease table stores them: a sequence number plus a KPL sub-sequence.

The ``checkpoint`` attribute holds either a Kinesis sequence number or one of the Java KCL's sentinel
strings.  Sentinels order as the KCL orders them: the starting positions come before every real
sequence number and ``SHARD_END`` after all of them, so "is this checkpoint behind that one" is a
plain comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kpl.errors import ArgumentTypeError, InvalidArgumentError

TRIM_HORIZON: Final = "TRIM_HORIZON"
LATEST: Final = "LATEST"
AT_TIMESTAMP: Final = "AT_TIMESTAMP"
SHARD_END: Final = "SHARD_END"

#: Starting positions: a lease still at one of these has never been checkpointed.
START_SENTINELS: Final = frozenset({TRIM_HORIZON, LATEST, AT_TIMESTAMP})
SENTINELS: Final = START_SENTINELS | {SHARD_END}

# The KCL's ordinal values for its sentinels; all start positions sort before real sequence numbers.
_SENTINEL_RANK: Final = {AT_TIMESTAMP: -3, TRIM_HORIZON: -2, LATEST: -1}


def is_sequence_number(value: str) -> bool:
    """A Kinesis sequence number is a string of decimal digits (up to 128 of them)."""
    return 0 < len(value) <= 128 and value.isdigit() and value.isascii()


@dataclass(frozen=True, slots=True)
class ExtendedSequenceNumber:
    """A position: ``sequence_number`` (digits or a sentinel) and ``sub_sequence_number`` (>= 0).

    Malformed values raise InvalidArgumentError (a ValueError), a sub-sequence number that is not an
    ``int`` ArgumentTypeError (a TypeError).
    """

    sequence_number: str
    sub_sequence_number: int = 0

    def __post_init__(self) -> None:
        if self.sequence_number not in SENTINELS and not is_sequence_number(self.sequence_number):
            raise InvalidArgumentError(
                f"sequence number must be decimal digits or one of {sorted(SENTINELS)}, got {self.sequence_number!r}"
            )
        if isinstance(self.sub_sequence_number, bool) or not isinstance(self.sub_sequence_number, int):
            raise ArgumentTypeError(f"sub-sequence number must be an int, got {self.sub_sequence_number!r}")
        if self.sub_sequence_number < 0:
            raise InvalidArgumentError(f"sub-sequence number must be >= 0, got {self.sub_sequence_number}")

    @property
    def is_sentinel(self) -> bool:
        return self.sequence_number in SENTINELS

    @property
    def is_shard_end(self) -> bool:
        return self.sequence_number == SHARD_END

    @property
    def is_start(self) -> bool:
        """True while the lease has never been checkpointed past its starting position."""
        return self.sequence_number in START_SENTINELS

    def sort_key(self) -> tuple[int, int, int]:
        seq = self.sequence_number
        if seq == SHARD_END:
            return (2, 0, 0)
        rank = _SENTINEL_RANK.get(seq)
        if rank is not None:
            return (0, rank, 0)
        return (1, int(seq), self.sub_sequence_number)

    def __lt__(self, other: ExtendedSequenceNumber) -> bool:
        return self.sort_key() < other.sort_key()

    def __le__(self, other: ExtendedSequenceNumber) -> bool:
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: ExtendedSequenceNumber) -> bool:
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: ExtendedSequenceNumber) -> bool:
        return self.sort_key() >= other.sort_key()

    def __str__(self) -> str:
        if self.is_sentinel or not self.sub_sequence_number:
            return self.sequence_number
        return f"{self.sequence_number}/{self.sub_sequence_number}"


ESN_TRIM_HORIZON: Final = ExtendedSequenceNumber(TRIM_HORIZON)
ESN_LATEST: Final = ExtendedSequenceNumber(LATEST)
ESN_AT_TIMESTAMP: Final = ExtendedSequenceNumber(AT_TIMESTAMP)
ESN_SHARD_END: Final = ExtendedSequenceNumber(SHARD_END)
