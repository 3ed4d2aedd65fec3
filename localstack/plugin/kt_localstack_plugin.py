"""LocalStack provider plugin: DynamoDB served by the moto bundled inside LocalStack.

LocalStack's own DynamoDB provider forwards to DynamoDB Local, which it downloads on first use from a
host these machines cannot reach.  moto implements the parts of DynamoDB the toolkit relies on
(conditional writes, ADD updates, consistent reads, scans), so an empty provider that falls through to
moto is enough.  It is selected at start-up with ``PROVIDER_OVERRIDE_DYNAMODB=moto``.

LocalStack's fault injection for DynamoDB (``DYNAMODB_ERROR_PROBABILITY`` and its read/write variants)
lives in the provider we replace, so it is reproduced here: the variables are read from
``localstack.config`` on every request, which ``POST /_localstack/config`` updates at run time.

DynamoDB evaluates a conditional write atomically with the write; moto's backend checks and then
writes without a lock, and LocalStack serves requests on several threads, so two workers taking the
same lease at the same moment could both succeed here (seen: two KCL workers both "took" one lease
within 17 ms).  Every operation therefore runs under one lock, as one item's operations are ordered
in DynamoDB.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from localstack.aws.api.dynamodb import DynamodbApi, ProvisionedThroughputExceededException
from localstack.services.moto import MotoFallbackDispatcher
from localstack.services.plugins import Service, aws_provider

from localstack import config

READ_ACTIONS = frozenset({"GetItem", "Query", "Scan", "TransactGetItems", "BatchGetItem"})
WRITE_ACTIONS = frozenset({"PutItem", "BatchWriteItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})

_THROTTLE_MESSAGE = (
    "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API"
)


class MotoDynamoDBProvider(DynamodbApi):
    """Implements nothing itself: every operation falls through to moto."""


def _should_fail(operation: str) -> bool:
    read_p = config.DYNAMODB_READ_ERROR_PROBABILITY
    write_p = config.DYNAMODB_WRITE_ERROR_PROBABILITY
    any_p = config.DYNAMODB_ERROR_PROBABILITY
    if not (read_p or write_p or any_p):
        return False
    roll = random.random()
    if operation in READ_ACTIONS and roll < read_p:
        return True
    if operation in WRITE_ACTIONS and roll < write_p:
        return True
    return operation in (READ_ACTIONS | WRITE_ACTIONS) and roll < any_p


_BACKEND_LOCK = threading.Lock()


def _with_fault_injection(operation: str, handler: Any) -> Any:
    def handle(context: Any, request: Any) -> Any:
        if _should_fail(operation):
            raise ProvisionedThroughputExceededException(_THROTTLE_MESSAGE)
        with _BACKEND_LOCK:
            return handler(context, request)

    return handle


def _dispatch_table(provider: MotoDynamoDBProvider) -> dict[str, Any]:
    table = MotoFallbackDispatcher(provider)
    return {operation: _with_fault_injection(operation, handler) for operation, handler in table.items()}


@aws_provider(api="dynamodb", name="moto")
def dynamodb_moto() -> Service:
    return Service.for_provider(MotoDynamoDBProvider(), dispatch_table_factory=_dispatch_table)
