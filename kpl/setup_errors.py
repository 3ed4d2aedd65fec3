"""Errors that mean the producer is set up wrong — credentials, profile, region — and how to fix them.

Such an error repeats on every attempt, so retrying it until RecordTtl only delays the bad news by
30 seconds per record.  The producer says so at once instead, with one of the codes below and a
message that says what to change:

* ``ProfileNotFound`` — AWS_PROFILE (or the profile setting) names a profile that does not exist;
* ``NoCredentials`` — no credentials anywhere in the standard chain;
* ``NoRegion`` — no region configured; ``InvalidRegion`` — a region that is not one: malformed, or
  unknown to botocore *and* its standard endpoint does not resolve (an endpoint override, or a
  region newer than botocore that resolves, is never called invalid).

Some are known when the clients are built (profile, malformed or missing region): ``start()`` raises
:class:`ConfigurationError` with them, before any record is accepted.  The others show in the first
calls (credentials, an unknown region): records fail at once, not retryable, and the stream is
unusable for the shard-map backoff period (see :mod:`kpl.discovery`).
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

import botocore.exceptions
import botocore.session

from kpl.errors import ConfigurationError
from kpl.records import RecordError

PROFILE_NOT_FOUND = "ProfileNotFound"
NO_CREDENTIALS = "NoCredentials"
NO_REGION = "NoRegion"
INVALID_REGION = "InvalidRegion"

_REGION_FIX = ("set AWS_DEFAULT_REGION, a region in the profile in ~/.aws/config, or region= in ProducerConfig "
               "(Region in a KPL properties file), to a region such as us-east-1")


@functools.cache
def _known_regions() -> frozenset[str]:
    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("kinesis", partition))
    return frozenset(regions)


def setup_error(error: BaseException, *, region: str | None = None, endpoint_url: str | None = None,
                ) -> RecordError | None:
    """The setup problem ``error`` stands for, with its fix; None when it is not one.

    ``region`` and ``endpoint_url`` are the client's: a connection error to the standard endpoint of
    a region botocore does not know is an invalid region, not a network problem.
    """
    if isinstance(error, botocore.exceptions.ProfileNotFound):
        return RecordError(PROFILE_NOT_FOUND, f"{error}: AWS_PROFILE (or the profile setting) names a profile "
                                              "that is not in ~/.aws/config or ~/.aws/credentials; define it "
                                              "there, or unset AWS_PROFILE")
    if isinstance(error, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)):
        return RecordError(NO_CREDENTIALS, f"{error}: no AWS credentials in the standard chain (AWS_ACCESS_KEY_ID "
                                           "and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, a "
                                           "container or instance role); configure one of them, or pass "
                                           "ProducerConfig(client_config=ClientConfig(credentials=...))")
    if isinstance(error, botocore.exceptions.InvalidRegionError):
        return RecordError(INVALID_REGION, f"{error}: {_REGION_FIX}")
    if isinstance(error, botocore.exceptions.NoRegionError) or (
            isinstance(error, ConfigurationError) and "region" in str(error)):
        return RecordError(NO_REGION, f"no AWS region configured: {_REGION_FIX}")
    if isinstance(error, botocore.exceptions.EndpointConnectionError) and region and endpoint_url:
        host = urlsplit(endpoint_url).hostname or ""
        standard = host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
        if standard and region not in _known_regions():
            return RecordError(INVALID_REGION, f"region {region!r} is not an AWS region botocore knows, and its "
                                               f"endpoint {host} cannot be reached ({error}): {_REGION_FIX}")
    return None


def client_setup_error(error: BaseException) -> RecordError | None:
    """A setup problem raised while a client was built (profile, region); None for anything else."""
    if isinstance(error, (botocore.exceptions.ProfileNotFound, botocore.exceptions.InvalidRegionError,
                          botocore.exceptions.NoRegionError, botocore.exceptions.NoCredentialsError)):
        return setup_error(error)
    if isinstance(error, ConfigurationError):
        return setup_error(error)  # None for other configuration errors: raised as they are
    return None
