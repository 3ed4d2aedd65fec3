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
"""

from __future__ import annotations

import json
from base64 import b64encode
from json.encoder import encode_basestring_ascii
from typing import Any

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


def _splice_entries(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    entries = context.pop(_ENTRIES_KEY, None)
    if entries is None:
        return
    rest = json.loads(params["body"])
    del rest["Records"]
    pieces = [b'{"Records":[']
    for entry in entries:
        _entry_pieces(entry, pieces)
    pieces[-1] = b"}]"  # the last entry's closing brace, without its comma
    if rest:
        pieces.append(b"," + json.dumps(rest, separators=(",", ":"))[1:-1].encode())
    pieces.append(b"}")
    params["body"] = b"".join(pieces)


def _read_response(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") != 200:
        return
    customized_response_dict.update(json.loads(response_dict["body"]))
    response_dict["body"] = b"{}"


def install_put_records_codec(client: Any) -> None:
    """Make ``client`` (a Kinesis client) write and read PutRecords bodies the fast way (see above)."""
    events = client.meta.events
    events.register("before-parameter-build.kinesis.PutRecords", _set_entries_aside,
                    unique_id="kpl-put-records-set-aside")
    events.register("before-call.kinesis.PutRecords", _splice_entries, unique_id="kpl-put-records-splice")
    events.register("before-parse.kinesis.PutRecords", _read_response, unique_id="kpl-put-records-read")
