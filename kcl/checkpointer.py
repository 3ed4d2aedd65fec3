"""Recording progress: the checkpointer handed to ``process_records``, ``shard_ended`` and ``shutdown_requested``.

Rules (the Java KCL's, made explicit):

* A checkpoint must lie between the last checkpoint and the last record *processed*: the last record of
  the last batch whose ``process_records`` returned normally (or that went to ``dead_letter``).
  ``checkpoint()`` with no argument means the latter.  While ``process_records`` runs, the batch in
  hand may be checkpointed too (the processor says it is done with what it checkpoints); if the call
  then raises, the limit falls back, so a ``shutdown_requested`` or ``shard_ended`` after a failed
  batch cannot record it.  Anything else raises :class:`InvalidCheckpointError`: a checkpoint never
  moves past records that were not processed.
* Once the lease is lost, released or self-fenced, or a newer tenure holds it, every checkpoint
  raises :class:`LeaseLostError`; the write itself is conditional on ``leaseCounter``, so even a
  stale in-memory view cannot overwrite another worker's progress.
* At the end of a shard the largest permitted value is SHARD_END; checkpointing the last record
  there records SHARD_END, which is what lets the shard's children start.
* ``prepare_checkpoint`` writes the pending fields (two-phase); the returned
  :class:`PreparedCheckpointer` commits them.  Any later checkpoint discards a prepared one.

The blocking methods suit plain (threaded) processors.  Coroutine processors use the ``a``-prefixed
ones; calling a blocking one on the event loop is refused rather than silently stalling every shard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kcl.errors import (
    CheckpointDependencyError,
    CheckpointError,
    CheckpointThrottledError,
    InvalidCheckpointError,
    KclError,
)
from kcl.leases import Lease, LeaseTable, describe_failure
from kcl.processor import Record
from kcl.renewer import HeldLeases
from kcl.sequence import ESN_SHARD_END, ExtendedSequenceNumber, is_sequence_number
from kpl.retry import ErrorKind, classify, stop_when

CheckpointTarget = Record | str | ExtendedSequenceNumber | None


class PreparedCheckpointer:
    """A prepared (pending) checkpoint; ``checkpoint()`` makes it the checkpoint."""

    def __init__(self, checkpointer: Checkpointer, value: ExtendedSequenceNumber) -> None:
        self._checkpointer = checkpointer
        self.pending_checkpoint = value

    def checkpoint(self) -> None:
        self._checkpointer.checkpoint(self.pending_checkpoint)

    async def acheckpoint(self) -> None:
        await self._checkpointer.acheckpoint(self.pending_checkpoint)


class Checkpointer:
    """Checkpoints for one shard, one tenure."""

    def __init__(
        self, shard_id: str, token: str, held: HeldLeases, table: LeaseTable, last_checkpoint: ExtendedSequenceNumber,
    ) -> None:
        self.shard_id = shard_id
        self._token = token
        self._held = held
        self._table = table
        # Created on the worker's event loop thread, the one thread where blocking calls are refused.
        self._loop_thread = threading.get_ident()
        self.last_checkpoint = last_checkpoint
        #: The largest value a checkpoint may take now: the last record processed, the last record of the
        #: batch in hand while ``process_records`` runs, SHARD_END once the shard's end was processed.
        self.largest_permitted = last_checkpoint
        self._last_processed = last_checkpoint
        #: Monotonic time the oldest batch processed and not yet covered by a checkpoint was done (None when
        #: the checkpoint covers everything processed); an upper bound after a checkpoint inside that range.
        self._uncovered_since: float | None = None
        self._lock = threading.Lock()

    # --- set by the shard consumer ------------------------------------------------------------------

    def batch_started(self, last: ExtendedSequenceNumber) -> None:
        """A batch ending at ``last`` goes to ``process_records``: until it returns, it may be checkpointed."""
        self.largest_permitted = last

    def batch_done(self, last: ExtendedSequenceNumber) -> None:
        """``process_records`` returned normally for the batch ending at ``last`` (or it was dead-lettered)."""
        self._last_processed = last
        self.largest_permitted = last
        if self._uncovered_since is None and last > self.last_checkpoint:
            self._uncovered_since = time.monotonic()

    def batch_failed(self) -> None:
        """``process_records`` raised (or was abandoned): nothing of that batch may be checkpointed now."""
        self.largest_permitted = self._last_processed

    def at_shard_end(self) -> None:
        self.largest_permitted = ESN_SHARD_END

    @property
    def last_processed(self) -> ExtendedSequenceNumber:
        """The last record of the last batch processed (the starting checkpoint before the first one)."""
        return self._last_processed

    def checkpoint_age(self, now: float) -> float:
        """How long processed records have waited for a checkpoint: seconds since the oldest batch processed
        that no checkpoint covers yet was done (0 when the checkpoint covers everything processed)."""
        since = self._uncovered_since
        return 0.0 if since is None else max(0.0, now - since)

    # --- the processor's API ------------------------------------------------------------------------

    def checkpoint(self, target: CheckpointTarget = None, sub_sequence_number: int | None = None) -> None:
        """Record progress: everything processed (no argument), a record, or a sequence number."""
        self._refuse_on_event_loop("checkpoint")
        if target is None and sub_sequence_number is None and self.largest_permitted == self.last_checkpoint \
                and not self._has_pending():
            return
        value = self._resolve(target, sub_sequence_number)
        with self._lock:
            if value == self.last_checkpoint and not self._has_pending():
                return
            self._write(self._table.checkpoint, value)
            self.last_checkpoint = value
            if value >= self._last_processed:
                self._uncovered_since = None

    def prepare_checkpoint(
        self, target: CheckpointTarget = None, sub_sequence_number: int | None = None, state: bytes | None = None,
    ) -> PreparedCheckpointer:
        """Write a pending checkpoint (and optional application state) without moving the checkpoint."""
        self._refuse_on_event_loop("prepare_checkpoint")
        if state is not None and not isinstance(state, (bytes, bytearray)):
            raise InvalidCheckpointError(f"checkpoint state must be bytes, got {type(state).__name__}")
        value = self._resolve(target, sub_sequence_number)
        with self._lock:
            self._write(self._table.prepare_checkpoint, value, bytes(state) if state else None)
        return PreparedCheckpointer(self, value)

    async def acheckpoint(self, target: CheckpointTarget = None, sub_sequence_number: int | None = None) -> None:
        await self._off_loop(self.checkpoint, target, sub_sequence_number)

    async def aprepare_checkpoint(
        self, target: CheckpointTarget = None, sub_sequence_number: int | None = None, state: bytes | None = None,
    ) -> PreparedCheckpointer:
        prepared: PreparedCheckpointer = await self._off_loop(self.prepare_checkpoint, target, sub_sequence_number,
                                                              state)
        return prepared

    # --- internals ----------------------------------------------------------------------------------

    async def _off_loop(self, method: Any, *args: Any) -> Any:
        return await self._table.call(method, *args)

    def _refuse_on_event_loop(self, name: str) -> None:
        if threading.get_ident() == self._loop_thread:
            raise KclError(
                f"{name}() blocks on DynamoDB and was called on the worker's event loop: "
                f"use 'await checkpointer.a{name}(...)' in async processors"
            )

    def _has_pending(self) -> bool:
        held = self._held.get(self.shard_id)
        return held is not None and held.lease.pending_checkpoint is not None

    def _resolve(self, target: CheckpointTarget, sub_sequence_number: int | None) -> ExtendedSequenceNumber:
        if target is None:
            if sub_sequence_number is not None:
                raise InvalidCheckpointError("a sub-sequence number needs a sequence number")
            value = self.largest_permitted
        elif isinstance(target, ExtendedSequenceNumber):
            value = target
        elif isinstance(target, Record):
            value = ExtendedSequenceNumber(target.sequence_number, target.sub_sequence_number)
        elif isinstance(target, str):
            if not is_sequence_number(target):
                raise InvalidCheckpointError(f"{target!r} is not a sequence number (decimal digits)")
            sub = 0 if sub_sequence_number is None else sub_sequence_number
            if isinstance(sub, bool) or not isinstance(sub, int) or sub < 0:
                raise InvalidCheckpointError(f"sub-sequence number must be an int >= 0, got {sub!r}")
            value = ExtendedSequenceNumber(target, sub)
        else:
            raise InvalidCheckpointError(
                f"checkpoint() takes a Record, a sequence number string or nothing, not {type(target).__name__}"
            )
        return self._validated(value)

    def _validated(self, value: ExtendedSequenceNumber) -> ExtendedSequenceNumber:
        if self.largest_permitted.is_shard_end and value == self._last_processed and not value.is_sentinel:
            value = ESN_SHARD_END
        if value.is_sentinel and not value.is_shard_end:
            raise InvalidCheckpointError(f"cannot checkpoint at the starting position {value.sequence_number}")
        if value > self.largest_permitted:
            raise InvalidCheckpointError(
                f"checkpoint {value} on {self.shard_id} is beyond the last record processed "
                f"({self.largest_permitted}); the records of a batch whose process_records raised are not processed"
            )
        if value < self.last_checkpoint:
            raise InvalidCheckpointError(
                f"checkpoint {value} on {self.shard_id} is before the last checkpoint ({self.last_checkpoint})"
            )
        return value

    def _write(self, method: Callable[..., Lease], *args: Any) -> None:
        """``method(lease, *args)`` on this tenure's lease, retried on this (the processor's) thread as the
        table retries it, until the lease is lost or fenced: a checkpoint is never retried past the tenure."""
        tenure_over = stop_when(lambda: not self._held.is_current(self.shard_id, self._token))

        def operation(lease: Lease) -> Lease:
            return self._table.call_blocking(method, lease, *args, stop=tenure_over)

        try:
            self._held.write(self.shard_id, self._token, operation)
        except CheckpointError:
            raise
        except Exception as exc:
            kind = classify(exc)
            if kind is ErrorKind.THROTTLED:
                raise CheckpointThrottledError(f"checkpoint on {self.shard_id} throttled: {describe_failure(exc)}") \
                    from exc
            raise CheckpointDependencyError(f"checkpoint on {self.shard_id} failed: {describe_failure(exc)}") from exc
