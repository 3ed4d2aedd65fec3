"""The toolkit's exception hierarchy.

Every error the toolkit raises on purpose derives from :class:`KinesisToolkitError`, so callers can
catch ours without catching everything.  Errors about bad input also derive from the built-in type a
Python programmer would expect (``ValueError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class KinesisToolkitError(Exception):
    """Base class of every error raised by kpl, kcl and agent."""


class ConfigurationError(KinesisToolkitError, ValueError):
    """A setting is missing, unknown or out of range.  The message names the setting."""
