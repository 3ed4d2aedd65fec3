"""Checkpoint validation, tenure fencing and lease renewal decisions, against an in-memory lease store.

The store below implements the lease table's conditional writes in memory: it is a stand-in for
DynamoDB in tests of logic that has no I/O of its own (the real table is exercised by the
integration tests).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from kcl.checkpointer import Checkpointer
from kcl.config import MetricsLevel
from kcl.errors import InvalidCheckpointError, KclError, LeaseLostError
from kcl.leases import ConditionFailed, Lease
from kcl.metrics import KclMetrics
from kcl.processor import Record
from kcl.renewer import HeldLeases, LeaseRenewer
from kcl.sequence import ESN_SHARD_END, ESN_TRIM_HORIZON, ExtendedSequenceNumber
from kpl.cloudwatch import MetricsRegistry

FAILOVER = 10.0
SHARD = "shardId-000000000001"


class MemoryLeases:
    """In-memory lease rows with the lease table's conditions."""

    def __init__(self, *leases: Lease) -> None:
        self.rows = {lease.lease_key: lease for lease in leases}
        self.writes = 0

    def _expect(self, lease: Lease) -> Lease:
        current = self.rows.get(lease.lease_key)
        if current is None or current.lease_counter != lease.lease_counter:
            raise ConditionFailed(lease.lease_key)
        return current

    def _store(self, lease: Lease) -> Lease:
        self.writes += 1
        self.rows[lease.lease_key] = lease
        return lease

    def checkpoint(self, lease: Lease, value: ExtendedSequenceNumber) -> Lease:
        current = self._expect(lease)
        return self._store(current.with_(lease_counter=current.lease_counter + 1, checkpoint=value,
                                         pending_checkpoint=None, pending_checkpoint_state=None))

    def prepare_checkpoint(self, lease: Lease, value: ExtendedSequenceNumber, state: bytes | None) -> Lease:
        current = self._expect(lease)
        return self._store(current.with_(lease_counter=current.lease_counter + 1, pending_checkpoint=value,
                                         pending_checkpoint_state=state))

    def renew(self, lease: Lease, owner: str, *, as_previous_owner: bool = False,
              progress: tuple[int, float] | None = None) -> Lease:
        current = self._expect(lease)
        if as_previous_owner and current.checkpoint_owner != owner:
            raise ConditionFailed(lease.lease_key)
        if not as_previous_owner and (current.lease_owner != owner or current.checkpoint_owner is not None):
            raise ConditionFailed(lease.lease_key)
        renewed = current.with_(lease_counter=current.lease_counter + 1)
        if progress is not None:
            renewed = renewed.with_(millis_behind_latest=progress[0], processed_at=progress[1])
        return self._store(renewed)

    def get(self, key: str) -> Lease | None:
        return self.rows.get(key)

    async def call(self, method: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: method(*args))

    def call_blocking(self, method: Any, *args: Any, **retries: Any) -> Any:
        return method(*args)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(checkpoint: ExtendedSequenceNumber = ESN_TRIM_HORIZON) -> tuple[MemoryLeases, HeldLeases, FakeClock, str]:
    lease = Lease(SHARD, lease_owner="me", lease_counter=7, checkpoint=checkpoint)
    store = MemoryLeases(lease)
    clock = FakeClock()
    held_leases = HeldLeases(store, "me", FAILOVER, 0.025, clock)  # type: ignore[arg-type]
    held = held_leases.add(lease, clock())
    return store, held_leases, clock, held.token


def make_checkpointer(checkpoint: ExtendedSequenceNumber = ESN_TRIM_HORIZON) -> tuple[Checkpointer, MemoryLeases,
                                                                                    HeldLeases, FakeClock]:
    store, held, clock, token = setup(checkpoint)
    result: list[Checkpointer] = []
    # Built on another thread: the refusal of blocking calls applies to the thread it was created on.
    thread = threading.Thread(target=lambda: result.append(
        Checkpointer(SHARD, token, held, store, checkpoint)))  # type: ignore[arg-type]
    thread.start()
    thread.join()
    return result[0], store, held, clock


def record(sequence: str, sub: int = 0) -> Record:
    return Record(b"x", "k", sequence, sub, None, None)


# --- validation -----------------------------------------------------------------------------------


def test_checkpoint_with_no_argument_records_the_last_processed_record() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("200", 3))
    checkpointer.checkpoint()
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("200", 3)
    assert store.rows[SHARD].lease_counter == 8


def test_checkpoint_a_record_or_a_sequence_number() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("300"))
    checkpointer.checkpoint(record("200", 4))
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("200", 4)
    checkpointer.checkpoint("250")
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("250", 0)
    checkpointer.checkpoint("250", 1)
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("250", 1)


def test_nothing_delivered_makes_checkpoint_a_no_op() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.checkpoint()
    assert store.writes == 0


def test_same_value_twice_writes_once() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("5"))
    checkpointer.checkpoint()
    checkpointer.checkpoint()
    assert store.writes == 1


