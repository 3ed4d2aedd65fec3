"""kcl: a native Python Kinesis Client Library (consumer with DynamoDB leases).

    import kcl

    class Printer(kcl.RecordProcessor):
        def process_records(self, records, checkpointer, millis_behind_latest):
            for record in records:
                print(record.partition_key, record.data)
            checkpointer.checkpoint()

    kcl.Worker("my-stream", "my-app", Printer).run_forever()

The lease table has the Java KCL's schema, so a Java or amazon-kclpy application's table is continued
in place.  See docs/kcl.md.
"""

import logging as _logging

from kcl.checkpointer import Checkpointer, PreparedCheckpointer
from kcl.config import DeadLetter, InitialPosition, MetricsLevel, RetrievalMode, WorkerConfig
from kcl.errors import (
    CheckpointDependencyError,
    CheckpointError,
    CheckpointThrottledError,
    ConfigurationError,
    InvalidCheckpointError,
    KclError,
    LeaseLostError,
    LeaseTableError,
    ProcessorLoadError,
    ReleaseLeaseError,
    ShardReadError,
    StreamNotFoundError,
)
from kcl.processor import PendingCheckpoint, Record, RecordProcessor
from kcl.properties import load_properties
from kcl.sequence import ExtendedSequenceNumber
from kcl.worker import Worker

# A library logs through the application's logging configuration, never around it (see kpl.logs).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "CheckpointDependencyError",
    "CheckpointError",
    "CheckpointThrottledError",
    "Checkpointer",
    "ConfigurationError",
    "DeadLetter",
    "ExtendedSequenceNumber",
    "InitialPosition",
    "InvalidCheckpointError",
    "KclError",
    "LeaseLostError",
    "LeaseTableError",
    "MetricsLevel",
    "PendingCheckpoint",
    "PreparedCheckpointer",
    "ProcessorLoadError",
    "Record",
    "RecordProcessor",
    "ReleaseLeaseError",
    "RetrievalMode",
    "ShardReadError",
    "StreamNotFoundError",
    "Worker",
    "WorkerConfig",
    "load_properties",
]
