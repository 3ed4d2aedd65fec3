"""Clients built by kpl.aws share one TLS context (building one loads the CA bundle, ~30 ms of CPU),
except when aiobotocore would change it for the client (a client certificate, a proxy)."""

from __future__ import annotations

import ssl

import pytest

from kpl import aws
from kpl._botocore import SharedTLSSession


async def _context(verify: object = True, **session: object) -> ssl.SSLContext:
    http = SharedTLSSession(verify=verify, **session)
    context, proxy_context = await _build(http, None)
    assert proxy_context is None
    return context


async def _build(http: SharedTLSSession, proxy_url: str | None) -> tuple[ssl.SSLContext, ssl.SSLContext | None]:
    contexts: tuple[ssl.SSLContext, ssl.SSLContext | None] = http._build_ssl_contexts(proxy_url)
    return contexts


async def test_clients_share_one_verifying_context_per_setting() -> None:
    first, second = await _context(), await _context()
    assert first is second
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    unverified = await _context(verify=False)
    assert unverified is not first and unverified.verify_mode == ssl.CERT_NONE


async def test_a_proxy_gets_contexts_of_its_own() -> None:
    http = SharedTLSSession(verify=True, proxies={"https": "http://proxy.invalid:3128"})
    context, proxy_context = await _build(http, "http://proxy.invalid:3128")
    assert context is not await _context()
    assert proxy_context is not None


@pytest.mark.parametrize("service", ["kinesis", "cloudwatch"])
async def test_async_clients_use_the_sharing_session(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    async with aws.async_client(service, aws.ClientConfig(region="us-east-1")) as client:
        assert isinstance(client._endpoint.http_session, SharedTLSSession)
