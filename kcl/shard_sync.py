"""Shard discovery: which shards need a lease, from ListShards and the lease table.

Leases are created in three ways, all idempotent (conditional put), so any worker may run them:

* at start-up and every ``shard_sync_interval``, from a full ListShards (:func:`leases_to_create`);
* when a shard ends, from the ``ChildShards`` of its last GetRecords/SubscribeToShard response;
* never for a shard whose lineage is already covered.

The lineage rules, applied parents-first:

1. A shard with a leased descendant is covered: its data was consumed (its lease was deleted after its
   children started) or deliberately skipped.  Never re-created.
2. A shard with a leased parent gets a lease at ``TRIM_HORIZON`` naming its parents; it will wait for
   them to reach SHARD_END before reading.
3. Otherwise the shard starts a new lineage and follows the initial position: ``LATEST`` leases the
   open shards only; ``TRIM_HORIZON`` and ``AT_TIMESTAMP`` lease the roots (shards whose parents are
   gone from the stream), and rule 2 then covers their descendants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kcl.config import InitialPosition
from kcl.leases import Lease
from kcl.sequence import AT_TIMESTAMP, LATEST, TRIM_HORIZON, ExtendedSequenceNumber
from kpl.hashing import HashRange

_INITIAL_CHECKPOINT = {
    InitialPosition.LATEST: ExtendedSequenceNumber(LATEST),
    InitialPosition.TRIM_HORIZON: ExtendedSequenceNumber(TRIM_HORIZON),
    InitialPosition.AT_TIMESTAMP: ExtendedSequenceNumber(AT_TIMESTAMP),
}


@dataclass(frozen=True, slots=True)
class ShardInfo:
    shard_id: str
    parent_ids: tuple[str, ...]
    hash_range: HashRange
    is_open: bool

    @classmethod
    def from_list_shards(cls, shard: Mapping[str, Any]) -> ShardInfo:
        parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
        closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
        return cls(shard["ShardId"], parents, HashRange.from_shard(shard), not closed)

    @classmethod
    def from_child_shard(cls, child: Mapping[str, Any]) -> ShardInfo:
        """From a ``ChildShards`` entry (GetRecords / SubscribeToShard at the end of a shard)."""
        return cls(child["ShardId"], tuple(child.get("ParentShards", ())), HashRange.from_shard(child), True)


def new_lease(shard: ShardInfo, checkpoint: ExtendedSequenceNumber) -> Lease:
    return Lease(lease_key=shard.shard_id, checkpoint=checkpoint, parent_shard_ids=frozenset(shard.parent_ids),
                 hash_range=shard.hash_range)


def child_lease(child: ShardInfo) -> Lease:
    return new_lease(child, ExtendedSequenceNumber(TRIM_HORIZON))


def _parents_first(shards: Sequence[ShardInfo]) -> list[ShardInfo]:
    by_id = {shard.shard_id: shard for shard in shards}
    ordered: list[ShardInfo] = []
    visited: set[str] = set()

    def visit(shard: ShardInfo) -> None:
        if shard.shard_id in visited:
            return
        visited.add(shard.shard_id)
        for parent in shard.parent_ids:
            if parent in by_id:
                visit(by_id[parent])
        ordered.append(shard)

    for shard in sorted(shards, key=lambda s: s.shard_id):
        visit(shard)
    return ordered


def children_of(shards: Iterable[ShardInfo]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for shard in shards:
        for parent in shard.parent_ids:
            children.setdefault(parent, []).append(shard.shard_id)
    return children


def has_leased_descendant(shard_id: str, children: Mapping[str, list[str]], leased: set[str]) -> bool:
    pending = list(children.get(shard_id, ()))
    seen: set[str] = set()
    while pending:
        child = pending.pop()
        if child in leased:
            return True
        if child not in seen:
            seen.add(child)
            pending.extend(children.get(child, ()))
    return False


def leases_to_create(shards: Sequence[ShardInfo], leased: Iterable[str], initial: InitialPosition) -> list[Lease]:
    """The leases a full shard sync must create (see the module docstring for the rules)."""
    leased_now = set(leased)
    present = {shard.shard_id for shard in shards}
    children = children_of(shards)
    created: list[Lease] = []
    for shard in _parents_first(shards):
        if shard.shard_id in leased_now or has_leased_descendant(shard.shard_id, children, leased_now):
            continue
        if any(parent in leased_now for parent in shard.parent_ids):
            lease = child_lease(shard)
        elif initial is InitialPosition.LATEST:
            if not shard.is_open:
                continue
            lease = new_lease(shard, _INITIAL_CHECKPOINT[initial])
        elif any(parent in present for parent in shard.parent_ids):
            continue
        else:
            lease = new_lease(shard, _INITIAL_CHECKPOINT[initial])
        created.append(lease)
        leased_now.add(shard.shard_id)
    return created


def finished_parents(leases: Sequence[Lease], shards: Sequence[ShardInfo]) -> list[str]:
    """SHARD_END leases that may be deleted: every child has started (or is itself covered).

    A child has started once its checkpoint has left the starting sentinels.  Deleting a parent
    earlier would let a periodic sync mistake the child for a new lineage.
    """
    by_key = {lease.lease_key: lease for lease in leases}
    leased = set(by_key)
    children = children_of(shards)
    removable = []
    for lease in leases:
        if not lease.is_shard_end:
            continue
        child_ids = set(lease.child_shard_ids) | set(children.get(lease.lease_key, ()))
        if not child_ids:
            continue
        started = True
        for child_id in child_ids:
            child = by_key.get(child_id)
            if child is None:
                if not has_leased_descendant(child_id, children, leased):
                    started = False
            elif child.checkpoint.is_start:
                started = False
        if started:
            removable.append(lease.lease_key)
    return removable
