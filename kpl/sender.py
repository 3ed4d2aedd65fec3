"""PutRecords: sending batches with bounded parallelism, and reading what each entry's outcome means.

:class:`Sender` owns the connection budget (``MaxConnections`` requests in flight; further batches
wait in a FIFO backlog) and the whole-request timeout.  botocore's own retries are off for this
client, so every attempt is one HTTP request and the producer's retry layer is the only one.

:func:`read_response` turns a PutRecords response into per-entry outcomes: delivered, failed (with
the error's class from :mod:`kpl.retry`), or delivered to a shard other than the predicted one.  In
the last case each user record's hash key is checked against the range of the shard that took the
entry: after a reshard, an aggregate predicted with a stale map can land on a child shard that owns
only some of its sub-records, and a KCL consumer silently drops sub-records outside its shard's
range.  Those records must be sent again (the KPL's "Wrong Shard" retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from base64 import b64encode
from collections import deque
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, Protocol

from kpl.accumulator import HASH_KEY, KinesisRecord
from kpl.logs import get_logger
from kpl.retry import ErrorKind, classify_code
from kpl.shard_map import ShardMap

log = get_logger(__name__)


class BatchHandler(Protocol):
    """What a stream pipeline offers the sender."""

    @property
    def request_target(self) -> dict[str, str]: ...

    def on_response(self, batch: list[KinesisRecord], response: dict[str, Any], start: float, end: float) -> None: ...

    def on_request_error(self, batch: list[KinesisRecord], error: BaseException, start: float, end: float) -> None:
        ...

    def on_cancelled(self, batch: list[KinesisRecord]) -> None: ...

    def on_expired_in_backlog(self, batch: list[KinesisRecord], expired: list[KinesisRecord]) -> None: ...


# --- PutRecords bodies ----------------------------------------------------------------------------
#
# botocore serialises a PutRecords call with ``json.dumps``, whose encoder examines every character
# of every base64-encoded ``Data`` string for escaping: 0.4 µs per 100-byte user record and 4 µs per
# KiB, more than everything else the producer does per record.  Base64 needs no escaping, so the
# producer writes the ``Records`` array itself.  It does so through botocore's event hooks: the
# entries are set aside before the parameters are serialised (botocore serialises a one-entry
# placeholder) and spliced into the serialised body before the request is signed and sent.
#
# On the way back, botocore parses each of up to 500 result entries against the output shape, which
# costs some microseconds per entry; a successful PutRecords response is plain JSON of strings and
# numbers, so it is read with ``json.loads`` instead.  Error responses are left to botocore.

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


class Sender:
    """Runs PutRecords for batches, at most ``max_in_flight`` at a time, in submission order."""

    def __init__(self, client: Any, *, max_in_flight: int, request_timeout: float) -> None:
        self._client = client
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self._backlog: deque[tuple[BatchHandler, list[KinesisRecord]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, handler: BatchHandler, batch: list[KinesisRecord]) -> None:
        if len(self._tasks) < self.max_in_flight:
            self._start(handler, batch)
        else:
            self._backlog.append((handler, batch))

    def _start(self, handler: BatchHandler, batch: list[KinesisRecord]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(handler, batch))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug in handling a response: the batch's records may never be resolved.  Say so loudly.
            log.error("PutRecords outcome handling failed", exc_info=task.exception())
        backlog = self._backlog
        while backlog and len(self._tasks) < self.max_in_flight:
            handler, batch = backlog.popleft()
            self._start(handler, batch)

    async def _send(self, handler: BatchHandler, batch: list[KinesisRecord]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            async with asyncio.timeout(self.request_timeout):
                response = await self._client.put_records(Records=[kr.entry for kr in batch], **handler.request_target)
        except asyncio.CancelledError:
            handler.on_cancelled(batch)
            raise
        except Exception as exc:
            handler.on_request_error(batch, exc, start, loop.time())
        else:
            handler.on_response(batch, response, start, loop.time())

    def expire_backlog(self, now: float) -> None:
        """Hand Kinesis records waiting for a connection past their expiry back to their pipelines."""
        kept: deque[tuple[BatchHandler, list[KinesisRecord]]] = deque()
        for handler, batch in self._backlog:
            expired = [kr for kr in batch if kr.expiry <= now]
            if expired:
                # In place: the pipeline knows the batch by identity.
                batch[:] = [kr for kr in batch if kr.expiry > now]
                handler.on_expired_in_backlog(batch, expired)
            if batch:
                kept.append((handler, batch))
        self._backlog = kept

    def take_backlog(self) -> list[tuple[BatchHandler, list[KinesisRecord]]]:
        backlog = list(self._backlog)
        self._backlog.clear()
        return backlog

    async def cancel_all(self) -> None:
        """Cancel requests in flight; their handlers' ``on_cancelled`` accounts for the records."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(slots=True)
class ResponseOutcome:
    """A PutRecords response, entry by entry, in request order within each list."""

    #: (Kinesis record, shard, sequence number): every user record is where it belongs.
    delivered: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)
    #: (Kinesis record, shard, sequence number): some user records are outside the shard's range.
    misrouted: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)
    #: Delivered to a shard the map does not know yet: decide once the map is refreshed.
    unverified: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)
    #: (Kinesis record, error code, error message, kind).
    failed: list[tuple[KinesisRecord, str, str, ErrorKind]] = field(default_factory=list)
    #: Predictions were made with a stale map (a refresh is due).
    stale_map: bool = False


def read_response(
    batch: list[KinesisRecord], response: dict[str, Any], shard_map: ShardMap, start: float, end: float
) -> ResponseOutcome:
    """Classify each entry of a PutRecords response and log the attempt on its Kinesis record.

    Raises ValueError when the response does not have one result per entry (never seen from the
    service; the caller retries the whole batch rather than guess).
    """
    results = response.get("Records") or []
    if len(results) != len(batch):
        raise ValueError(f"PutRecords returned {len(results)} results for {len(batch)} entries")
    outcome = ResponseOutcome()
    for kr, result in zip(batch, results, strict=True):
        sequence_number = result.get("SequenceNumber")
        if sequence_number is None:
            code = result.get("ErrorCode") or "UnknownError"
            message = result.get("ErrorMessage") or ""
            kr.log.append((start, end, code, message))
            outcome.failed.append((kr, code, message, classify_code(code)))
            continue
        shard_id = result["ShardId"]
        kr.log.append((start, end, None, None))
        predicted = kr.shard_id
        if shard_id == predicted or predicted is None:
            outcome.delivered.append((kr, shard_id, sequence_number))
            continue
        outcome.stale_map = True
        if len(kr.records) == 1:
            # A plain record is routed by its own hash key, so it is where it belongs.
            outcome.delivered.append((kr, shard_id, sequence_number))
            continue
        hash_range = shard_map.range_of(shard_id)
        if hash_range is None:
            outcome.unverified.append((kr, shard_id, sequence_number))
            continue
        low, high = hash_range.start, hash_range.end
        if all(low <= record[HASH_KEY] <= high for record in kr.records):
            outcome.delivered.append((kr, shard_id, sequence_number))
        else:
            outcome.misrouted.append((kr, shard_id, sequence_number))
    return outcome
