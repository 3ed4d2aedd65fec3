"""Which stream a worker consumes: a name in the configured region and account, or an ARN.

An ARN names one stream exactly: its region decides where the Kinesis client connects, its account
must be the caller's (or reached through a role), and the Kinesis calls pass ``StreamARN`` rather
than a name, which is also what cross-account access through a resource policy needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kpl.aws import ClientConfig, is_stream_arn, stream_api_args
from kpl.errors import ConfigurationError

__all__ = ["StreamArn", "is_stream_arn", "kinesis_client_config", "parse_stream_arn", "stream_api_args",
           "stream_name_of"]

_ARN = re.compile(r"arn:(aws[a-z-]*):kinesis:([a-z0-9-]+):(\d{12}):stream/([A-Za-z0-9_.-]{1,128})")


@dataclass(frozen=True, slots=True)
class StreamArn:
    partition: str
    region: str
    account: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:kinesis:{self.region}:{self.account}:stream/{self.name}"

    def __str__(self) -> str:
        return self.arn


def parse_stream_arn(text: str) -> StreamArn:
    """The parts of a Kinesis stream ARN; a ConfigurationError naming what is wrong otherwise."""
    match = _ARN.fullmatch(text.strip())
    if match is None:
        raise ConfigurationError(
            f"streamArn {text!r} is not a Kinesis stream ARN "
            "(arn:aws:kinesis:<region>:<12-digit account>:stream/<name>)"
        )
    return StreamArn(*match.groups())


def stream_name_of(stream: str) -> str:
    """The stream's name, for a name or an ARN."""
    return parse_stream_arn(stream).name if is_stream_arn(stream) else stream


def kinesis_client_config(config: ClientConfig, stream: str) -> ClientConfig:
    """The Kinesis client's configuration for ``stream``: an ARN's region wins over ``regionName``."""
    return config.with_(region=parse_stream_arn(stream).region) if is_stream_arn(stream) else config
