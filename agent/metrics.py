"""The Java agent's CloudWatch metrics, so existing dashboards and alarms keep working.

Namespace ``AWSKinesisAgent`` (``cloudwatch.namespace``), dimension ``Destination`` =
``KinesisStream:<name>`` or ``DeliveryStream:<name>``, plus ``Instance`` with ``cloudwatch.tagInstance``.
Senders record one observation per request, never per record; kpl.cloudwatch aggregates and uploads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kpl.cloudwatch import Dimensions, MetricsRegistry, dimensions

BYTES_SENT = "BytesSent"
RECORD_SEND_ATTEMPTS = "RecordSendAttempts"
RECORD_SEND_ERRORS = "RecordSendErrors"
SERVICE_ERRORS = "ServiceErrors"
RECORDS_SENT = "RecordsSent"


@dataclass(slots=True)
class SendTotals:
    """Totals since start, for the progress line and tests."""

    records_attempted: int = 0
    records_sent: int = 0
    record_errors: int = 0
    service_errors: int = 0
    bytes_sent: int = 0


class SendMetrics:
    """One flow's sender metrics: the CloudWatch ones, plus what Prometheus and /readyz read."""

    def __init__(self, registry: MetricsRegistry, destination: str, instance: str | None = None) -> None:
        self.registry = registry
        self.dims: Dimensions = dimensions(Destination=destination, Instance=instance)
        self.totals = SendTotals()
        #: ``time.monotonic()`` of the last request that delivered at least one record.
        self.last_delivered_at: float | None = None
        #: Waits before a retry, by the error code that caused them; and the last such code.
        self.retries_by_error: dict[str, int] = {}
        self.last_error: str | None = None

    def retry(self, code: str) -> None:
        """A send failed with ``code`` and is retried after a backoff."""
        self.retries_by_error[code] = self.retries_by_error.get(code, 0) + 1
        self.last_error = code

    def request(self, *, attempted: int, sent: int, failed: int, bytes_sent: int, service_error: bool) -> None:
        """One PutRecords / PutRecordBatch (or one producer round): what went in and what came back."""
        totals = self.totals
        totals.records_attempted += attempted
        totals.records_sent += sent
        totals.record_errors += failed
        totals.bytes_sent += bytes_sent
        if sent:
            self.last_delivered_at = time.monotonic()
        put = self.registry.put
        dims = self.dims
        put(RECORD_SEND_ATTEMPTS, attempted, dims=dims)
        put(SERVICE_ERRORS, 1 if service_error else 0, dims=dims)
        if service_error:
            totals.service_errors += 1
            return
        put(BYTES_SENT, bytes_sent, unit="Bytes", dims=dims)
        put(RECORDS_SENT, sent, dims=dims)
        put(RECORD_SEND_ERRORS, failed, dims=dims)
