"""The one place AWS clients are built, for the producer, the consumer and the agent.

Endpoints, region and credentials come only from standard AWS configuration (environment, shared
config files, instance/container roles).  botocore itself honours ``AWS_ENDPOINT_URL`` and the
per-service ``AWS_ENDPOINT_URL_<SERVICE>`` variables, so pointing the toolkit at LocalStack is a matter
of environment, never of a code branch.  An explicit ``endpoint_url`` exists only for configuration
formats that carry one (the agent's ``kinesis.endpoint``).

Configuration formats that carry credentials of their own (the agent's ``awsAccessKeyId`` and
``assumeRoleARN``) pass them through :class:`ClientConfig`; everything else uses the standard chain.

Programs check the setup before they start (:func:`check_setup`): a missing profile, no credentials
or an invalid region is one clear error naming the fix, not a traceback or a worker retrying forever.

Timeouts and botocore's retry policy are chosen here on purpose: botocore's defaults (60 s read
timeout, legacy retry mode) would stall a producer for a minute on a dead connection and stack
retries underneath our own.  Components whose own layer retries (the producer's PutRecords, the
agent's sends) ask for ``max_attempts=1``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import aiobotocore.credentials
import aiobotocore.session
import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session
import botocore.utils
from aiobotocore.config import AioConfig

from kpl import __version__
from kpl._botocore import (
    SharedTLSSession,
    botocore_session_of,
    set_refreshing_credentials,
    set_refreshing_credentials_async,
)
from kpl.errors import ConfigurationError

__all__ = [
    "DEFAULT_CLIENT_CONFIG",
    "ClientConfig",
    "RetryMode",
    "StaticCredentials",
    "async_client",
    "check_setup",
    "is_stream_arn",
    "list_shards",
    "list_shards_blocking",
    "resolve_region",
    "stream_api_args",
    "sync_client"
]

RetryMode = Literal["standard", "adaptive", "legacy"]


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"StaticCredentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How a client talks to AWS.  Defaults suit control-plane calls (ListShards, DynamoDB)."""

    region: str | None = None
    endpoint_url: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_pool_connections: int = 10
    retry_mode: RetryMode = "standard"
    #: Total attempts including the first; 1 switches botocore's retries off.
    max_attempts: int = 3
    #: botocore validates every request parameter client-side; hot paths that build their own
    #: well-formed requests may switch that off.
    parameter_validation: bool = True
    #: Explicit keys; None means the standard credential chain.
    credentials: StaticCredentials | None = None
    #: Assume this role (with the configured or explicit credentials as the source), refreshed as needed.
    assume_role_arn: str | None = None
    assume_role_external_id: str | None = None
    assume_role_session_name: str = "kinesis-toolkit"

    @property
    def uses_default_credentials(self) -> bool:
        return self.credentials is None and self.assume_role_arn is None

    def _assume_role_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"RoleSessionName": self.assume_role_session_name, "DurationSeconds": 3600}
        if self.assume_role_external_id:
            args["ExternalId"] = self.assume_role_external_id
        return args

    def with_(self, **changes: Any) -> ClientConfig:
        return replace(self, **changes)

    def botocore_kwargs(self) -> dict[str, Any]:
        return {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "max_pool_connections": self.max_pool_connections,
            "retries": {"mode": self.retry_mode, "total_max_attempts": self.max_attempts},
            "parameter_validation": self.parameter_validation,
            "user_agent_extra": f"kinesis-toolkit/{__version__}",
            "tcp_keepalive": True,
        }


def _aio_config(config: ClientConfig) -> AioConfig:
    return AioConfig(http_session_cls=SharedTLSSession, **config.botocore_kwargs())


DEFAULT_CLIENT_CONFIG: ClientConfig = ClientConfig()

_session_lock = threading.Lock()
_aio_session: aiobotocore.session.AioSession | None = None


def _shared_aio_session() -> aiobotocore.session.AioSession:
    """Loading botocore's data files costs tens of milliseconds; one session per process is enough."""
    global _aio_session
    with _session_lock:
        if _aio_session is None:
            _aio_session = aiobotocore.session.get_session()
        return _aio_session


