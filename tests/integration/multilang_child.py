#!/usr/bin/env python3
"""A MultiLang protocol client written from the protocol's description (not amazon-kclpy), for the tests.

Reads one JSON message per line on stdin, answers ``status`` for each, asks for checkpoints on stdout
and reads their outcome back from stdin.  Everything it sees and does is appended as JSON lines to
``$MLC_OUT/<pid>.jsonl`` (``init``, ``rec`` per record, ``ckpt`` with the outcome, ``lost``, ``end``,
``shutdown``, ``eof``), so a test can assert from the outside.  Behaviour, from the environment:

* ``MLC_CHECKPOINT``: after each batch, ``last`` (the batch's last record, sequence and sub-sequence
  number), ``none`` (never), or ``all`` (``checkpoint()`` without arguments; the default).
* ``MLC_CHECKPOINT_AT_SUB``: also checkpoint, first, at the record of each batch whose sub-sequence
  number is this (a position inside a KPL aggregate).
* ``MLC_ON_SHUTDOWN``: ``checkpoint`` (the default) or ``nothing`` in ``shutdownRequested``.
* ``MLC_ON_SHARD_END``: ``checkpoint`` (the default) or ``nothing`` in ``shardEnded``.
* Records whose data contains ``die``, ``hang``, ``wrong-status`` or ``wait`` trigger, once per test
  (a marker file in ``$MLC_OUT`` remembers it): exit with status 3 before answering; sleep until
  killed; answer ``status`` for another action; block until ``$MLC_OUT/gate`` exists, then checkpoint
  the batch and record the outcome.
* Also prints a stray line on stdout and a line on stderr at ``initialize`` (the daemon must log them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(os.environ["MLC_OUT"])
EVENTS = (OUT / f"{os.getpid()}.jsonl").open("a", encoding="utf-8")
shard = "?"


def event(kind: str, **fields: Any) -> None:
    # "w" (the writer) is what tests/integration/kcl_processors.read_events orders ties by.
    line = {"e": kind, "pid": os.getpid(), "w": str(os.getpid()), "s": shard, "m": time.monotonic(), **fields}
    EVENTS.write(json.dumps(line) + "\n")
    EVENTS.flush()


def send(message: dict[str, Any]) -> None:
    sys.stdout.write("\n" + json.dumps(message) + "\n")
    sys.stdout.flush()


def receive() -> dict[str, Any] | None:
    line = sys.stdin.readline()
    if not line:
        return None
    message: dict[str, Any] = json.loads(line)
    return message


def checkpoint(sequence_number: str | None = None, sub_sequence_number: int | None = None) -> str | None:
    send({"action": "checkpoint", "sequenceNumber": sequence_number, "subSequenceNumber": sub_sequence_number})
    answer = receive()
    if answer is None or answer.get("action") != "checkpoint":
        event("ckpt-bad-answer", answer=answer)
        sys.exit(4)
    error = answer.get("error")
    event("ckpt", q=sequence_number, u=sub_sequence_number, error=error)
    return error


def first_time(trigger: str) -> bool:
    marker = OUT / f"{trigger}.done"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def process(message: dict[str, Any]) -> str:
    """Handle processRecords; returns the action to report as done."""
    records = message["records"]
    for record in records:
        event("rec", q=record["sequenceNumber"], u=record["subSequenceNumber"], k=record["partitionKey"],
              d=__import__("base64").b64decode(record["data"]).decode(), t=record["approximateArrivalTimestamp"],
              behind=message["millisBehindLatest"])
    data = " ".join(__import__("base64").b64decode(r["data"]).decode() for r in records)
    if "die" in data and first_time("die"):
        event("dying")
        sys.exit(3)
    if "hang" in data and first_time("hang"):
        event("hanging")
        time.sleep(3600)
    if "wrong-status" in data and first_time("wrong-status"):
        event("wrong-status")
        return "initialize"
    if "wait" in data and first_time("wait"):
        event("waiting")
        deadline = time.monotonic() + 60
        while not (OUT / "gate").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        checkpoint()
        return "processRecords"
    at_sub = os.environ.get("MLC_CHECKPOINT_AT_SUB")
    if at_sub is not None:
        for record in records:
            if record["subSequenceNumber"] == int(at_sub):
                checkpoint(record["sequenceNumber"], record["subSequenceNumber"])
                break
    mode = os.environ.get("MLC_CHECKPOINT", "all")
    if mode == "all" and records:
        checkpoint()
    elif mode == "last" and records:
        checkpoint(records[-1]["sequenceNumber"], records[-1]["subSequenceNumber"])
    return "processRecords"


def main() -> None:
    global shard
    while True:
        message = receive()
        if message is None:
            event("eof")
            return
        action = message["action"]
        done = action
        if action == "initialize":
            shard = message["shardId"]
            event("init", q=message["sequenceNumber"], u=message["subSequenceNumber"])
            print("a stray line on stdout, not a protocol message", flush=True)
            sys.stderr.write(f"child for {shard} started\n")
            sys.stderr.flush()
        elif action == "processRecords":
            done = process(message)
        elif action == "leaseLost":
            event("lost")
            checkpoint()  # refused: no checkpointer while the lease is lost
        elif action == "shardEnded":
            event("end")
            if os.environ.get("MLC_ON_SHARD_END", "checkpoint") == "checkpoint":
                checkpoint()
        elif action == "shutdownRequested":
            event("shutdown")
            if os.environ.get("MLC_ON_SHUTDOWN", "checkpoint") == "checkpoint":
                checkpoint()
        send({"action": "status", "responseFor": done})


if __name__ == "__main__":
    main()
