"""Shared fixtures.

Tests under ``tests/unit`` are pure logic (no I/O) and are marked ``unit``; tests under
``tests/integration`` talk HTTP to a real LocalStack and are marked ``integration``.  Select with
``-m unit`` or ``-m integration``.

Every test process points the AWS SDK at LocalStack through standard configuration only (region,
credentials, AWS_ENDPOINT_URL), exactly as a user would; a developer's own AWS credentials and
profiles are masked so a test can never touch a real account.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import localstack
from tests.support.faultproxy import FaultProxy

TESTS = Path(__file__).resolve().parent

_AWS_TEST_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_ENDPOINT_URL": localstack.endpoint(),
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def pytest_configure(config: pytest.Config) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(_AWS_TEST_ENV)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if TESTS / "unit" in path.parents:
            item.add_marker(pytest.mark.unit)
        elif TESTS / "integration" in path.parents:
            item.add_marker(pytest.mark.integration)


# --- LocalStack -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def localstack_url() -> str:
    """A healthy LocalStack, started if needed and left running for the next run."""
    return localstack.ensure_running()


@pytest.fixture
def fault_injection(localstack_url: str) -> Iterator[localstack.FaultInjector]:
    """LocalStack's error-probability switches for one test; all back to 0 afterwards."""
    injector = localstack.FaultInjector()
    try:
        yield injector
    finally:
        injector.reset()


@pytest.fixture
def fault_proxy(localstack_url: str) -> Iterator[FaultProxy]:
    """A TCP proxy in front of LocalStack that can add latency, reset or blackhole connections."""
    with FaultProxy("127.0.0.1", localstack.port()) as proxy:
        yield proxy


# --- names and resources --------------------------------------------------------------------------


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names that cannot collide between tests or runs: ``kt-<test>-<purpose>-<random>``."""
    test = re.sub(r"[^a-zA-Z0-9-]+", "-", request.node.name).strip("-")[:40]

    def make(purpose: str = "") -> str:
        parts = ["kt", test, purpose, uuid.uuid4().hex[:8]]
        return "-".join(p for p in parts if p)

    return make


@pytest.fixture(scope="session")
def aws_clients(localstack_url: str) -> Callable[[str], Any]:
    """boto3 clients for test set-up and verification (the code under test builds its own)."""
    from kpl.aws import ClientConfig, sync_client

    cache: dict[str, Any] = {}
    config = ClientConfig(read_timeout=60.0)

    def get(service: str) -> Any:
        if service not in cache:
            cache[service] = sync_client(service, config)
        return cache[service]

    return get


@pytest.fixture
def kinesis(aws_clients: Callable[[str], Any]) -> Any:
    return aws_clients("kinesis")


@pytest.fixture
def make_stream(kinesis: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """Create ACTIVE streams for a test and delete them afterwards."""
    from tests.support.kinesis import create_stream

    created: list[str] = []

    def make(shards: int = 1, purpose: str = "stream") -> str:
        name = unique_name(purpose)
        create_stream(kinesis, name, shards)
        created.append(name)
        return name

    yield make
    for name in created:
        with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):
            kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture
def make_table(aws_clients: Callable[[str], Any], unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """Create DynamoDB tables (hash key ``leaseKey`` by default) and delete them afterwards."""
    dynamodb = aws_clients("dynamodb")
    created: list[str] = []

    def make(purpose: str = "table", hash_key: str = "leaseKey") -> str:
        name = unique_name(purpose)
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
        created.append(name)
        return name

    yield make
    for name in created:
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=name)
