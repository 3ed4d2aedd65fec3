"""The client factory against LocalStack: explicit credentials and assumed roles as agent.json carries them."""

from __future__ import annotations

from kpl.aws import ClientConfig, StaticCredentials, async_client, sync_client


def test_sync_client_with_explicit_credentials_and_assumed_role() -> None:
    config = ClientConfig(
        credentials=StaticCredentials("AKIDEXAMPLE", "s3cr3t-value"),
        assume_role_arn="arn:aws:iam::000000000000:role/kinesis-agent",
        assume_role_external_id="ext-1",
    )
    sts = sync_client("sts", config)
    identity = sts.get_caller_identity()
    assert "assumed-role/kinesis-agent" in identity["Arn"]
    assert "s3cr3t-value" not in repr(config)


async def test_async_client_with_assumed_role() -> None:
    config = ClientConfig(assume_role_arn="arn:aws:iam::000000000000:role/kinesis-agent")
    async with async_client("sts", config) as sts:
        identity = await sts.get_caller_identity()
    assert "assumed-role/kinesis-agent" in identity["Arn"]
