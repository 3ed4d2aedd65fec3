"""The toolkit's exception hierarchy.

Every error a public call of kpl, kcl or the agent raises derives from :class:`KinesisToolkitError`, so
callers can catch ours without catching everything.  Errors about bad input also derive from the
built-in type a Python programmer would expect (``ValueError`` for a bad value, ``TypeError`` for a
wrong type), so ``except ValueError`` and ``except TypeError`` keep working.  Broken internal invariants
stay plain built-ins: they are bugs, not errors a caller can act on.

docs/kpl.md, docs/kcl.md and docs/agent.md list every class with when it is raised
(tests/unit/test_errors.py keeps those tables complete).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ArgumentTypeError", "BackpressureTimeoutError", "BufferFullError", "ConfigurationError", "FlushTimeoutError",
    "InvalidArgumentError", "KinesisToolkitError", "ProducerClosedError", "ProducerError",
    "ProducerNotStartedError", "ProducerTimeoutError", "RecordFailedError", "RecordTooLargeError",
    "UnknownSettingError"
]


class KinesisToolkitError(Exception):
    """Base class of every error raised by kpl, kcl and agent: ``except KinesisToolkitError`` catches them all."""


class InvalidArgumentError(KinesisToolkitError, ValueError):
    """An argument of a public call has a value the call cannot take; the message names the argument.

    Raised at the call: by ``put_record``/``put_records`` for an empty stream name, a partition key that
    is empty, over 256 characters or not UTF-8 encodable, or an explicit hash key outside [0, 2**128);
    by ``kcl.ExtendedSequenceNumber`` for a malformed position; by ``kpl.health.HealthChecks`` for a
    non-positive timeout, a blank check name or a name registered twice; by
    ``kpl.prometheus.ProducerCollector`` for a namespace or label that is not a Prometheus name it can
    use.  Also a ``ValueError``.
    """


class ArgumentTypeError(KinesisToolkitError, TypeError):
    """An argument of a public call has a type the call does not take; the message names the argument.

    Raised at the call: by ``put_record``/``put_records`` for a stream name or partition key that is not
    a ``str``, data that is not bytes-like, an explicit hash key that is neither ``str`` nor ``int``, or a
    ``put_records`` item that is not a 2- or 3-tuple; by ``kcl.ExtendedSequenceNumber`` for a
    sub-sequence number that is not an ``int``; by ``kpl.health.HealthChecks`` for a check that is not
    callable.  Also a ``TypeError``.
    """


class RecordTooLargeError(InvalidArgumentError):
    """A record's UTF-8 partition key + data exceed the limit that applies to it, at ``put_record``,
    ``put_records`` or ``put_record_nowait``.

    The message names the size and the limit: the stream's maximum record size, the producer's
    MaxUserRecordSize when that is lower, or the 1 MiB default while the stream's own is not known yet
    (``put_record_nowait`` does not wait for it).  The record is not queued.  Also a ``ValueError``.
    """


class ConfigurationError(KinesisToolkitError, ValueError):
    """A setting is missing, unknown or out of range: the message names the setting (and file and line).

    Raised where the setting is read or first used: ``ProducerConfig``, ``WorkerConfig``, a properties
    file or agent.json being loaded, ``start()`` when the AWS configuration (profile, region,
    credentials) is unusable, a CloudWatch namespace that is empty or starts with ``AWS/`` (a
    ``kcl.Worker``'s application name is its namespace), an unknown level given to
    ``kpl.logs.configure_logging``.  Also a ``ValueError``.
    """


class UnknownSettingError(ConfigurationError, TypeError):
    """A keyword setting that does not exist was given to ``Producer``, ``AsyncProducer``, ``ProducerConfig``
    or ``ProducerConfig.with_``, ``kcl.WorkerConfig`` or ``WorkerConfig.with_`` (kpl.settings checks them all).

    The message names it and the closest settings (or the Python name of a Java key, or the new name of a
    renamed field: ``failover_time_millis`` is ``failover_time_ms``).  Also a ``TypeError``, like Python's own
    error for an unexpected keyword argument.
    """


class ProducerError(KinesisToolkitError):
    """Base class of the producer's own errors (as opposed to bad input or configuration); not raised itself."""


class ProducerNotStartedError(ProducerError, RuntimeError):
    """A record was put before the producer was started (``async with`` or ``await start()``)."""


class ProducerClosedError(ProducerError, RuntimeError):
    """A record was put after ``close()``: the producer no longer accepts records.

    Also raised by ``flush()``/``flush_all()`` after ``close()``, by ``start()`` on a closed producer, and
    by a ``put_record`` that was waiting for room when the producer closed.
    """


class BufferFullError(ProducerError):
    """``put_record_nowait`` found the outstanding-records or outstanding-bytes bound reached.

    The caller decides what to do: wait (``await put_record``), shed load, or retry later.
    """


class ProducerTimeoutError(ProducerError, TimeoutError):
    """A blocking producer call did not complete within its timeout; raised as one of its two subclasses."""


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
