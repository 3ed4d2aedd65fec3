"""What the toolkit relies on in CPython and the AWS SDKs beyond their public API (kpl._cpython, kpl._botocore,
kpl.wire's event hooks), checked against what is installed: an upgrade that changes one fails here, by name."""

from __future__ import annotations

import ast
import concurrent.futures
import datetime
from pathlib import Path
from typing import Any

import aiobotocore.session
import boto3
import botocore.awsrequest
import botocore.session
import pytest

from kpl import _cpython
from kpl._botocore import (
    SharedTLSSession,
    botocore_session_of,
    set_refreshing_credentials,
    set_refreshing_credentials_async,
)
from kpl.wire import CBOR_CONTENT_TYPE, cbor_decode, cbor_encode, install_put_records_codec


def test_thread_future_provides_every_attribute_the_base_future_sets() -> None:
    assert set(vars(concurrent.futures.Future())) == _cpython.FUTURE_ATTRIBUTES
    states = (_cpython.PENDING, _cpython.RUNNING, _cpython.CANCELLED, _cpython.CANCELLED_AND_NOTIFIED,
              _cpython.FINISHED)
    assert states == ("PENDING", "RUNNING", "CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED")
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.set_result(1)
    assert future._state == _cpython.FINISHED


def _fetched() -> dict[str, str]:
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return {"access_key": "AKIDROLE", "secret_key": "secret", "token": "token", "expiry_time": expiry.isoformat()}


def test_a_boto3_session_takes_refreshing_credentials() -> None:
    core = botocore_session_of(boto3.session.Session(region_name="us-east-1"))
    assert isinstance(core, botocore.session.Session)
    set_refreshing_credentials(core, _fetched)
    credentials = core.get_credentials()
    assert credentials is not None and credentials.get_frozen_credentials().access_key == "AKIDROLE"


async def test_an_aiobotocore_session_takes_refreshing_credentials() -> None:
    async def fetch() -> dict[str, str]:
        return _fetched()

    session = aiobotocore.session.get_session()
    set_refreshing_credentials_async(session, fetch)
    credentials = await session.get_credentials()
    assert (await credentials.get_frozen_credentials()).access_key == "AKIDROLE"


def test_the_shared_tls_session_overrides_what_aiobotocore_calls() -> None:
    if not hasattr(SharedTLSSession.__mro__[1], "_build_ssl_contexts"):
        pytest.skip("aiobotocore before 3.0 builds its TLS context elsewhere; the override is inert there")
    http = SharedTLSSession(verify=True)
    assert hasattr(http, "_cert_file") and hasattr(http, "_verify") and hasattr(http, "_build_verify_context")


def test_put_records_hooks_see_the_request_and_response_shapes_they_expect() -> None:
    """A real botocore client, sent through every event up to the wire; ``before-send`` answers in its place."""
    client = boto3.client("kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y",
                          endpoint_url="http://127.0.0.1:9")
    install_put_records_codec(client, cbor=True)
    sent: list[Any] = []

    def answer(request: botocore.awsrequest.AWSPreparedRequest, **_: Any) -> botocore.awsrequest.AWSResponse:
        sent.append(request)
        body = cbor_encode({"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"}]})
        raw = _Raw(body)
        return botocore.awsrequest.AWSResponse(request.url, 200, {"content-type": CBOR_CONTENT_TYPE}, raw)

    client.meta.events.register("before-send.kinesis.PutRecords", answer)
    result = client.put_records(StreamName="s", Records=[{"Data": b"\x00raw", "PartitionKey": "k"}])
    assert result["Records"] == [{"SequenceNumber": "1", "ShardId": "shardId-0"}]
    assert sent[0].headers["Content-Type"] == CBOR_CONTENT_TYPE.encode()  # prepared headers are bytes
    assert cbor_decode(sent[0].body)["Records"] == [{"Data": b"\x00raw", "PartitionKey": "k"}]


class _Raw:
    """The streamed body botocore reads a response from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


#: Private names of CPython and SDK objects, each reached only through the adapter modules.
FOREIGN_PRIVATE_ATTRIBUTES = frozenset({"_session", "_credentials", "_get_connection", "_build_ssl_contexts",
                                        "_build_verify_context", "_cert_file", "_verify"})
FOREIGN_PRIVATE_MODULES = frozenset({"concurrent.futures._base", "asyncio.events", "asyncio.base_events"})
ADAPTERS = frozenset({"kpl/_cpython.py", "kpl/_botocore.py", "kcl/_pynamodb.py"})


def test_only_the_adapters_reach_into_cpython_and_the_sdks() -> None:
    root = Path(__file__).resolve().parents[2]
    found = set()
    for package in ("kpl", "kcl", "agent"):
        for path in sorted((root / package).rglob("*.py")):
            where = str(path.relative_to(root))
            if where in ADAPTERS:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr in FOREIGN_PRIVATE_ATTRIBUTES
                        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                    found.add(f"{where}: .{node.attr}")
                elif isinstance(node, ast.ImportFrom) and node.module in FOREIGN_PRIVATE_MODULES:
                    found.add(f"{where}: {node.module}")
                elif isinstance(node, ast.Import):
                    found.update(f"{where}: {a.name}" for a in node.names if a.name in FOREIGN_PRIVATE_MODULES)
    assert found == set(), f"go through kpl._cpython / kpl._botocore / kcl._pynamodb: {sorted(found)}"


def test_a_pynamodb_model_reaches_its_botocore_client() -> None:
    from pynamodb.attributes import UnicodeAttribute
    from pynamodb.models import Model

    from kcl._pynamodb import botocore_client_of

    class Item(Model):
        class Meta:
            table_name = "contract"
            region = "us-east-1"
            host = "http://127.0.0.1:9"

        key = UnicodeAttribute(hash_key=True)

    client = botocore_client_of(Item)
    assert client.meta.service_model.service_name == "dynamodb"
    assert client.meta.region_name == "us-east-1" and client.meta.endpoint_url == "http://127.0.0.1:9"
