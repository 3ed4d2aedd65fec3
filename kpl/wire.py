"""The PutRecords wire format: request bodies written, and response bodies read, without botocore's per-entry work.

botocore serialises a PutRecords call with ``json.dumps``, whose encoder examines every character
of every base64-encoded ``Data`` string for escaping: 0.4 µs per 100-byte user record and 4 µs per
KiB, more than everything else the producer does per record.  Base64 needs no escaping, so the
producer writes the ``Records`` array itself.  It does so through botocore's event hooks: the
entries are set aside before the parameters are serialised (botocore serialises a one-entry
placeholder) and spliced into the serialised body before the request is signed and sent.

On the way back, botocore parses each of up to 500 result entries against the output shape, which
costs some microseconds per entry; a successful PutRecords response is plain JSON of strings and
numbers, so it is read with ``json.loads`` instead.  Error responses are left to botocore.

**CBOR** (``ProducerConfig(cbor_protocol=True)``, the default).  Kinesis also speaks its JSON 1.1
protocol with CBOR bodies (``application/x-amz-cbor-1.1``), which the AWS SDK for Java uses by
default: ``Data`` travels as raw bytes instead of base64, a quarter fewer bytes to copy and to hash
for the signature, and no base64 step at all (base64 alone costs ~1.8 µs per KiB, more than MD5).
botocore has no CBOR for Kinesis, so the same hooks write the body as CBOR (RFC 8949; the few types a
PutRecords call needs) and read a CBOR response, success or error, into what botocore expects.  Only
PutRecords changes; every other call stays JSON.  ``cbor_protocol=False`` sends JSON, for endpoints
that speak only JSON (kinesalite, for one).
"""

from __future__ import annotations

import functools
import json
import struct
from base64 import b64encode
from json.encoder import encode_basestring_ascii
from typing import Any

#: The content type of Kinesis' CBOR protocol.
CBOR_CONTENT_TYPE = "application/x-amz-cbor-1.1"

_ENTRIES_KEY = "kpl_put_records_entries"


def _entry_pieces(entry: dict[str, Any], pieces: list[bytes]) -> None:
    pieces.append(b'{"Data":"')
    pieces.append(b64encode(entry["Data"]))
    pieces.append(b'","PartitionKey":')
    pieces.append(encode_basestring_ascii(entry["PartitionKey"]).encode("ascii"))
    explicit_hash_key = entry.get("ExplicitHashKey")
    if explicit_hash_key is not None:
        pieces.append(b',"ExplicitHashKey":')
        pieces.append(encode_basestring_ascii(explicit_hash_key).encode("ascii"))
    pieces.append(b"},")


#: What botocore serialises in place of the entries (valid, so parameter validation may stay on).
_PLACEHOLDER = ({"Data": b"", "PartitionKey": "-"},)