@pytest.mark.parametrize(("args", "message"), [
    (("301",), "beyond the last record processed"),
    ((record("300", 1),), "beyond the last record processed"),
    (("99",), "before the last checkpoint"),
    (("abc",), "is not a sequence number"),
    (("200", -1), "sub-sequence number must be an int >= 0"),
    ((None, 3), "needs a sequence number"),
    ((ESN_TRIM_HORIZON,), "starting position"),
    ((12345,), "takes a Record, a sequence number string or nothing"),
])
def test_invalid_checkpoints_raise_a_clear_error(args: tuple[Any, ...], message: str) -> None:
    checkpointer, store, _, _ = make_checkpointer(ExtendedSequenceNumber("100"))
    checkpointer.batch_done(ExtendedSequenceNumber("300"))
    with pytest.raises(InvalidCheckpointError, match=message):
        checkpointer.checkpoint(*args)
    assert store.writes == 0


def test_the_batch_in_hand_may_be_checkpointed_while_process_records_runs() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("100"))
    checkpointer.batch_started(ExtendedSequenceNumber("300", 2))
    checkpointer.checkpoint(record("200"))  # a record of the batch the processor is working on
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("200")
    checkpointer.checkpoint()  # "everything in this batch is done", said from inside process_records
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("300", 2)


def test_a_failed_batch_cannot_be_checkpointed_afterwards() -> None:
    """process_records raised: shutdown_requested's checkpoint() records the last batch that succeeded."""
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_started(ExtendedSequenceNumber("100"))
    checkpointer.batch_done(ExtendedSequenceNumber("100"))
    checkpointer.batch_started(ExtendedSequenceNumber("300"))
    checkpointer.batch_failed()
    checkpointer.checkpoint()
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("100")
    for beyond in ("101", "300"):
        with pytest.raises(InvalidCheckpointError, match="beyond the last record processed"):
            checkpointer.checkpoint(beyond)
    with pytest.raises(InvalidCheckpointError, match="beyond the last record processed"):
        checkpointer.prepare_checkpoint(record("300"))
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("100") and store.writes == 1


def test_nothing_processed_yet_means_checkpoint_is_a_no_op_even_after_a_failed_batch() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_started(ExtendedSequenceNumber("300"))
    checkpointer.batch_failed()
    checkpointer.checkpoint()
    assert store.writes == 0


def test_a_dead_lettered_batch_counts_as_processed() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_started(ExtendedSequenceNumber("300"))
    checkpointer.batch_failed()
    checkpointer.batch_done(ExtendedSequenceNumber("300"))  # what the consumer does after dead_letter
    checkpointer.checkpoint()
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("300")


def test_at_shard_end_the_last_record_means_shard_end() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("300", 2))
    checkpointer.at_shard_end()
    checkpointer.checkpoint(record("300", 2))
    assert store.rows[SHARD].checkpoint == ESN_SHARD_END


def test_checkpoint_with_no_argument_at_shard_end_records_shard_end() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.at_shard_end()
    checkpointer.checkpoint()
    assert store.rows[SHARD].checkpoint == ESN_SHARD_END


def test_prepared_checkpoint_writes_pending_fields_then_commits() -> None:
    checkpointer, store, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("300"))
    prepared = checkpointer.prepare_checkpoint("250", state=b"\x00app")
    row = store.rows[SHARD]
    assert row.pending_checkpoint == ExtendedSequenceNumber("250") and row.pending_checkpoint_state == b"\x00app"
    assert row.checkpoint == ESN_TRIM_HORIZON
    prepared.checkpoint()
    row = store.rows[SHARD]
    assert row.checkpoint == ExtendedSequenceNumber("250") and row.pending_checkpoint is None


def test_prepare_checkpoint_state_must_be_bytes() -> None:
    checkpointer, _, _, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("300"))
    with pytest.raises(InvalidCheckpointError, match="must be bytes"):
        checkpointer.prepare_checkpoint(state="text")  # type: ignore[arg-type]


async def test_blocking_checkpoint_is_refused_on_the_event_loop_and_the_async_one_works() -> None:
    store, held, _, token = setup()
    checkpointer = Checkpointer(SHARD, token, held, store, ESN_TRIM_HORIZON)  # type: ignore[arg-type]
    checkpointer.batch_done(ExtendedSequenceNumber("10"))
    with pytest.raises(KclError, match=r"await checkpointer\.acheckpoint"):
        checkpointer.checkpoint()
    await checkpointer.acheckpoint()
    assert store.rows[SHARD].checkpoint == ExtendedSequenceNumber("10")


# --- tenure fencing -------------------------------------------------------------------------------


def test_checkpoint_after_the_lease_was_taken_raises_lease_lost() -> None:
    checkpointer, store, held, _ = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("10"))
    store.rows[SHARD] = store.rows[SHARD].with_(lease_owner="thief", lease_counter=8)
    with pytest.raises(LeaseLostError, match="taken by another worker"):
        checkpointer.checkpoint()
    assert held.get(SHARD).lost  # type: ignore[union-attr]


