"""Checkpoint positions: sequence numbers, sub-sequence numbers and the KCL's sentinels."""

from __future__ import annotations

import pytest

from kcl.sequence import (
    ESN_AT_TIMESTAMP,
    ESN_LATEST,
    ESN_SHARD_END,
    ESN_TRIM_HORIZON,
    ExtendedSequenceNumber,
)


def test_start_sentinels_sort_before_every_sequence_number_and_shard_end_after() -> None:
    real = ExtendedSequenceNumber("49590338271490256608559692538361571095921575989136588898", 3)
    for start in (ESN_TRIM_HORIZON, ESN_LATEST, ESN_AT_TIMESTAMP):
        assert start < real < ESN_SHARD_END
        assert start.is_start and start.is_sentinel
    assert ESN_SHARD_END.is_shard_end and not ESN_SHARD_END.is_start


def test_sub_sequence_numbers_order_records_inside_an_aggregate() -> None:
    assert ExtendedSequenceNumber("100", 2) < ExtendedSequenceNumber("100", 3) < ExtendedSequenceNumber("101", 0)
    assert ExtendedSequenceNumber("99", 7) < ExtendedSequenceNumber("100", 0)  # numeric, not lexical


@pytest.mark.parametrize(("sequence", "sub"), [("abc", 0), ("", 0), ("12", -1), ("1" * 129, 0)])
def test_malformed_positions_are_rejected(sequence: str, sub: int) -> None:
    with pytest.raises(ValueError):
        ExtendedSequenceNumber(sequence, sub)


def test_sub_sequence_must_be_an_int() -> None:
    with pytest.raises(TypeError):
        ExtendedSequenceNumber("1", True)  # type: ignore[arg-type]


def test_string_form() -> None:
    assert str(ExtendedSequenceNumber("123", 4)) == "123/4"
    assert str(ExtendedSequenceNumber("123")) == "123"
    assert str(ESN_SHARD_END) == "SHARD_END"
