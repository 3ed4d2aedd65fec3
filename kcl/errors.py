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
    """Base class of the consumer's errors."""


class StreamNotFoundError(KclError):
    """The stream to consume does not exist (or is not visible with these credentials)."""


class ProcessorLoadError(KclError, ImportError):
    """A ``module:Class`` processor reference cannot be imported or is not a record processor."""


class LeaseTableError(KclError):
    """The lease table is missing, cannot be created, or holds an item this worker cannot read."""


class CheckpointError(KclError):
    """A checkpoint could not be recorded."""


class LeaseLostError(CheckpointError):
    """This processor no longer holds the shard's lease (taken, released, or self-fenced): stop and return.

    The Java KCL's ``ShutdownException``.  Another worker resumes from the last recorded checkpoint.
    """


class InvalidCheckpointError(CheckpointError, ValueError):
    """The value is malformed, below the last checkpoint, or beyond the last record delivered."""


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
