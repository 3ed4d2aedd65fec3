"""What user code implements: a :class:`RecordProcessor` per shard lease, fed :class:`Record` batches.

The lifecycle is amazon-kclpy v3's, so a kclpy processor ports by renaming its base class:

    initialize -> process_records* -> one of
        lease_lost                       (another worker has the shard; cannot checkpoint)
        shard_ended(checkpointer)        (resharding: must checkpoint, children wait for it)
        shutdown_requested(checkpointer) (graceful stop or rebalancing; checkpoint now), then lease_lost

Each method may be a plain function or a coroutine.  Plain ones run in a thread of their own per
shard, so blocking work there cannot stall other shards or the lease renewer; coroutines run on the
worker's event loop and must not block it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kcl.checkpointer import Checkpointer


@dataclass(slots=True)
class Record:
    """One user record.  KPL aggregates arrive already split into their sub-records.

    A plain (non-aggregated) record has ``sub_sequence_number`` 0 and no ``explicit_hash_key``
    (GetRecords does not return one).  ``(sequence_number, sub_sequence_number)`` is the record's
    position for :meth:`kcl.Checkpointer.checkpoint`.
    """

    data: bytes
    partition_key: str
    sequence_number: str
    sub_sequence_number: int
    approximate_arrival_timestamp: datetime | None
    explicit_hash_key: str | None
    aggregated: bool = False


class RecordProcessor:
    """Base class of record processors; override what you need (``process_records`` at least).

    One instance serves one shard lease for one tenure; the worker creates a fresh one from its
    factory whenever it (re)acquires a lease.
    """

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> Any:
        """Called once before the first batch with the position processing resumes from."""

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> Any:
        """Handle a batch.  Returning normally means the batch is done; raising means it is retried.

        Checkpoint when it suits you: ``checkpointer.checkpoint()`` records everything delivered so far.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement process_records")

    def lease_lost(self) -> Any:
        """The lease is gone (taken by another worker, or released after shutdown_requested)."""

    def shard_ended(self, checkpointer: Checkpointer) -> Any:
        """The shard was closed by a split or merge and every record has been delivered.

        The shard's children start only after this checkpoints (the default does).  Override it if you
        buffer records and flush the buffer before checkpointing.
        """
        return checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> Any:
        """The worker is stopping or handing this shard to another worker: checkpoint what is done."""
