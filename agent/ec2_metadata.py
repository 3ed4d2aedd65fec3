"""What ADDEC2METADATA adds to records, and the instance id of ``cloudwatch.tagInstance``.

The Java converter (AddEC2MetadataConverter) merges the instance identity document's ``privateIp``,
``availabilityZone``, ``instanceId``, ``instanceType``, ``accountId``, ``imageId`` (as ``amiId``) and
``region``, a ``metadataTimestamp`` (``yyyy-MM-dd'T'HH:mm:ssZ``, local time), and ``tags``: the
instance's tags with their keys lower-cased, read with ec2:DescribeTags.  It has no option to leave the
tags out; when DescribeTags fails it logs a warning and the records carry no ``tags`` key.

Here the metadata comes from IMDSv2 (the Java agent's IMDSv1 calls fail on instances that require
tokens).  Tags are read from the instance metadata first (``/latest/meta-data/tags/instance``, present
when the instance allows tags in its metadata, which needs no IAM permission), else with DescribeTags in
the instance's region through the standard credential chain, as the Java agent does.  The IMDS endpoint
and switches are the SDK's: ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, ``AWS_EC2_METADATA_DISABLED``,
``AWS_METADATA_SERVICE_TIMEOUT`` (seconds, 1) and ``AWS_METADATA_SERVICE_NUM_ATTEMPTS`` (1).
Every call blocks: callers run these functions in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tenacity import stop_after_attempt, wait_none

from kpl.aws import ClientConfig, sync_client
from kpl.logs import get_logger
from kpl.retry import retrying_blocking

log = get_logger(__name__)

#: botocore's defaults for instance metadata calls.
IMDS_TIMEOUT_SECONDS = 1.0
IMDS_ATTEMPTS = 1
DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"
#: IMDS is link-local: it is never reached through an HTTP proxy set in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: DescribeTags: a few seconds at most, once per metadataTTL.
_EC2_CLIENT = ClientConfig(connect_timeout=2.0, read_timeout=5.0, max_attempts=2)


def _number(name: str, default: float) -> float:
    try:
        return max(float(os.environ.get(name, default)), 0.001)
    except ValueError:
        return default


class _Imds:
    """One IMDSv2 session: a token, then GETs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.timeout = _number("AWS_METADATA_SERVICE_TIMEOUT", IMDS_TIMEOUT_SECONDS)
        self.attempts = int(_number("AWS_METADATA_SERVICE_NUM_ATTEMPTS", IMDS_ATTEMPTS)) or 1
        self.token = ""
        self.token = self._call(urllib.request.Request(
            f"{base}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}
        )).decode()

    def get(self, path: str) -> bytes:
        return self._call(urllib.request.Request(f"{self.base}{path}",
                                                 headers={"X-aws-ec2-metadata-token": self.token}))

    def _call(self, request: urllib.request.Request) -> bytes:
        # At once, as botocore's IMDS fetcher retries: the attempts are there for a slow or lost answer.
        for attempt in retrying_blocking(wait=wait_none(), stop=stop_after_attempt(self.attempts),
                                         retry_on=_unreachable):
            with attempt:
                return self._open(request)
        raise AssertionError("retrying ends with a result or an error")

    def _open(self, request: urllib.request.Request) -> bytes:
        with _OPENER.open(request, timeout=self.timeout) as response:
            data: bytes = response.read()
            return data


def _unreachable(error: BaseException) -> bool:
    """IMDS could not be reached; an HTTP error is an answer (404: not published, 401: token refused)."""
    return isinstance(error, OSError) and not isinstance(error, urllib.error.HTTPError)


def _session() -> _Imds | None:
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_IMDS_ENDPOINT).rstrip("/")
    try:
        return _Imds(base)
    except (OSError, ValueError):
        return None


def _identity(imds: _Imds) -> dict[str, Any] | None:
    try:
        document = json.loads(imds.get("/latest/dynamic/instance-identity/document"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def fetch_instance_id() -> str | None:
    """The instance id, or None off EC2."""
    imds = _session()
    identity = _identity(imds) if imds is not None else None
    instance_id = identity.get("instanceId") if identity else None
    return str(instance_id) if instance_id else None


def fetch_ec2_metadata() -> dict[str, Any] | None:
    """The Java converter's fields, in its order, or None off EC2 (or with IMDS unreachable)."""
    imds = _session()
    document = _identity(imds) if imds is not None else None
    if imds is None or document is None:
        return None
    now = dt.datetime.now().astimezone()
    metadata: dict[str, Any] = {
        "privateIp": document.get("privateIp"),
        "availabilityZone": document.get("availabilityZone"),
        "instanceId": document.get("instanceId"),
        "instanceType": document.get("instanceType"),
        "accountId": document.get("accountId"),
        "amiId": document.get("imageId"),
        "region": document.get("region"),
        "metadataTimestamp": now.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tags = _tags_from_imds(imds)
    if tags is None:
        tags = _tags_from_api(document.get("instanceId"), document.get("region"))
    if tags is not None:
        metadata["tags"] = tags
    return metadata


def _tags_from_imds(imds: _Imds) -> dict[str, Any] | None:
    """Tags from instance metadata; None when the instance does not publish them there."""
    try:
        keys = imds.get("/latest/meta-data/tags/instance").decode().splitlines()
        values = {key: imds.get(f"/latest/meta-data/tags/instance/{urllib.parse.quote(key, safe='')}").decode()
                  for key in keys if key}
    except (OSError, UnicodeDecodeError):
        return None
    return {key.lower(): value for key, value in values.items()}


def _tags_from_api(instance_id: Any, region: Any) -> dict[str, Any] | None:
    if not instance_id or not region:
        return None
    try:
        client = sync_client("ec2", _EC2_CLIENT.with_(region=str(region)))
        tags: dict[str, Any] = {}
        for page in client.get_paginator("describe_tags").paginate(
            Filters=[{"Name": "resource-id", "Values": [str(instance_id)]}]
        ):
            for tag in page.get("Tags", []):
                tags[str(tag["Key"]).lower()] = tag.get("Value")
    except Exception as exc:  # no credentials, no permission, no network: the Java agent warns and goes on
        log.warning("ADDEC2METADATA: cannot read the instance's tags (allow tags in the instance metadata, or "
                    "grant ec2:DescribeTags); records are sent without them", instance_id=str(instance_id),
                    error=repr(exc))
        return None
    return tags
