"""The lease item's DynamoDB representation is the Java KCL's, byte for byte (no I/O: serialisation only)."""

from __future__ import annotations

from typing import Any

import pytest

from kcl.leases import Lease, TableSettings, _lease_model, item_from_lease, lease_from_item
from kcl.sequence import ESN_SHARD_END, ExtendedSequenceNumber
from kpl.hashing import HashRange


@pytest.fixture(scope="module")
def model() -> Any:
    return _lease_model(TableSettings(table_name="unit-test-leases", region="us-east-1"))


def test_new_lease_item_has_the_kcl_attribute_names_and_types(model: Any) -> None:
    lease = Lease("shardId-000000000004", lease_owner=None, lease_counter=0,
                  checkpoint=ExtendedSequenceNumber("TRIM_HORIZON"),
                  parent_shard_ids=frozenset({"shardId-000000000001", "shardId-000000000003"}),
                  hash_range=HashRange(5, 2**128 - 1))
    item = item_from_lease(model, lease).serialize()
    parents = item.pop("parentShardId")
    assert sorted(parents["SS"]) == ["shardId-000000000001", "shardId-000000000003"]  # a string set, name singular
    assert item == {
        "leaseKey": {"S": "shardId-000000000004"},
        "leaseCounter": {"N": "0"},
        "checkpoint": {"S": "TRIM_HORIZON"},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": "5"},
        "endingHashKey": {"S": str(2**128 - 1)},
    }


def test_empty_parent_set_is_omitted_not_written_empty(model: Any) -> None:
    item = item_from_lease(model, Lease("shardId-000000000000")).serialize()
    assert "parentShardId" not in item and "childShardIds" not in item and "leaseOwner" not in item


def test_pending_checkpoint_state_is_plain_binary(model: Any) -> None:
    lease = Lease("s", pending_checkpoint=ExtendedSequenceNumber("77", 2), pending_checkpoint_state=b"\x00\xffstate")
    item = item_from_lease(model, lease).serialize()
    assert item["pendingCheckpoint"] == {"S": "77"}
    assert item["pendingCheckpointSubSequenceNumber"] == {"N": "2"}
    assert item["pendingCheckpointState"] == {"B": b"\x00\xffstate"}  # not base64 text (pynamodb < 6 legacy)


JAVA_ITEM = {
    "leaseKey": {"S": "shardId-000000000002"},
    "leaseOwner": {"S": "java-worker-7f3a"},
    "leaseCounter": {"N": "4312"},
    "checkpoint": {"S": "49590338271490256608559692538361571095921575989136588898"},
    "checkpointSubSequenceNumber": {"N": "3"},
    "ownerSwitchesSinceCheckpoint": {"N": "2"},
    "parentShardId": {"SS": ["shardId-000000000000"]},
    "childShardIds": {"SS": ["shardId-000000000005", "shardId-000000000006"]},
    "startingHashKey": {"S": "0"},
    "endingHashKey": {"S": "170141183460469231731687303715884105727"},
    "throughputKBps": {"N": "12.500000"},
    "pendingCheckpoint": {"S": "49590338271490256608559692538361571095921575989136588999"},
    "pendingCheckpointSubSequenceNumber": {"N": "0"},
    "pendingCheckpointState": {"B": b"app-state"},
}


def test_java_written_item_reads_back_completely(model: Any) -> None:
    lease = lease_from_item(model.from_raw_data(JAVA_ITEM))
    assert lease == Lease(
        lease_key="shardId-000000000002", lease_owner="java-worker-7f3a", lease_counter=4312,
        checkpoint=ExtendedSequenceNumber("49590338271490256608559692538361571095921575989136588898", 3),
        pending_checkpoint=ExtendedSequenceNumber("49590338271490256608559692538361571095921575989136588999", 0),
        pending_checkpoint_state=b"app-state", owner_switches_since_checkpoint=2,
        parent_shard_ids=frozenset({"shardId-000000000000"}),
        child_shard_ids=frozenset({"shardId-000000000005", "shardId-000000000006"}),
        hash_range=HashRange(0, 170141183460469231731687303715884105727),
    )


def test_shard_end_and_minimal_items(model: Any) -> None:
    minimal = {"leaseKey": {"S": "s"}, "leaseCounter": {"N": "1"}, "checkpoint": {"S": "SHARD_END"},
               "checkpointSubSequenceNumber": {"N": "0"}}
    lease = lease_from_item(model.from_raw_data(minimal))
    assert lease is not None and lease.checkpoint == ESN_SHARD_END and lease.lease_owner is None
    assert lease.hash_range is None and lease.parent_shard_ids == frozenset()


def test_non_lease_rows_of_kcl_3_5_are_skipped(model: Any) -> None:
    row = {"leaseKey": {"S": "worker-1"}, "entityType": {"S": "WORKER_METRIC_STATS"}}
    assert lease_from_item(model.from_raw_data(row)) is None
    leader = {"leaseKey": {"S": "Leader"}}
    assert lease_from_item(model.from_raw_data(leader)) is None


def test_a_read_timeout_inside_a_pynamodb_error_stays_a_retryable_network_error() -> None:
    import botocore.exceptions
    from pynamodb.exceptions import ScanError

    from kcl.leases import ConditionFailed, _translate
    from kpl.retry import ErrorKind, classify

    timeout = botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1")
    translated = _translate(ScanError("Failed to scan table", timeout))
    assert translated is timeout and classify(translated) is ErrorKind.TRANSIENT
    failed = botocore.exceptions.ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")
    assert isinstance(_translate(ScanError("update failed", failed)), ConditionFailed)
