"""The agent's exceptions, rooted at the toolkit's hierarchy."""

from __future__ import annotations

from kpl.errors import ConfigurationError, KinesisToolkitError


class AgentConfigurationError(ConfigurationError):
    """agent.json (or a file in agent.d/) is invalid; the message names the file and the key."""


class CheckpointStoreError(KinesisToolkitError):
    """The checkpoint database cannot be created, opened or written; the message says how to fix it."""


class ConversionError(KinesisToolkitError):
    """A data converter could not convert a record; the agent then sends the raw record, as the Java agent does."""
