"""kpl: a native Python Kinesis Producer Library.

The producer (``AsyncProducer``, ``Producer``) plus the pieces the toolkit's consumer and agent share:
``kpl.aws`` (AWS clients), ``kpl.retry``, ``kpl.aggregation``, ``kpl.hashing``, ``kpl.cloudwatch``,
``kpl.logs`` and ``kpl.errors``.
"""

import logging as _logging

__version__ = "0.1.0"

from kpl.config import MetricsGranularity, MetricsLevel, ProducerConfig, ProducerSettings
from kpl.errors import (
    ArgumentTypeError,
    BackpressureTimeoutError,
    BufferFullError,
    ConfigurationError,
    FlushTimeoutError,
    InvalidArgumentError,
    KinesisToolkitError,
    ProducerClosedError,
    ProducerError,
    ProducerNotStartedError,
    ProducerTimeoutError,
    RecordFailedError,
    RecordTooLargeError,
    UnknownSettingError,
)
from kpl.producer import AsyncProducer, Producer
from kpl.records import Attempt, RecordError, RecordResult, UserRecord

# A library logs through the application's logging configuration, never around it (see kpl.logs).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "ArgumentTypeError",
    "AsyncProducer",
    "Attempt",
    "BackpressureTimeoutError",
    "BufferFullError",
    "ConfigurationError",
    "FlushTimeoutError",
    "InvalidArgumentError",
    "KinesisToolkitError",
    "MetricsGranularity",
    "MetricsLevel",
    "Producer",
    "ProducerClosedError",
    "ProducerConfig",
    "ProducerError",
    "ProducerNotStartedError",
    "ProducerSettings",
    "ProducerTimeoutError",
    "RecordError",
    "RecordFailedError",
    "RecordResult",
    "RecordTooLargeError",
    "UnknownSettingError",
    "UserRecord",
    "__version__",
]
