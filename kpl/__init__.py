"""kpl: a native Python Kinesis Producer Library.

The producer (``AsyncProducer``, ``Producer``) plus the pieces the toolkit's consumer and agent share:
``kpl.aws`` (AWS clients), ``kpl.retry``, ``kpl.aggregation``, ``kpl.hashing``, ``kpl.cloudwatch``,
``kpl.logs`` and ``kpl.errors``.
"""

__version__ = "0.1.0"

from kpl.config import ProducerConfig
from kpl.errors import (
    BackpressureTimeoutError,
    BufferFullError,
    ConfigurationError,
    FlushTimeoutError,
    KinesisToolkitError,
    ProducerClosedError,
    ProducerError,
    ProducerNotStartedError,
    ProducerTimeoutError,
    RecordFailedError,
)
from kpl.producer import AsyncProducer, Producer
from kpl.records import Attempt, RecordError, RecordResult, UserRecord

__all__ = [
    "AsyncProducer",
    "Attempt",
    "BackpressureTimeoutError",
    "BufferFullError",
    "ConfigurationError",
    "FlushTimeoutError",
    "KinesisToolkitError",
    "Producer",
    "ProducerClosedError",
    "ProducerConfig",
    "ProducerError",
    "ProducerNotStartedError",
    "ProducerTimeoutError",
    "RecordError",
    "RecordFailedError",
    "RecordResult",
    "UserRecord",
    "__version__",
]
