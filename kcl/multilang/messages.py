"""The MultiLang protocol's messages: one JSON object per line, the action named by ``"action"``.

What the Java MultiLangDaemon writes to the child's stdin (and amazon-kclpy reads)::

    {"action":"initialize","shardId":"shardId-000000000001","sequenceNumber":"TRIM_HORIZON","subSequenceNumber":0}
    {"action":"processRecords","records":[{"action":"record","data":"<base64>","partitionKey":"k",
     "sequenceNumber":"4959...","approximateArrivalTimestamp":1700000000000,"subSequenceNumber":0}],
     "millisBehindLatest":0}
    {"action":"leaseLost"}  {"action":"shardEnded"}  {"action":"shutdownRequested"}
    {"action":"checkpoint","sequenceNumber":"4959...","subSequenceNumber":3,"error":null}   (the outcome)

What it reads from the child's stdout: ``{"action":"checkpoint","sequenceNumber":...|null,
"subSequenceNumber":...|null}`` (null: everything processed so far) and ``{"action":"status",
"responseFor":"<the action handled>"}``.  Every field is written, null included, as Jackson does:
amazon-kclpy reads them by key.  A line that is not such a message (empty, not JSON, no known
action) is not part of the protocol; the reader skips it as the daemon does.

A failed checkpoint is answered with the simple name of the Java exception the KCL would have thrown,
which is what amazon-kclpy's ``CheckpointError.value`` holds and its samples test for.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from kcl.errors import CheckpointThrottledError, InvalidCheckpointError, LeaseLostError
from kcl.processor import Record

INITIALIZE = "initialize"
PROCESS_RECORDS = "processRecords"
LEASE_LOST = "leaseLost"
SHARD_ENDED = "shardEnded"
SHUTDOWN_REQUESTED = "shutdownRequested"
CHECKPOINT = "checkpoint"
STATUS = "status"

#: Actions the daemon writes and the child never should (the daemon ignores them if it does).
DAEMON_ACTIONS = frozenset({INITIALIZE, PROCESS_RECORDS, LEASE_LOST, SHARD_ENDED, SHUTDOWN_REQUESTED, "shutdown",
                            "record"})

#: Checkpoint outcomes, by the Java exception's simple name.
SHUTDOWN_EXCEPTION = "ShutdownException"  # the lease is gone: stop processing this shard
THROTTLING_EXCEPTION = "ThrottlingException"  # DynamoDB throttled: try again later
INVALID_STATE_EXCEPTION = "InvalidStateException"  # no checkpointer for this call (initialize, leaseLost)
DEPENDENCY_EXCEPTION = "KinesisClientLibDependencyException"  # DynamoDB failed: try again later
ILLEGAL_ARGUMENT_EXCEPTION = "IllegalArgumentException"  # malformed, below the last one, beyond what is processed

def _line(message: dict[str, Any]) -> bytes:
    # ASCII with \u escapes: whatever encoding the child reads its stdin with, the line decodes the same.
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("ascii")


def encode_initialize(shard_id: str, sequence_number: str | None, sub_sequence_number: int | None) -> bytes:
    return _line({"action": INITIALIZE, "shardId": shard_id, "sequenceNumber": sequence_number,
                  "subSequenceNumber": sub_sequence_number})


def _millis(record: Record) -> int | None:
    stamp = record.approximate_arrival_timestamp
    return None if stamp is None else round(stamp.timestamp() * 1000)


def encode_process_records(records: list[Record], millis_behind_latest: int | None) -> bytes:
    b64 = base64.b64encode
    return _line({"action": PROCESS_RECORDS, "records": [
        {"action": "record", "data": b64(record.data).decode("ascii"), "partitionKey": record.partition_key,
         "sequenceNumber": record.sequence_number, "approximateArrivalTimestamp": _millis(record),
         "subSequenceNumber": record.sub_sequence_number}
        for record in records], "millisBehindLatest": millis_behind_latest})


def encode_action(action: str) -> bytes:
    """``leaseLost``, ``shardEnded`` and ``shutdownRequested`` carry nothing but their action."""
    return _line({"action": action})


def encode_checkpoint_outcome(sequence_number: Any, sub_sequence_number: Any, error: str | None) -> bytes:
    """The answer to a checkpoint request: the values asked for, and the error's name (null: done)."""
    return _line({"action": CHECKPOINT, "sequenceNumber": sequence_number, "subSequenceNumber": sub_sequence_number,
                  "error": error})


@dataclass(frozen=True, slots=True)
class Status:
    """The child has finished handling ``response_for``."""

    response_for: str | None


@dataclass(frozen=True, slots=True)
class CheckpointRequest:
    """Checkpoint at ``sequence_number``/``sub_sequence_number`` (as sent: the values are checked later),
    or at everything processed so far when ``sequence_number`` is None."""

    sequence_number: Any
    sub_sequence_number: Any


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A message of the protocol that the child has no business sending (e.g. an echoed ``initialize``)."""

    action: str


ChildMessage = Status | CheckpointRequest | OtherMessage


def decode(line: str) -> ChildMessage | None:
    """The message a line of the child's stdout carries; None for a line outside the protocol."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    action = message.get("action")
    if action == STATUS:
        response_for = message.get("responseFor")
        return Status(response_for if isinstance(response_for, str) else None)
    if action == CHECKPOINT:
        return CheckpointRequest(message.get("sequenceNumber"), message.get("subSequenceNumber"))
    if action in DAEMON_ACTIONS:
        return OtherMessage(str(action))
    return None


def checkpoint_error_name(error: BaseException) -> str:
    """The Java exception name the KCL would have answered a checkpoint with for ``error``."""
    if isinstance(error, LeaseLostError):
        return SHUTDOWN_EXCEPTION
    if isinstance(error, CheckpointThrottledError):
        return THROTTLING_EXCEPTION
    if isinstance(error, InvalidCheckpointError):
        return ILLEGAL_ARGUMENT_EXCEPTION
    return DEPENDENCY_EXCEPTION  # CheckpointDependencyError, and anything unforeseen: retrying later is safe


def checkpoint_arguments(request: CheckpointRequest) -> tuple[str | None, int | None]:
    """``(sequence number, sub-sequence number)`` for :meth:`kcl.Checkpointer.checkpoint`.

    A null sequence number means ``checkpoint()`` (a sub-sequence number alone is ignored, as the daemon
    ignores it); numbers sent as JSON numbers or numeric strings are taken, as Jackson takes them.
    Anything else raises :class:`kcl.InvalidCheckpointError` (answered ``IllegalArgumentException``).
    """
    sequence, sub = request.sequence_number, request.sub_sequence_number
    if sequence is None:
        return None, None
    if isinstance(sequence, bool) or not isinstance(sequence, (str, int)):
        raise InvalidCheckpointError(f"sequenceNumber must be a string, got {sequence!r}")
    if sub is None:
        return str(sequence), None
    if isinstance(sub, str) and sub.strip().lstrip("-").isdigit():
        sub = int(sub)
    if isinstance(sub, bool) or not isinstance(sub, int):
        raise InvalidCheckpointError(f"subSequenceNumber must be an integer, got {sub!r}")
    return str(sequence), sub
