"""Which shards get leases: the lineage rules of shard discovery, and when a finished lease may go."""

from __future__ import annotations

from kcl.config import InitialPosition
from kcl.leases import Lease
from kcl.sequence import ESN_SHARD_END, ESN_TRIM_HORIZON, ExtendedSequenceNumber
from kcl.shard_sync import ShardInfo, finished_parents, leases_to_create
from kpl.hashing import HashRange

HALF = 2**127


def shard(shard_id: str, *parents: str, is_open: bool = True, start: int = 0, end: int = 2**128 - 1) -> ShardInfo:
    return ShardInfo(shard_id, parents, HashRange(start, end), is_open)


# A stream that split s0 into s2 and s3, then merged s3 with s1 into s4.
RESHARDED = [
    shard("s0", is_open=False, end=HALF - 1),
    shard("s1", is_open=False, start=HALF),
    shard("s2", "s0", end=HALF // 2),
    shard("s3", "s0", is_open=False, start=HALF // 2 + 1, end=HALF - 1),
    shard("s4", "s3", "s1", start=HALF // 2 + 1),
]


def created(shards: list[ShardInfo], leased: list[str], initial: InitialPosition) -> dict[str, Lease]:
    return {lease.lease_key: lease for lease in leases_to_create(shards, leased, initial)}


def test_empty_table_latest_leases_open_shards_only() -> None:
    leases = created(RESHARDED, [], InitialPosition.LATEST)
    assert set(leases) == {"s2", "s4"}
    assert all(lease.checkpoint.sequence_number == "LATEST" for lease in leases.values())


def test_empty_table_trim_horizon_leases_the_whole_lineage_parents_first() -> None:
    order = [lease.lease_key for lease in leases_to_create(RESHARDED, [], InitialPosition.TRIM_HORIZON)]
    assert set(order) == {"s0", "s1", "s2", "s3", "s4"}
    assert order.index("s0") < order.index("s3") < order.index("s4") and order.index("s1") < order.index("s4")
    leases = created(RESHARDED, [], InitialPosition.TRIM_HORIZON)
    assert leases["s4"].parent_shard_ids == {"s3", "s1"}
    assert leases["s2"].parent_shard_ids == {"s0"}
    assert leases["s0"].parent_shard_ids == frozenset()
    assert all(lease.checkpoint == ESN_TRIM_HORIZON for lease in leases.values())


def test_empty_table_at_timestamp_starts_roots_at_the_timestamp_and_children_at_trim_horizon() -> None:
    leases = created(RESHARDED, [], InitialPosition.AT_TIMESTAMP)
    assert leases["s0"].checkpoint.sequence_number == "AT_TIMESTAMP"
    assert leases["s4"].checkpoint == ESN_TRIM_HORIZON


def test_children_of_leased_shards_get_leases_that_wait_for_them() -> None:
    shards = [shard("s0", is_open=False), shard("s1", "s0"), shard("s2", "s0")]
    leases = created(shards, ["s0"], InitialPosition.LATEST)
    assert set(leases) == {"s1", "s2"}
    assert all(lease.checkpoint == ESN_TRIM_HORIZON and lease.parent_shard_ids == {"s0"} for lease in leases.values())


def test_consumed_parents_are_never_created_again() -> None:
    # s0's lease was deleted after s2 and s3 started; s3's after s4 started.
    assert created(RESHARDED, ["s1", "s2", "s4"], InitialPosition.TRIM_HORIZON) == {}


def test_hash_ranges_are_recorded_on_new_leases() -> None:
    leases = created([shard("s0", end=41)], [], InitialPosition.LATEST)
    assert leases["s0"].hash_range == HashRange(0, 41)


def test_from_list_shards_and_child_shards() -> None:
    listed = ShardInfo.from_list_shards({
        "ShardId": "shardId-000000000004", "ParentShardId": "shardId-000000000003",
        "AdjacentParentShardId": "shardId-000000000001",
        "HashKeyRange": {"StartingHashKey": "5", "EndingHashKey": "9"},
        "SequenceNumberRange": {"StartingSequenceNumber": "1"},
    })
    assert listed == ShardInfo("shardId-000000000004", ("shardId-000000000003", "shardId-000000000001"),
                               HashRange(5, 9), True)
    child = ShardInfo.from_child_shard({"ShardId": "c", "ParentShards": ["p1", "p2"],
                                        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "3"}})
    assert child.parent_ids == ("p1", "p2") and child.hash_range == HashRange(0, 3)


# --- cleanup --------------------------------------------------------------------------------------


def lease(key: str, checkpoint: ExtendedSequenceNumber, *children: str) -> Lease:
    return Lease(key, checkpoint=checkpoint, child_shard_ids=frozenset(children))


def test_finished_parent_is_removable_once_every_child_has_started() -> None:
    shards = [shard("s0", is_open=False), shard("s1", "s0"), shard("s2", "s0")]
    parent = lease("s0", ESN_SHARD_END, "s1", "s2")
    one_started = [parent, lease("s1", ExtendedSequenceNumber("5")), lease("s2", ESN_TRIM_HORIZON)]
    assert finished_parents(one_started, shards) == []
    both_started = [parent, lease("s1", ExtendedSequenceNumber("5")), lease("s2", ESN_SHARD_END)]
    assert finished_parents(both_started, shards) == ["s0"]


def test_finished_parent_waits_for_children_without_leases() -> None:
    shards = [shard("s0", is_open=False), shard("s1", "s0"), shard("s2", "s0")]
    assert finished_parents([lease("s0", ESN_SHARD_END), lease("s1", ExtendedSequenceNumber("5"))], shards) == []


def test_child_consumed_and_deleted_counts_as_started() -> None:
    shards = [shard("s0", is_open=False), shard("s1", "s0", is_open=False), shard("s2", "s1")]
    leases = [lease("s0", ESN_SHARD_END), lease("s2", ExtendedSequenceNumber("1"))]
    assert finished_parents(leases, shards) == ["s0"]


def test_children_known_only_from_child_shard_ids_still_count() -> None:
    leases = [lease("s0", ESN_SHARD_END, "s9"), lease("s9", ESN_TRIM_HORIZON)]
    assert finished_parents(leases, []) == []
    leases[1] = lease("s9", ExtendedSequenceNumber("3"))
    assert finished_parents(leases, []) == ["s0"]
