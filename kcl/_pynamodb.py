"""The pynamodb internals the lease table relies on, named in one place.

pynamodb's models have no public way to reach the botocore client they send through (CreateTable
with deletion protection and UpdateContinuousBackups have no pynamodb API), nor to read a table's
status without the model's own ``exists``.  Both go through ``Model._get_connection()``, private
since pynamodb 4; ``tests/unit/test_internals_contract.py`` checks it against the installed release.
"""

from __future__ import annotations

from typing import Any

from pynamodb.models import Model

__all__ = ["botocore_client_of", "describe_table"]


def botocore_client_of(model: type[Model]) -> Any:
    """The botocore DynamoDB client ``model``'s requests go through (its region, endpoint, credentials)."""
    return model._get_connection().connection.client


def describe_table(model: type[Model]) -> dict[str, Any]:
    """DescribeTable's ``Table`` of ``model``'s table."""
    description: dict[str, Any] = model._get_connection().describe_table()
    return description
