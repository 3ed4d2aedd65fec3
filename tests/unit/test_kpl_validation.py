"""Bad input fails at the call, with the exception a Python programmer expects and a message saying which."""

from __future__ import annotations

import hashlib

import pytest

from kpl.intake import validate_record


def test_a_valid_record() -> None:
    data, key, explicit, hash_key, size = validate_record(b"payload", "user-1", None)
    assert (data, key, explicit, size) == (b"payload", "user-1", None, len("user-1") + len("payload"))
    assert hash_key == int.from_bytes(hashlib.md5(b"user-1").digest(), "big")
    # Again from the hash-key cache: same answer.
    assert validate_record(b"payload", "user-1", None)[3] == hash_key


def test_sizes_count_utf8_bytes_of_the_key() -> None:
    for _ in range(2):  # first computed, then from the cache
        *_, size = validate_record(b"12", "ключ", None)
        assert size == len("ключ".encode()) + 2


def test_bytes_like_data_is_copied() -> None:
    buffer = bytearray(b"abc")
    data, *_ = validate_record(buffer, "k", None)
    buffer[0] = ord("z")
    assert data == b"abc" and type(data) is bytes
    assert validate_record(memoryview(b"xyz"), "k", None)[0] == b"xyz"


@pytest.mark.parametrize("data", ["text", 42, None, [1, 2]])
def test_data_that_is_not_bytes_like_is_a_type_error(data: object) -> None:
    with pytest.raises(TypeError, match="data must be bytes-like"):
        validate_record(data, "k", None)


@pytest.mark.parametrize("key", ["", "x" * 257])
def test_partition_key_length(key: str) -> None:
    with pytest.raises(ValueError, match="partition_key must have 1 to 256 characters"):
        validate_record(b"d", key, None)


def test_partition_key_type_and_encoding() -> None:
    with pytest.raises(TypeError, match="partition_key must be str"):
        validate_record(b"d", b"bytes-key", None)
    with pytest.raises(ValueError, match="UTF-8"):
        validate_record(b"d", "\ud800", None)


def test_a_missing_partition_key_becomes_a_random_one() -> None:
    keys = {validate_record(b"d", None, None)[1] for _ in range(100)}
    assert len(keys) == 100 and all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("explicit", ["-1", str(2**128), "12a", 2**128, -5])
def test_explicit_hash_key_out_of_range_is_a_value_error(explicit: object) -> None:
    with pytest.raises(ValueError, match="explicit_hash_key"):
        validate_record(b"d", "k", explicit)


def test_explicit_hash_key_is_normalised_and_routes() -> None:
    _, _, explicit, hash_key, _ = validate_record(b"d", "k", "000123")
    assert (explicit, hash_key) == ("123", 123)
    assert validate_record(b"d", "k", 2**128 - 1)[3] == 2**128 - 1
