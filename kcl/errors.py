"""The consumer's exceptions, all rooted at :class:`kpl.errors.KinesisToolkitError`.

Checkpoint failures mirror the Java KCL's checkpoint exceptions (``ShutdownException``,
``InvalidStateException``, ``ThrottlingException``, ``KinesisClientLibDependencyException``) so that a
processor ported from amazon-kclpy can tell "I no longer own this shard" from "try again later".
"""

from __future__ import annotations

from kpl.errors import ConfigurationError, KinesisToolkitError

__all__ = [
    "CheckpointDependencyError",
    "CheckpointError",
    "CheckpointThrottledError",
    "ConfigurationError",
    "InvalidCheckpointError",
    "KclError",
    "LeaseLostError",
    "LeaseTableError",
    "ProcessorLoadError",
    "ReleaseLeaseError",
    "StreamNotFoundError",
]


class KclError(KinesisToolkitError):
    """Base class of the consumer's errors.

    Raised itself where no finer class applies: ``Worker.start()`` called twice, DescribeStreamSummary
    failing for a reason other than a missing stream, a blocking ``checkpoint()`` called on the worker's
    event loop (use ``acheckpoint()``).
    """


class StreamNotFoundError(KclError):
    """The stream to consume does not exist (or is not visible with these credentials): raised by
    ``Worker.start()``/``run_forever()`` before any lease table is created (``kcl-worker`` exits 1)."""


class ProcessorLoadError(KclError, ImportError):
    """A ``module:Class`` processor reference cannot be imported or is not a record processor, or a
    processor's methods do not take the arguments the worker passes: raised by ``kcl-worker`` at start,
    by ``kcl.Worker(...)`` given such a class, and by the worker when a factory makes such a processor.
    Also an ``ImportError``."""


class LeaseTableError(KclError):
    """The lease table is missing, cannot be created or read, or holds an item this worker cannot read:
    raised by ``Worker.start()`` and ``kcl-worker status``."""


class CheckpointError(KclError):
    """A checkpoint could not be recorded; raised by ``checkpoint()``/``acheckpoint()`` as one of its
    four subclasses, so ``except kcl.CheckpointError`` catches them all."""


class LeaseLostError(CheckpointError):
    """This processor no longer holds the shard's lease (taken, released, or self-fenced): stop and return.

    The Java KCL's ``ShutdownException``.  Another worker resumes from the last recorded checkpoint.
    """


class InvalidCheckpointError(CheckpointError, ValueError):
    """``checkpoint()`` was given a value that is malformed, below the last checkpoint, or beyond the last
    record delivered (also a MultiLang checkpoint message with such a value).  Also a ``ValueError``."""


class CheckpointThrottledError(CheckpointError):
    """DynamoDB throttled the write after retries; retrying the checkpoint later is safe."""


class CheckpointDependencyError(CheckpointError):
    """DynamoDB failed (network, service error) after retries; retrying the checkpoint later is safe."""


class ReleaseLeaseError(KclError):
    """Raised by a record processor that cannot go on with its shard: end this tenure, release the lease.

    The worker calls no other method of that processor, checkpoints nothing, and releases the lease, so
    the shard is taken again (by this worker or another) at its next read of the lease table and
    resumes from the last checkpoint.  The MultiLang processor raises it when its child process exits,
    hangs past ``timeoutInSeconds`` or breaks the protocol.  Any other exception from
    ``process_records`` retries the batch instead.
    """


class ShardReadError(KclError):
    """Reading a shard stopped on an error that retrying will not fix (the stream or consumer is gone,
    access is denied), or a fan-out consumer did not become ACTIVE in time.  The shard consumer logs it
    and restarts the reader after a pause; the error also ends ``register_stream_consumer`` at start-up."""


__all__ += ["ShardReadError"]