def resolve_region(region: str | None = None, session: botocore.session.Session | None = None) -> str:
    """The explicit region, else the standard configuration's; a clear error when there is none."""
    if region:
        return region
    configured = (session or _shared_aio_session()).get_config_variable("region")
    if not configured:
        raise ConfigurationError(
            "no AWS region configured: set AWS_DEFAULT_REGION (or region in ~/.aws/config), "
            "or name one in the configuration"
        )
    return str(configured)


async def _aio_session_for(config: ClientConfig) -> aiobotocore.session.AioSession:
    if config.uses_default_credentials:
        return _shared_aio_session()
    session = aiobotocore.session.get_session()
    if config.credentials is not None:
        creds = config.credentials
        session.set_credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    if config.assume_role_arn:
        source = await session.get_credentials()
        if source is None:
            raise ConfigurationError(f"no source credentials found to assume role {config.assume_role_arn}")
        fetcher = aiobotocore.credentials.AioAssumeRoleCredentialFetcher(
            client_creator=session.create_client, source_credentials=source,
            role_arn=config.assume_role_arn, extra_args=config._assume_role_args(),
        )
        set_refreshing_credentials_async(session, fetcher.fetch_credentials)
    return session


def _boto3_session_for(config: ClientConfig) -> boto3.session.Session:
    if config.credentials is not None:
        creds = config.credentials
        session = boto3.session.Session(
            aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
        )
    else:
        session = boto3.session.Session()
    if config.assume_role_arn:
        core = botocore_session_of(session)
        source = core.get_credentials()
        if source is None:
            raise ConfigurationError(f"no source credentials found to assume role {config.assume_role_arn}")
        fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
            client_creator=core.create_client, source_credentials=source,
            role_arn=config.assume_role_arn, extra_args=config._assume_role_args(),
        )
        set_refreshing_credentials(core, fetcher.fetch_credentials)
    return session


@contextlib.asynccontextmanager
async def async_client(service: str, config: ClientConfig = DEFAULT_CLIENT_CONFIG) -> AsyncIterator[Any]:
    """An aiobotocore client for ``service``; closes its connection pool on exit."""
    session = await _aio_session_for(config)
    region = resolve_region(config.region, session)
    aio_config = _aio_config(config)
    async with session.create_client(
        service, region_name=region, endpoint_url=config.endpoint_url, config=aio_config
    ) as client:
        yield client


def sync_client(service: str, config: ClientConfig = DEFAULT_CLIENT_CONFIG) -> Any:
    """A boto3 client for code that must block (pynamodb's neighbours, CLIs, tests)."""
    session = _boto3_session_for(config)
    region = resolve_region(config.region, botocore_session_of(session))
    return session.client(
        service,
        region_name=region,
        endpoint_url=config.endpoint_url,
        config=botocore.config.Config(**config.botocore_kwargs()),
    )


# --- checking the setup before a program starts ----------------------------------------------------

_CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile that has them with AWS_PROFILE, "
    "or run with an instance or container role"
)

#: Host name suffixes of AWS's own endpoints (an endpoint elsewhere accepts any region name).
_AWS_DNS_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def check_setup(clients: Mapping[str, ClientConfig]) -> None:
    """Resolve the region and credentials of each client a program will make, before it starts.

    ``clients`` maps a service name ("kinesis", "dynamodb"...) to the configuration its client is built
    with.  Raises :class:`ConfigurationError` with one line naming the problem and the fix for a missing
    profile, no credentials at all, no region, a region name that is not valid, or a region that is in
    no AWS partition while the endpoint is AWS's own.  Nothing is sent over the network: a role to assume
    is assumed later, by the clients (instance and container roles are looked up as the SDK does).
    """
    for service, config in clients.items():
        try:
            _check_client(service, config)
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigurationError(_missing_profile(str(exc.kwargs.get("profile", "")))) from None
        except botocore.exceptions.ConfigParseError as exc:
            raise ConfigurationError(f"the AWS configuration cannot be read: {exc}: correct that file") from None
        except (botocore.exceptions.PartialCredentialsError, botocore.exceptions.CredentialRetrievalError,
                botocore.exceptions.InvalidConfigError) as exc:
            raise ConfigurationError(
                f"AWS credentials cannot be loaded: {exc}: fix the credentials in the environment or in "
                "~/.aws/config and ~/.aws/credentials"
            ) from None


