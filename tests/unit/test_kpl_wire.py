"""The PutRecords wire formats: CBOR as RFC 8949 writes it, and request bodies that decode to the call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kpl.wire import (
    CBOR_CONTENT_TYPE,
    _read_response,
    _set_entries_aside,
    _splice_entries,
    cbor_decode,
    cbor_encode,
)

# RFC 8949, Appendix A (examples of encoded CBOR data items).
RFC_EXAMPLES: list[tuple[Any, str]] = [
    (0, "00"), (23, "17"), (24, "1818"), (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (-1, "20"), (-1000, "3903e7"),
    (False, "f4"), (True, "f5"), (None, "f6"), (1.1, "fb3ff199999999999a"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("a", "6161"), ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ([], "80"), ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"), ({}, "a0"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
]

# Decoded only: forms an encoder may choose and this one does not write.
DECODE_ONLY: list[tuple[Any, str]] = [
    (1.0, "f93c00"), (100000.0, "fa47c35000"), (1363896240, "c11a514b67b0"),  # half, single float; a tag
    (b"\x01\x02\x03\x04\x05", "5f42010243030405ff"), ("streaming", "7f657374726561646d696e67ff"),
    ([], "9fff"), ([1, [2, 3], [4, 5]], "9f018202039f0405ffff"), ({"a": 1, "b": [2, 3]}, "bf61610161629f0203ffff"),
]


@pytest.mark.parametrize(("value", "encoded"), RFC_EXAMPLES)
def test_cbor_encodes_and_decodes_the_rfc_examples(value: Any, encoded: str) -> None:
    assert cbor_encode(value).hex() == encoded
    assert cbor_decode(bytes.fromhex(encoded)) == value


@pytest.mark.parametrize(("value", "encoded"), DECODE_ONLY)
def test_cbor_decodes_indefinite_lengths_floats_and_tags(value: Any, encoded: str) -> None:
    assert cbor_decode(bytes.fromhex(encoded)) == value


def test_cbor_refuses_trailing_bytes() -> None:
    with pytest.raises(ValueError, match="after the CBOR data item"):
        cbor_decode(bytes.fromhex("0000"))


ENTRIES = [
    {"Data": b"\x00\xff binary", "PartitionKey": "a", "ExplicitHashKey": "123"},
    {"Data": b"", "PartitionKey": 'quote " and ключ', "ExplicitHashKey": str(2**128 - 1)},
    {"Data": b"x" * 70000, "PartitionKey": "no-hash-key"},
]


def _spliced(cbor: bool) -> dict[str, Any]:
    import botocore.session
    from botocore.serialize import create_serializer

    model = botocore.session.get_session().get_service_model("kinesis").operation_model("PutRecords")
    params = {"Records": list(ENTRIES), "StreamName": "s"}
    context: dict[str, Any] = {}
    _set_entries_aside(params, context)
    request = create_serializer("json").serialize_to_request(params, model)
    _splice_entries(request, context, cbor=cbor)
    return request


def test_a_cbor_body_carries_the_call_with_raw_data() -> None:
    request = _spliced(cbor=True)
    assert request["headers"]["Content-Type"] == CBOR_CONTENT_TYPE
    assert cbor_decode(request["body"]) == {"Records": ENTRIES, "StreamName": "s"}
    json_body = _spliced(cbor=False)["body"]
    assert len(request["body"]) < 0.8 * len(json_body), "no base64: a quarter fewer bytes"


def test_cbor_responses_are_read_success_and_error() -> None:
    records = [{"SequenceNumber": "49", "ShardId": "shardId-000000000001"},
               {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}]
    response = {"status_code": 200, "headers": {"content-type": CBOR_CONTENT_TYPE},
                "body": cbor_encode({"FailedRecordCount": 1, "Records": records})}
    parsed: dict[str, Any] = {}
    _read_response(response, parsed)
    assert parsed == {"FailedRecordCount": 1, "Records": records}
    error = {"status_code": 400, "headers": {"content-type": CBOR_CONTENT_TYPE},
             "body": cbor_encode({"__type": "ResourceNotFoundException", "message": "no stream"})}
    _read_response(error, {})
    assert json.loads(error["body"]) == {"__type": "ResourceNotFoundException", "message": "no stream"}