def test_checkpoint_from_an_earlier_tenure_is_refused() -> None:
    checkpointer, store, held, clock = make_checkpointer()
    checkpointer.batch_done(ExtendedSequenceNumber("10"))
    held.add(store.rows[SHARD], clock())  # the lease was re-acquired: a new token
    with pytest.raises(LeaseLostError, match="no longer held by this processor"):
        checkpointer.checkpoint()
    assert store.writes == 0


def test_self_fencing_after_failover_without_renewal() -> None:
    checkpointer, store, held, clock = make_checkpointer()
    token = held.get(SHARD).token  # type: ignore[union-attr]
    checkpointer.batch_done(ExtendedSequenceNumber("10"))
    clock.now += FAILOVER - 0.026
    assert held.is_current(SHARD, token)
    clock.now += 0.002
    assert not held.is_current(SHARD, token)
    with pytest.raises(LeaseLostError, match="could not be renewed in time"):
        checkpointer.checkpoint()
    assert store.writes == 0


def test_a_checkpoint_counts_as_a_renewal() -> None:
    checkpointer, _, held, clock = make_checkpointer()
    token = held.get(SHARD).token  # type: ignore[union-attr]
    checkpointer.batch_done(ExtendedSequenceNumber("10"))
    clock.now += FAILOVER - 1
    checkpointer.checkpoint()
    clock.now += FAILOVER - 1
    assert held.is_current(SHARD, token)


# --- renewal decisions ----------------------------------------------------------------------------


def renewer_for(held: HeldLeases, handoffs: list[str]) -> LeaseRenewer:
    metrics = KclMetrics(MetricsRegistry(), "me", MetricsLevel.SUMMARY)
    return LeaseRenewer(held, 3.0, threads=2, metrics=metrics, on_handoff_requested=handoffs.append)


def test_renewal_bumps_the_counter_and_moves_the_fence() -> None:
    store, held, clock, token = setup()
    renewer = renewer_for(held, [])
    clock.now += 5
    renewer.renew_all()
    assert store.rows[SHARD].lease_counter == 8
    clock.now += FAILOVER - 1
    assert held.is_current(SHARD, token)
    renewer.stop()


def test_renewal_finding_another_owner_marks_the_lease_lost() -> None:
    store, held, _, token = setup()
    lost: list[tuple[str, str]] = []
    held.on_lost = lambda shard, reason: lost.append((shard, reason))
    store.rows[SHARD] = store.rows[SHARD].with_(lease_owner="thief", lease_counter=9)
    renewer_for(held, []).renew_all()
    assert not held.is_current(SHARD, token)
    assert lost == [(SHARD, "lease now owned by thief")]


def test_renewal_seeing_a_handoff_request_keeps_renewing_as_previous_owner() -> None:
    store, held, _, token = setup()
    handoffs: list[str] = []
    store.rows[SHARD] = store.rows[SHARD].with_(lease_owner="next", checkpoint_owner="me")
    renewer = renewer_for(held, handoffs)
    renewer.renew_all()
    assert handoffs == [SHARD]
    assert held.is_current(SHARD, token) and held.get(SHARD).handing_off  # type: ignore[union-attr]
    assert store.rows[SHARD].lease_counter == 8
    renewer.renew_all()
    assert store.rows[SHARD].lease_counter == 9 and handoffs == [SHARD]


def test_renewal_recovers_from_a_spurious_condition_failure() -> None:
    store, held, _, token = setup()
    # Our previous renewal landed but its reply was lost: the row is one ahead of what we hold.
    store.rows[SHARD] = store.rows[SHARD].with_(lease_counter=8)
    renewer_for(held, []).renew_all()
    assert held.is_current(SHARD, token)
    assert held.get(SHARD).lease.lease_counter == 8  # type: ignore[union-attr]


def test_renewer_never_renews_a_lease_past_its_fence() -> None:
    store, held, clock, _token = setup()
    clock.now += FAILOVER
    renewer_for(held, []).renew_all()
    assert store.rows[SHARD].lease_counter == 7
    assert held.get(SHARD).lost  # type: ignore[union-attr]


# --- checkpoint age (kcl_checkpoint_age_seconds) ---------------------------------------------------


def test_checkpoint_age_counts_from_the_oldest_processed_batch_no_checkpoint_covers() -> None:
    checkpointer, _, _, _ = make_checkpointer()
    before = time.monotonic()
    assert checkpointer.checkpoint_age(before + 100) == 0.0  # nothing processed
    checkpointer.batch_done(ExtendedSequenceNumber("200"))
    after = time.monotonic()
    checkpointer.batch_done(ExtendedSequenceNumber("300"))  # a later batch does not reset the age
    assert 5 <= checkpointer.checkpoint_age(after + 5) <= after + 5 - before
    checkpointer.checkpoint("250")  # part of what was processed: still waiting
    assert checkpointer.checkpoint_age(time.monotonic() + 5) >= 5
    checkpointer.checkpoint()
    assert checkpointer.checkpoint_age(time.monotonic() + 5) == 0.0
