"""What happens to a record at the ``put_record`` call: validation, and its hash key and size.

Input is validated in the calling thread, at the call, so a bad record raises where it was made:
``TypeError`` for data that is not bytes-like, ``ValueError`` naming the problem for a bad partition
key or explicit hash key.  (Size limits, which depend on the stream, are the producer's to check.)

Applications reuse partition keys (a user id, a device id), and MD5 is the largest single cost of
accepting a record, so the hash key and UTF-8 length of recently seen keys are cached.  A key is
cached only once it has passed validation, so a cache hit needs no further checks: the common call
(``bytes`` data, a known ``str`` key, no explicit hash key) is one dict lookup and a tuple.
"""

from __future__ import annotations

import random

from kpl.accumulator import NO_LOG, PendingRecord
from kpl.hashing import MAX_PARTITION_KEY_LENGTH, parse_explicit_hash_key, partition_key_hash

#: (hash key, UTF-8 length) of valid partition keys seen recently; dropped whole when it fills up.
#: A key found here needs no further checks (the producer's faces look it up themselves).
KNOWN_KEYS: dict[str, tuple[int, int]] = {}
_KEYS_LIMIT = 1 << 14

_getrandbits = random.getrandbits


def pending_record(data: object, partition_key: object, explicit_hash_key: object, arrival: float) -> PendingRecord:
    """The producer's record for one put, arriving at ``arrival``; raises TypeError/ValueError on bad input."""
    if type(data) is bytes and type(partition_key) is str and explicit_hash_key is None:
        key = KNOWN_KEYS.get(partition_key)
        if key is not None:
            return (partition_key, None, data, key[0], key[1] + len(data), arrival, NO_LOG)
    data, partition_key, explicit_hash_key, hash_key, size = validate_record(data, partition_key, explicit_hash_key)
    return (partition_key, explicit_hash_key, data, hash_key, size, arrival, NO_LOG)


def validate_record(
    data: object, partition_key: object, explicit_hash_key: object
) -> tuple[bytes, str, str | None, int, int]:
    """Check one record's input; (data, partition key, explicit hash key, hash key, size).

    A missing partition key becomes a random one (records spread evenly over the shards).  An
    explicit hash key is normalised to its decimal form.  ``size`` is what Kinesis counts:
    UTF-8 partition key + data.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like (bytes, bytearray or memoryview), not {type(data).__name__}")
        data = bytes(data)  # a private copy: the caller may reuse its buffer
    if partition_key is None:
        random_key = f"{_getrandbits(128):032x}"  # used once: not worth a place in the cache
        if explicit_hash_key is None:
            return data, random_key, None, partition_key_hash(random_key), 32 + len(data)
        partition_key = random_key
    elif type(partition_key) is not str:
        if not isinstance(partition_key, str):
            raise TypeError(f"partition_key must be str, not {type(partition_key).__name__}")
        partition_key = str(partition_key)
    if explicit_hash_key is None:
        hash_key, key_length = KNOWN_KEYS.get(partition_key) or _learn_key(partition_key)
        return data, partition_key, None, hash_key, key_length + len(data)
    raw_key = _encode_partition_key(partition_key)
    hash_key = parse_explicit_hash_key(explicit_hash_key)  # type: ignore[arg-type]
    return data, partition_key, str(hash_key), hash_key, len(raw_key) + len(data)


def _learn_key(partition_key: str) -> tuple[int, int]:
    """Validate a partition key and cache its (hash key, UTF-8 length)."""
    raw_key = _encode_partition_key(partition_key)
    key = (partition_key_hash(raw_key), len(raw_key))
    if len(KNOWN_KEYS) >= _KEYS_LIMIT:
        KNOWN_KEYS.clear()
    KNOWN_KEYS[partition_key] = key
    return key


def _encode_partition_key(partition_key: str) -> bytes:
    length = len(partition_key)
    if length == 0 or length > MAX_PARTITION_KEY_LENGTH:
        raise ValueError(f"partition_key must have 1 to {MAX_PARTITION_KEY_LENGTH} characters, got {length}")
    try:
        return partition_key.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"partition_key is not encodable as UTF-8: {exc}") from exc
