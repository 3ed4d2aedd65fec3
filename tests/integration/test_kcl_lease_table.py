"""The lease table's writes against real DynamoDB: owner-switch counting as the Java KCL's, renewals
that only write, and the table options a properties file can ask for at creation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kcl.leases import Lease, LeaseTable, TableSettings
from kcl.sequence import ExtendedSequenceNumber

KEY = "shardId-000000000000"


@pytest.fixture
def table(make_table: Callable[..., str]) -> Iterator[LeaseTable]:
    lease_table = LeaseTable(TableSettings(table_name=make_table("leases")))
    yield lease_table
    lease_table.close()


def switches(table: LeaseTable) -> int:
    lease = table.get(KEY)
    assert lease is not None
    return lease.owner_switches_since_checkpoint


def test_owner_switches_count_as_the_java_kcl_counts_them(table: LeaseTable) -> None:
    assert table.create_if_absent(Lease(KEY))
    new = table.get(KEY)
    assert new is not None
    a = table.take(new, "A")
    assert switches(table) == 0  # the first take of a new lease is not a switch
    a = table.renew(a, "A")
    b = table.take(a, "B")  # B takes A's lease (after it expired)
    assert switches(table) == 1
    b = table.checkpoint(b, ExtendedSequenceNumber("100"))
    assert switches(table) == 0  # a checkpoint resets it
    handing = table.initiate_handoff(b, "A")  # KCL 3.x handoff from B to A
    done = table.complete_handoff(handing, "B")
    assert switches(table) == 0  # as the KCL 3.x's assignLease(lease, leaseOwner): not counted
    released = table.release(table.take(done, "A"), "A")
    table.take(released, "C")
    assert switches(table) == 0  # a released lease has no owner to switch from


def test_renewals_only_write_and_count_in_renewal_counter(table: LeaseTable) -> None:
    table.create_if_absent(Lease(KEY))
    lease = table.get(KEY)
    assert lease is not None and lease.renewal_counter is None
    lease = table.take(lease, "A")
    before = dict(table.requests)
    for _ in range(3):
        lease = table.renew(lease, "A")
    assert lease.renewal_counter == 3 and lease.lease_counter == 4
    spent = {op: n - before.get(op, 0) for op, n in table.requests.items() if n != before.get(op, 0)}
    assert spent == {"UpdateItem:renew": 3}


def test_a_created_table_gets_deletion_protection_and_point_in_time_recovery(
    aws_clients: Callable[[str], Any], unique_name: Callable[[str], str],
) -> None:
    dynamodb = aws_clients("dynamodb")
    name = unique_name("protected")
    table = LeaseTable(TableSettings(table_name=name, deletion_protection=True, point_in_time_recovery=True))
    try:
        assert table.ensure_exists() is True
        description = dynamodb.describe_table(TableName=name)["Table"]
        assert description["DeletionProtectionEnabled"] is True
        assert description["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
        assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        assert table.ensure_exists() is False  # an existing table is left as it is
        with pytest.raises(dynamodb.exceptions.ClientError, match="DeletionProtectionEnabled is set to True"):
            dynamodb.delete_table(TableName=name)
    finally:
        table.close()
        with contextlib.suppress(Exception):
            dynamodb.update_table(TableName=name, DeletionProtectionEnabled=False)
            dynamodb.delete_table(TableName=name)


def test_tables_are_created_without_either_by_default(
    aws_clients: Callable[[str], Any], unique_name: Callable[[str], str],
) -> None:
    dynamodb = aws_clients("dynamodb")
    name = unique_name("plain")
    table = LeaseTable(TableSettings(table_name=name))
    try:
        table.ensure_exists()
        assert dynamodb.describe_table(TableName=name)["Table"].get("DeletionProtectionEnabled", False) is False
        backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    finally:
        table.close()
        with contextlib.suppress(Exception):
            dynamodb.delete_table(TableName=name)
