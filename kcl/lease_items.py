"""Lease items: the Java KCL's attribute schema, and the mapping between its items and :class:`Lease`.

Kept apart from :mod:`kcl.leases` (which sends the requests) because the schema is what a Java KCL or
amazon-kclpy application shares with this one: its attribute names, DynamoDB types and sentinel strings
are the KCL's, plus a few attributes of ours that the Java KCL ignores (see :mod:`kcl.leases`).  Here too:
how a failed request is described in logs and /healthz (:func:`describe_failure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import botocore.exceptions
from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

from kcl.sequence import ExtendedSequenceNumber
from kpl.hashing import HashRange
from kpl.logs import get_logger

log = get_logger(__name__)

LEASE_ENTITY_TYPE = "LEASE"


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease item as stored.  Immutable: every write returns the new version."""

    lease_key: str
    lease_owner: str | None = None
    lease_counter: int = 0
    checkpoint: ExtendedSequenceNumber = field(default_factory=lambda: ExtendedSequenceNumber("TRIM_HORIZON"))
    pending_checkpoint: ExtendedSequenceNumber | None = None
    pending_checkpoint_state: bytes | None = None
    owner_switches_since_checkpoint: int = 0
    parent_shard_ids: frozenset[str] = frozenset()
    child_shard_ids: frozenset[str] = frozenset()
    hash_range: HashRange | None = None
    #: KCL 3.x graceful handoff: the previous owner, still finishing up, while ``lease_owner`` is the next.
    checkpoint_owner: str | None = None
    #: Renewals so far (``renewalCounter``, ours; None in items no worker of ours has renewed): lets other
    #: workers tell an owner that stopped from one whose checkpoints also move ``leaseCounter``.
    renewal_counter: int | None = None
    #: The owner's progress as its last renewal recorded it (ours; None in items a Java worker wrote, or
    #: whose counter a Java worker has moved since): MillisBehindLatest of the shard's last read handled,
    #: and when (epoch seconds, the owner's clock).
    millis_behind_latest: int | None = None
    processed_at: float | None = None
    #: When ``leaseCounter`` last changed (epoch seconds, the writer's clock), if a worker of ours wrote
    #: that change; None when a Java worker (or an older version) moved the counter since.
    counter_changed_at: float | None = None

    @property
    def is_shard_end(self) -> bool:
        return self.checkpoint.is_shard_end

    def with_(self, **changes: Any) -> Lease:
        return replace(self, **changes)


class _LeaseItem(Model):
    """The KCL schema.  Subclassed per table by :func:`_lease_model` (pynamodb binds a table to a class)."""

    class Meta:
        table_name = "unused"

    lease_key = UnicodeAttribute(hash_key=True, attr_name="leaseKey")
    lease_owner = UnicodeAttribute(null=True, attr_name="leaseOwner")
    lease_counter = NumberAttribute(null=True, attr_name="leaseCounter")
    checkpoint = UnicodeAttribute(null=True, attr_name="checkpoint")
    checkpoint_sub_sequence_number = NumberAttribute(null=True, attr_name="checkpointSubSequenceNumber")
    pending_checkpoint = UnicodeAttribute(null=True, attr_name="pendingCheckpoint")
    pending_checkpoint_sub_sequence_number = NumberAttribute(null=True, attr_name="pendingCheckpointSubSequenceNumber")
    pending_checkpoint_state = BinaryAttribute(null=True, legacy_encoding=False, attr_name="pendingCheckpointState")
    owner_switches_since_checkpoint = NumberAttribute(null=True, attr_name="ownerSwitchesSinceCheckpoint")
    parent_shard_id = UnicodeSetAttribute(null=True, attr_name="parentShardId")
    child_shard_ids = UnicodeSetAttribute(null=True, attr_name="childShardIds")
    starting_hash_key = UnicodeAttribute(null=True, attr_name="startingHashKey")
    ending_hash_key = UnicodeAttribute(null=True, attr_name="endingHashKey")
    checkpoint_owner = UnicodeAttribute(null=True, attr_name="checkpointOwner")
    entity_type = UnicodeAttribute(null=True, attr_name="entityType")
    #: Not in the Java KCL's schema (it ignores attributes it does not know): see Lease.renewal_counter.
    renewal_counter = NumberAttribute(null=True, attr_name="renewalCounter")
    #: Neither are these (see the module docstring); times are epoch milliseconds.
    millis_behind_latest = NumberAttribute(null=True, attr_name="pyMillisBehindLatest")
    processed_at = NumberAttribute(null=True, attr_name="pyProcessedAt")
    counter_changed_at = NumberAttribute(null=True, attr_name="pyCounterChangedAt")
    counter_changed_to = NumberAttribute(null=True, attr_name="pyCounterChangedTo")


