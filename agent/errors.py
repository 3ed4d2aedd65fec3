"""The agent's exceptions, rooted at the toolkit's hierarchy (docs/agent.md lists them)."""

from __future__ import annotations

from kpl.errors import ConfigurationError, KinesisToolkitError


class AgentConfigurationError(ConfigurationError):
    """agent.json (or a file in agent.d/) is missing, unreadable or invalid; the message names the file and
    the key.  Raised when the configuration is loaded, before anything starts (``kinesis-agent`` exits 78)."""


class CheckpointStoreError(KinesisToolkitError):
    """The checkpoint database cannot be created, opened or written at start; the message says how to fix
    it (``kinesis-agent`` exits 73)."""


class ConversionError(KinesisToolkitError):
    """A data converter (dataProcessingOptions) could not convert a record.  Caught by the agent, which
    counts it and sends the raw record, as the Java agent does: it never stops a flow."""
