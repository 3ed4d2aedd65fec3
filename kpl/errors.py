"""The toolkit's exception hierarchy.

Every error the toolkit raises on purpose derives from :class:`KinesisToolkitError`, so callers can
catch ours without catching everything.  Errors about bad input also derive from the built-in type a
Python programmer would expect (``ValueError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence


class KinesisToolkitError(Exception):
    """Base class of every error raised by kpl, kcl and agent."""


class ConfigurationError(KinesisToolkitError, ValueError):
    """A setting is missing, unknown or out of range.  The message names the setting."""


class ProducerError(KinesisToolkitError):
    """Base class of the producer's own errors (as opposed to bad input or configuration)."""


class ProducerNotStartedError(ProducerError, RuntimeError):
    """A record was put before the producer was started (``async with`` or ``await start()``)."""


class ProducerClosedError(ProducerError, RuntimeError):
    """A record was put after ``close()``: the producer no longer accepts records."""


class BufferFullError(ProducerError):
    """``put_record_nowait`` found the outstanding-records or outstanding-bytes bound reached.

    The caller decides what to do: wait (``await put_record``), shed load, or retry later.
    """


class ProducerTimeoutError(ProducerError, TimeoutError):
    """A blocking producer call did not complete within its timeout."""


class BackpressureTimeoutError(ProducerTimeoutError):
    """``put_record`` waited its whole timeout for buffer space; the record was not accepted.

    From ``put_records``: ``queued`` holds the futures of the records queued before the timeout
    (the others were not accepted).
    """

    queued: Sequence[object]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.queued = []


class FlushTimeoutError(ProducerTimeoutError):
    """``flush_all`` returned at its timeout with records still outstanding (they stay in flight)."""


class RecordFailedError(ProducerError):
    """A record failed; raised by ``RecordResult.raise_for_error()``.  ``result`` holds everything known."""

    def __init__(self, result: object) -> None:
        self.result = result
        error = getattr(result, "error", None)
        super().__init__(f"record failed: {error}" if error is not None else "record failed")