def _check_client(service: str, config: ClientConfig) -> None:
    session = botocore.session.Session()  # fresh: the environment and files as they are now
    region = resolve_region(config.region, session)
    origin = _region_origin(config)
    try:
        botocore.utils.validate_region_name(region)
    except botocore.exceptions.InvalidRegionError:
        raise ConfigurationError(
            f"AWS region {region!r} (from {origin}) is not a valid region name: set it to a region such as "
            "us-east-1"
        ) from None
    if config.credentials is None and session.get_credentials() is None:
        role = config.assume_role_arn
        what = f"source credentials to assume role {role}" if role else "credentials"
        raise ConfigurationError(f"no AWS {what} found: {_CREDENTIALS_FIX}")
    # The endpoint the client will use (explicit, AWS_ENDPOINT_URL*, endpoint_url in ~/.aws/config, or AWS's);
    # building a client sends nothing.
    client = session.create_client(service, region_name=region, endpoint_url=config.endpoint_url,
                                   aws_access_key_id="check", aws_secret_access_key="check")
    host = urlsplit(client.meta.endpoint_url).hostname or ""
    if host.endswith(_AWS_DNS_SUFFIXES):
        try:
            session.get_partition_for_region(region)
        except botocore.exceptions.UnknownRegionError:
            raise ConfigurationError(
                f"AWS region {region!r} (from {origin}) is not an AWS region: set it to a region such as "
                f"us-east-1, or set AWS_ENDPOINT_URL to reach a {service} endpoint outside AWS"
            ) from None


def _region_origin(config: ClientConfig) -> str:
    if config.region:
        return "the configuration"
    if os.environ.get("AWS_DEFAULT_REGION"):
        return "AWS_DEFAULT_REGION"
    return "~/.aws/config"


def _missing_profile(profile: str) -> str:
    origin = next((f" (from {name})" for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
                   if os.environ.get(name) == profile), "")
    return (f"AWS profile {profile!r}{origin} does not exist: add it to ~/.aws/config or ~/.aws/credentials, "
            "or set AWS_PROFILE to a profile that exists")


def is_stream_arn(stream: str) -> bool:
    return stream.startswith("arn:")


def stream_api_args(stream: str) -> dict[str, str]:
    """``StreamARN`` for a stream ARN, ``StreamName`` for a name: how every Kinesis call names the stream
    (an ARN passed as ``StreamName`` is refused as invalid characters)."""
    return {"StreamARN": stream} if is_stream_arn(stream) else {"StreamName": stream}


#: ListShards' page size: its maximum for a request that names the stream is 10,000, its default 1,000.
LIST_SHARDS_PAGE_SIZE = 1000


def _list_shards_requests(
    stream: str, shard_filter: str | None, page_size: int,
) -> Generator[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The requests of one ListShards pagination; receives each page, returns every shard.

    A page after the first names neither the stream nor the filter: Kinesis refuses NextToken together
    with StreamName (the KPL's issue #481).  One rule, driven by the async and the blocking callers.
    """
    request: dict[str, Any] = {**stream_api_args(stream), "MaxResults": page_size}
    if shard_filter is not None:
        request["ShardFilter"] = {"Type": shard_filter}
    shards: list[dict[str, Any]] = []
    while True:
        page = yield request
        shards.extend(page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token, "MaxResults": page_size}


async def list_shards(
    client: Any, stream: str, *, shard_filter: str | None = None, page_size: int = LIST_SHARDS_PAGE_SIZE,
) -> list[dict[str, Any]]:
    """Every shard of ``stream`` (a name or an ARN) through an aiobotocore Kinesis client, all pages.

    ``shard_filter``: a ListShards ``ShardFilter`` type (``"AT_LATEST"`` for the open shards); None lists
    closed shards too, as lineage needs.
    """
    requests = _list_shards_requests(stream, shard_filter, page_size)
    request = next(requests)
    try:
        while True:
            request = requests.send(await client.list_shards(**request))
    except StopIteration as done:
        shards: list[dict[str, Any]] = done.value
        return shards


def list_shards_blocking(
    client: Any, stream: str, *, shard_filter: str | None = None, page_size: int = LIST_SHARDS_PAGE_SIZE,
) -> list[dict[str, Any]]:
    """:func:`list_shards` through a boto3 client (tools, tests and benchmarks)."""
    requests = _list_shards_requests(stream, shard_filter, page_size)
    request = next(requests)
    try:
        while True:
            request = requests.send(client.list_shards(**request))
    except StopIteration as done:
        shards: list[dict[str, Any]] = done.value
        return shards