#: The attributes of ours in lease items (all numbers); the Java KCL neither reads nor writes them.
EXTRA_ATTRIBUTES = ("renewalCounter", "pyMillisBehindLatest", "pyProcessedAt", "pyCounterChangedAt",
                    "pyCounterChangedTo")


def lease_from_item(item: _LeaseItem) -> Lease | None:
    """The lease an item holds, or None for rows that are not single-stream leases."""
    if item.entity_type not in (None, LEASE_ENTITY_TYPE) or item.checkpoint is None:
        return None
    try:
        checkpoint = ExtendedSequenceNumber(item.checkpoint, int(item.checkpoint_sub_sequence_number or 0))
        pending = None
        if item.pending_checkpoint is not None:
            pending = ExtendedSequenceNumber(item.pending_checkpoint,
                                             int(item.pending_checkpoint_sub_sequence_number or 0))
    except (TypeError, ValueError) as exc:
        log.warning("skipping lease item with an unreadable checkpoint", lease_key=item.lease_key, error=str(exc))
        return None
    hash_range = None
    if item.starting_hash_key is not None and item.ending_hash_key is not None:
        hash_range = HashRange(int(item.starting_hash_key), int(item.ending_hash_key))
    counter = int(item.lease_counter or 0)
    # Our figures count only while our write was the last to move the counter: once a Java worker (or an
    # older version) renews or takes the lease, they describe a past tenure, and are unknown rather than wrong.
    ours = item.counter_changed_to is not None and int(item.counter_changed_to) == counter
    counter_changed_at = item.counter_changed_at / 1000 if ours and item.counter_changed_at is not None else None
    millis_behind = int(item.millis_behind_latest) if ours and item.millis_behind_latest is not None else None
    processed_at = item.processed_at / 1000 if ours and item.processed_at is not None else None
    return Lease(
        lease_key=item.lease_key,
        lease_owner=item.lease_owner,
        lease_counter=counter,
        checkpoint=checkpoint,
        pending_checkpoint=pending,
        pending_checkpoint_state=item.pending_checkpoint_state,
        owner_switches_since_checkpoint=int(item.owner_switches_since_checkpoint or 0),
        parent_shard_ids=frozenset(item.parent_shard_id or ()),
        child_shard_ids=frozenset(item.child_shard_ids or ()),
        hash_range=hash_range,
        checkpoint_owner=item.checkpoint_owner,
        renewal_counter=None if item.renewal_counter is None else int(item.renewal_counter),
        millis_behind_latest=millis_behind,
        processed_at=processed_at,
        counter_changed_at=counter_changed_at,
    )


def item_from_lease(model: type[_LeaseItem], lease: Lease) -> _LeaseItem:
    """A full item for a new lease, as the KCL's ``createLeaseIfNotExists`` writes it."""
    item = model(lease.lease_key)
    item.lease_owner = lease.lease_owner
    item.lease_counter = lease.lease_counter
    item.checkpoint = lease.checkpoint.sequence_number
    item.checkpoint_sub_sequence_number = lease.checkpoint.sub_sequence_number
    item.owner_switches_since_checkpoint = lease.owner_switches_since_checkpoint
    item.parent_shard_id = set(lease.parent_shard_ids) or None
    item.child_shard_ids = set(lease.child_shard_ids) or None
    if lease.hash_range is not None:
        item.starting_hash_key = str(lease.hash_range.start)
        item.ending_hash_key = str(lease.hash_range.end)
    if lease.pending_checkpoint is not None:
        item.pending_checkpoint = lease.pending_checkpoint.sequence_number
        item.pending_checkpoint_sub_sequence_number = lease.pending_checkpoint.sub_sequence_number
        item.pending_checkpoint_state = lease.pending_checkpoint_state
    return item


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"
