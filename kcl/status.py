"""``kcl-worker status``: the lease table, per shard — owner, checkpoint, lag, last processing, last renewal.

Everything comes from one consistent Scan of the lease table; nothing asks the workers.  Lag and
processing time come from the attributes our workers add to their renewals (``pyMillisBehindLatest``,
``pyProcessedAt``; kcl.leases), so a lease a Java worker owns shows them as unknown.  The renewal age
comes from ``pyCounterChangedAt``, which counts only while ``leaseCounter`` still holds the value our
write gave it (a Java worker's renewal since makes it unknown rather than wrong); with ``--watch``, the
age of a counter without it is bounded from the reads themselves (changed since the previous read: "<";
unchanged since the first: ">=").

Ages compare the workers' wall clocks with this host's: keep them synchronised (NTP), as AWS hosts are.
This module reads and formats; writing to the terminal (once, or ``--watch``) is the CLI's (kcl.cli).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kcl.errors import LeaseTableError
from kcl.leases import Lease, LeaseTable, TableSettings, describe_failure
from kpl.errors import KinesisToolkitError

COLUMNS = ("shard", "owner", "checkpoint", "lag", "processed", "renewed", "parents", "state")


def lease_state(lease: Lease, leases: Sequence[Lease]) -> str:
    by_key = {other.lease_key: other for other in leases}
    if lease.is_shard_end:
        return "finished (SHARD_END)"
    if lease.checkpoint_owner is not None:
        return f"handing over from {lease.checkpoint_owner}"
    waiting = sorted(p for p in lease.parent_shard_ids if p in by_key and not by_key[p].is_shard_end)
    if waiting:
        return "waiting on parents"
    if lease.lease_owner is None:
        return "unowned"
    if lease.pending_checkpoint is not None:
        return "processing (checkpoint prepared)"
    if lease.checkpoint.is_start:
        return f"starting at {lease.checkpoint.sequence_number}"
    return "processing"


@dataclass(frozen=True, slots=True)
class RenewalAge:
    seconds: float
    #: "exact" (from the renewal's own timestamp), "at most" or "at least" (bounded by watching).
    bound: str

    def __str__(self) -> str:
        mark = {"exact": "", "at most": "<", "at least": ">="}[self.bound]
        return f"{mark}{format_seconds(self.seconds)} ago"


class CounterWatch:
    """Bounds the age of lease counters that carry no timestamp, from successive reads (``--watch``)."""

    def __init__(self) -> None:
        self._reads = 0
        self._previous_read: float | None = None
        #: lease key -> (counter, first seen at, changed after this read time or None)
        self._seen: dict[str, tuple[int, float, float | None]] = {}

    def observe(self, leases: Sequence[Lease], now: float) -> None:
        seen: dict[str, tuple[int, float, float | None]] = {}
        for lease in leases:
            known = self._seen.get(lease.lease_key)
            if known is None:
                seen[lease.lease_key] = (lease.lease_counter, now, None)
            elif known[0] != lease.lease_counter:
                seen[lease.lease_key] = (lease.lease_counter, known[1], self._previous_read)
            else:
                seen[lease.lease_key] = known
        self._seen = seen
        self._previous_read = now
        self._reads += 1

    def age(self, lease_key: str, now: float) -> RenewalAge | None:
        known = self._seen.get(lease_key)
        if known is None or self._reads < 2:
            return None
        _, first_seen, changed_after = known
        if changed_after is not None:
            return RenewalAge(now - changed_after, "at most")
        return RenewalAge(now - first_seen, "at least")


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 100:
        return f"{seconds:.0f}s"
    if seconds < 6000:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _iso(epoch_seconds: float | None) -> str | None:
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusReader:
    """Reads the table and turns leases into rows; keeps what ``--watch`` needs between reads."""

    def __init__(self, table_name: str, application: str, *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.application = application
        self.table = LeaseTable(TableSettings(table_name=table_name))
        self.counters = CounterWatch()
        self._clock = clock
        self._wall_clock = wall_clock
        self._checked = False

    def close(self) -> None:
        self.table.close()

    def read(self) -> list[Lease]:
        try:
            if not self._checked:
                if not self.table.exists():
                    raise LeaseTableError(f"lease table {self.table.name!r} does not exist "
                                          f"(has application {self.application!r} ever run?)")
                self._checked = True
            leases = self.table.call_blocking(self.table.list_leases)
        except KinesisToolkitError:
            raise
        except Exception as exc:
            raise LeaseTableError(f"cannot read the lease table: {describe_failure(exc)}") from exc
        leases.sort(key=lambda lease: lease.lease_key)
        self.counters.observe(leases, self._clock())
        return leases

    def rows(self, leases: Sequence[Lease]) -> list[dict[str, Any]]:
        """One JSON-ready dict per lease."""
        now, wall = self._clock(), self._wall_clock()
        read_at = _iso(wall)
        rows = []
        for lease in leases:
            renewal: RenewalAge | None
            if lease.counter_changed_at is not None:
                renewal = RenewalAge(max(0.0, wall - lease.counter_changed_at), "exact")
            else:
                renewal = self.counters.age(lease.lease_key, now)
            rows.append({
                "shard": lease.lease_key,
                "owner": lease.lease_owner,
                "checkpoint": lease.checkpoint.sequence_number,
                "checkpoint_sub_sequence_number": lease.checkpoint.sub_sequence_number,
                "lease_counter": lease.lease_counter,
                "parents": sorted(lease.parent_shard_ids),
                "state": lease_state(lease, leases),
                "lag_millis": lease.millis_behind_latest,
                "processed_at": _iso(lease.processed_at),
                "processed_age_seconds": None if lease.processed_at is None
                else round(max(0.0, wall - lease.processed_at), 3),
                "renewed_at": _iso(lease.counter_changed_at),
                "renewal_age_seconds": None if renewal is None else round(renewal.seconds, 3),
                "renewal_age_is": None if renewal is None else renewal.bound,
                "read_at": read_at,
            })
        return rows

    def render(self, leases: Sequence[Lease]) -> str:
        rows = self.rows(leases)
        table = [COLUMNS]
        for lease, row in zip(leases, rows, strict=True):
            if lease.is_shard_end:
                lag = processed = "-"
            else:
                lag = "unknown" if row["lag_millis"] is None else format_seconds(row["lag_millis"] / 1000)
                processed = ("unknown" if row["processed_age_seconds"] is None
                             else f"{format_seconds(row['processed_age_seconds'])} ago")
            renewal = (str(RenewalAge(row["renewal_age_seconds"], row["renewal_age_is"]))
                       if row["renewal_age_seconds"] is not None else "unknown")
            table.append((row["shard"], row["owner"] or "-", str(lease.checkpoint), lag, processed, renewal,
                          ",".join(row["parents"]) or "-", row["state"]))
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                 for line in table]
        lines.insert(1, "  ".join("-" * width for width in widths))
        summary = (f"{len(leases)} lease(s); {sum(1 for lease in leases if lease.lease_owner)} owned by "
                   f"{len({lease.lease_owner for lease in leases if lease.lease_owner})} worker(s)")
        lagging = [(row["lag_millis"], row["shard"]) for lease, row in zip(leases, rows, strict=True)
                   if row["lag_millis"] is not None and not lease.is_shard_end]
        if lagging:
            millis, shard = max(lagging)
            summary += f"; largest lag {format_seconds(millis / 1000)} ({shard})"
        lines.append(summary)
        return "\n".join(lines)