def _set_entries_aside(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    entries = params.get("Records")
    if entries:
        context[_ENTRIES_KEY] = entries
        params["Records"] = list(_PLACEHOLDER)


def _splice_entries(params: dict[str, Any], context: dict[str, Any], *, cbor: bool = False, **_: Any) -> None:
    entries = context.pop(_ENTRIES_KEY, None)
    if entries is None:
        return
    rest = json.loads(params["body"])
    del rest["Records"]
    if cbor:
        params["body"] = cbor_put_records_body(entries, rest)
        params["headers"]["Content-Type"] = CBOR_CONTENT_TYPE
        return
    pieces = [b'{"Records":[']
    for entry in entries:
        _entry_pieces(entry, pieces)
    pieces[-1] = b"}]"  # the last entry's closing brace, without its comma
    if rest:
        pieces.append(b"," + json.dumps(rest, separators=(",", ":"))[1:-1].encode())
    pieces.append(b"}")
    params["body"] = b"".join(pieces)


def _read_response(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    headers = response_dict.get("headers") or {}
    content_type = headers.get("content-type") or headers.get("Content-Type") or ""
    if content_type.startswith("application/x-amz-cbor"):
        decoded = cbor_decode(response_dict["body"])
        if response_dict.get("status_code") == 200:
            customized_response_dict.update(decoded)
            response_dict["body"] = b"{}"
        else:  # an error: botocore reads its __type and message from JSON
            response_dict["body"] = json.dumps(decoded, default=repr).encode()
        return
    if response_dict.get("status_code") != 200:
        return
    customized_response_dict.update(json.loads(response_dict["body"]))
    response_dict["body"] = b"{}"


def install_put_records_codec(client: Any, *, cbor: bool = False) -> None:
    """Make ``client`` (a Kinesis client) write and read PutRecords bodies the fast way (see above),
    as CBOR when ``cbor``."""
    events = client.meta.events
    events.register("before-parameter-build.kinesis.PutRecords", _set_entries_aside,
                    unique_id="kpl-put-records-set-aside")
    events.register("before-call.kinesis.PutRecords", functools.partial(_splice_entries, cbor=cbor),
                    unique_id="kpl-put-records-splice")
    events.register("before-parse.kinesis.PutRecords", _read_response, unique_id="kpl-put-records-read")


# --- CBOR (RFC 8949), the subset Kinesis' PutRecords uses -----------------------------------------------

_UINT, _NEGINT, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
_INDEFINITE = 31
_BREAK = 0xFF


def _head(major: int, value: int) -> bytes:
    """A data item's initial byte(s) and argument."""
    if value < 24:
        return bytes((major << 5 | value,))
    if value < 0x100:
        return bytes((major << 5 | 24, value))
    if value < 0x10000:
        return bytes((major << 5 | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((major << 5 | 26,)) + value.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + value.to_bytes(8, "big")


@functools.cache
def _text(value: str) -> bytes:
    raw = value.encode()
    return _head(_TEXT, len(raw)) + raw


def cbor_encode(value: Any) -> bytes:
    """CBOR for str, bytes, int, bool, None, float, list/tuple and dict (str keys)."""
    if isinstance(value, str):
        raw = value.encode()
        return _head(_TEXT, len(raw)) + raw
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _head(_BYTES, len(value)) + bytes(value)
    if value is None:
        return b"\xf6"
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(_UINT, value) if value >= 0 else _head(_NEGINT, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, (list, tuple)):
        return _head(_ARRAY, len(value)) + b"".join(map(cbor_encode, value))
    if isinstance(value, dict):
        return _head(_MAP, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


_DATA, _PARTITION_KEY, _EXPLICIT_HASH_KEY = _text("Data"), _text("PartitionKey"), _text("ExplicitHashKey")
_MAP2, _MAP3 = _head(_MAP, 2), _head(_MAP, 3)


def cbor_put_records_body(entries: list[dict[str, Any]], rest: dict[str, Any]) -> bytes:
    """A PutRecords request body in CBOR: the entries, then the other parameters (the stream)."""
    pieces = [_head(_MAP, 1 + len(rest)), _text("Records"), _head(_ARRAY, len(entries))]
    append = pieces.append
    for entry in entries:
        data = entry["Data"]
        explicit_hash_key = entry.get("ExplicitHashKey")
        append(_MAP2 if explicit_hash_key is None else _MAP3)
        append(_DATA)
        append(_head(_BYTES, len(data)))
        append(data)
        append(_PARTITION_KEY)
        append(cbor_encode(entry["PartitionKey"]))
        if explicit_hash_key is not None:
            append(_EXPLICIT_HASH_KEY)
            append(cbor_encode(explicit_hash_key))
    for name, value in rest.items():
        append(cbor_encode(name))
        append(cbor_encode(value))
    return b"".join(pieces)


def cbor_decode(data: bytes) -> Any:
    """The value of one CBOR data item (definite and indefinite lengths, tags skipped)."""
    value, end = _decode(memoryview(data), 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the CBOR data item")
    return value


def _argument(data: memoryview, at: int, info: int) -> tuple[int, int]:
    if info < 24:
        return info, at
    if info > 27:
        raise ValueError(f"malformed CBOR: additional information {info} at byte {at - 1}")
    width = 1 << (info - 24)
    return int.from_bytes(data[at:at + width], "big"), at + width


def _decode(data: memoryview, at: int) -> tuple[Any, int]:
    initial = data[at]
    major, info = initial >> 5, initial & 0x1F
    at += 1
    if major == _SIMPLE:
        if info == 20:
            return False, at
        if info == 21:
            return True, at
        if info in (22, 23):
            return None, at
        if info == 25:
            return struct.unpack(">e", data[at:at + 2])[0], at + 2
        if info == 26:
            return struct.unpack(">f", data[at:at + 4])[0], at + 4
        if info == 27:
            return struct.unpack(">d", data[at:at + 8])[0], at + 8
        raise ValueError(f"unsupported CBOR simple value {info} at byte {at - 1}")
    if info == _INDEFINITE:
        return _decode_indefinite(data, at, major)
    value, at = _argument(data, at, info)
    if major == _UINT:
        return value, at
    if major == _NEGINT:
        return -1 - value, at
    if major == _BYTES:
        return bytes(data[at:at + value]), at + value
    if major == _TEXT:
        return str(data[at:at + value], "utf-8"), at + value
    if major == _ARRAY:
        items = []
        for _ in range(value):
            item, at = _decode(data, at)
            items.append(item)
        return items, at
    if major == _MAP:
        mapping = {}
        for _ in range(value):
            key, at = _decode(data, at)
            mapping[key], at = _decode(data, at)
        return mapping, at
    return _decode(data, at)  # a tag (a timestamp, say): its content


def _decode_indefinite(data: memoryview, at: int, major: int) -> tuple[Any, int]:
    if major in (_BYTES, _TEXT):
        chunks = []
        while data[at] != _BREAK:
            chunk, at = _decode(data, at)
            chunks.append(chunk)
        joined: Any = b"".join(chunks) if major == _BYTES else "".join(chunks)
        return joined, at + 1
    if major == _ARRAY:
        items = []
        while data[at] != _BREAK:
            item, at = _decode(data, at)
            items.append(item)
        return items, at + 1
    if major == _MAP:
        mapping = {}
        while data[at] != _BREAK:
            key, at = _decode(data, at)
            mapping[key], at = _decode(data, at)
        return mapping, at + 1
    raise ValueError(f"malformed CBOR: indefinite length for major type {major}")
