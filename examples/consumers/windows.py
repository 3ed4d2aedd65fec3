"""Tumbling event-time windows per shard, emitted as JSON lines, checkpointed only behind what is emitted.

A window closes when the shard's watermark (the latest event time seen) passes its end plus
``lateness``; closing emits it.  A late event for a closed window opens a new partial for that
window, so page counts are additive: sum lines by (window, key) for the total across shards.

Checkpoints never move past an event whose window has not been emitted: the checkpoint is the
record just before the first record of the oldest open window, so a worker that crashes replays
exactly its open windows (output is at-least-once: a replay may emit a window again).

When the worker stops (``shutdown_requested``) open windows are emitted with ``"closed": false``.
Then either everything is checkpointed (additive counts: the next owner starts after them), or, for
processors that must see whole windows (``replay_open_windows``, the anomaly query), only the safe
point is: the next owner re-reads the open windows and counts them whole.  At ``shard_ended`` the
shard's windows are final: emitted as closed and checkpointed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from examples.consumers.events import PageEvent, parse_event
from kcl import Checkpointer, Record, RecordProcessor

_output_lock = threading.Lock()
_outputs: dict[str, IO[str]] = {}

Position = tuple[int, int]


def write_lines(env_var: str, lines: list[dict[str, Any]]) -> None:
    """Append JSON lines to the file named by ``env_var`` (stdout when unset), shared by all shards."""
    if not lines:
        return
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    with _output_lock:
        path = os.environ.get(env_var)
        if path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        out = _outputs.get(path)
        if out is None:
            out = _outputs[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the process
        out.write(text)
        out.flush()


@dataclass
class _Window:
    counts: Counter[str] = field(default_factory=Counter)
    #: Position of the record delivered just before this window's first record (None: none yet).
    before: Position | None = None


class TumblingWindowProcessor(RecordProcessor):
    """Counts events per key per window; subclasses choose the key, the length and what to emit."""

    window_seconds = 60
    lateness_seconds = 5
    output_env = "WINDOW_OUTPUT"
    #: On shutdown, leave open windows to be re-read whole by the next owner instead of checkpointing them.
    replay_open_windows = False

    def key(self, event: PageEvent) -> str:
        raise NotImplementedError

    def lines_for(self, start: datetime, counts: Counter[str], closed: bool) -> list[dict[str, Any]]:
        raise NotImplementedError

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.shard_id = shard_id
        self.windows: dict[int, _Window] = {}
        self.watermark = 0.0
        self.last: Position | None = None
        self.last_record: Record | None = None
        self.checkpointed: Position | None = None
        self.ignored = 0

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> None:
        length = self.window_seconds
        for record in records:
            event = parse_event(record)
            if event is None:
                self.ignored += 1
            else:
                moment = event.time.timestamp()
                start = int(moment // length) * length
                window = self.windows.get(start)
                if window is None:
                    window = self.windows[start] = _Window(before=self.last)
                window.counts[self.key(event)] += 1
                if moment > self.watermark:
                    self.watermark = moment
            self.last = (int(record.sequence_number), record.sub_sequence_number)
            self.last_record = record
        closing = sorted(start for start in self.windows if start + length + self.lateness_seconds <= self.watermark)
        self._emit(closing, closed=True)
        self._checkpoint_safe(checkpointer)

    def _emit(self, starts: list[int], *, closed: bool) -> None:
        lines = []
        for start in starts:
            window = self.windows.pop(start)
            lines += self.lines_for(datetime.fromtimestamp(start, UTC), window.counts, closed)
        write_lines(self.output_env, lines)

    def _checkpoint_safe(self, checkpointer: Checkpointer) -> None:
        if self.windows:
            befores = [window.before for window in self.windows.values()]
            if any(before is None for before in befores):
                return
            safe = min(before for before in befores if before is not None)
        else:
            safe = self.last
        if safe is None or (self.checkpointed is not None and safe <= self.checkpointed):
            return
        checkpointer.checkpoint(str(safe[0]), safe[1])
        self.checkpointed = safe

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        if self.replay_open_windows:
            for start in sorted(self.windows):
                write_lines(self.output_env, self.lines_for(datetime.fromtimestamp(start, UTC),
                                                            self.windows[start].counts, False))
            self._checkpoint_safe(checkpointer)
        else:
            self._emit(sorted(self.windows), closed=False)
            checkpointer.checkpoint()

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        self._emit(sorted(self.windows), closed=True)
        checkpointer.checkpoint()
