"""The Firehose operations the sink serves: delivery streams that count what they are sent."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tests.support.sink.model import ACCOUNT_ID, SinkError, SinkSettings, b64_decoded_length

MAX_BATCH_ENTRIES = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024


@dataclass(slots=True)
class DeliveryStream:
    name: str
    arn: str
    records: int = 0
    bytes: int = 0
    failed: int = 0

    def stats(self) -> dict[str, int]:
        return {"records": self.records, "bytes": self.bytes, "failed": self.failed}


class FirehoseService:
    def __init__(self, settings: SinkSettings, region: str = "us-east-1", seed: int = 11) -> None:
        self.settings = settings
        self.region = region
        self.delivery_streams: dict[str, DeliveryStream] = {}
        self._random = random.Random(seed)

    def create(self, name: str) -> DeliveryStream:
        if name in self.delivery_streams:
            raise SinkError("ResourceInUseException", f"Firehose {name} under account {ACCOUNT_ID} already exists.")
        arn = f"arn:aws:firehose:{self.region}:{ACCOUNT_ID}:deliverystream/{name}"
        delivery = self.delivery_streams[name] = DeliveryStream(name, arn)
        return delivery

    def reset_counters(self) -> None:
        for delivery in self.delivery_streams.values():
            delivery.records = delivery.bytes = delivery.failed = 0

    def stats(self) -> dict[str, Any]:
        return {name: delivery.stats() for name, delivery in self.delivery_streams.items()}

    def _delivery_stream(self, body: dict[str, Any]) -> DeliveryStream:
        name = body.get("DeliveryStreamName")
        if not name:
            raise SinkError("ValidationException", "DeliveryStreamName is required")
        delivery = self.delivery_streams.get(name)
        if delivery is None:
            if not self.settings.auto_create:
                raise SinkError("ResourceNotFoundException", f"Firehose {name} under account {ACCOUNT_ID} not found.")
            delivery = self.create(name)
        return delivery

    def create_delivery_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("DeliveryStreamName"):
            raise SinkError("ValidationException", "DeliveryStreamName is required")
        return {"DeliveryStreamARN": self.create(body["DeliveryStreamName"]).arn}

    def delete_delivery_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        del self.delivery_streams[self._delivery_stream(body).name]
        return {}

    def describe_delivery_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        delivery = self._delivery_stream(body)
        return {"DeliveryStreamDescription": {
            "DeliveryStreamName": delivery.name,
            "DeliveryStreamARN": delivery.arn,
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "DirectPut",
            "VersionId": "1",
            "Destinations": [],
            "HasMoreDestinations": False,
        }}

    def list_delivery_streams(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"DeliveryStreamNames": sorted(self.delivery_streams), "HasMoreDeliveryStreams": False}

    def put_record_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        delivery = self._delivery_stream(body)
        entries = body.get("Records")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH_ENTRIES:
            raise SinkError("ValidationException", f"Records must hold 1 to {MAX_BATCH_ENTRIES} records")
        sizes = [self._record_size(entry, number) for number, entry in enumerate(entries, 1)]
        if sum(sizes) > MAX_BATCH_BYTES:
            raise SinkError("InvalidArgumentException",
                            f"PutRecordBatch of {sum(sizes)} bytes exceeds {MAX_BATCH_BYTES} bytes")
        fail_rate = self.settings.fail_rate
        responses: list[dict[str, str]] = []
        for size in sizes:
            if fail_rate and self._random.random() < fail_rate:
                delivery.failed += 1
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
                continue
            delivery.records += 1
            delivery.bytes += size
            responses.append({"RecordId": f"{delivery.records:064x}"})
        failed = len(entries) - sum(1 for r in responses if "RecordId" in r)
        return {"FailedPutCount": failed, "Encrypted": False, "RequestResponses": responses}

    def put_record(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.put_record_batch({**body, "Records": [body.get("Record")]})["RequestResponses"][0]
        if "ErrorCode" in response:
            raise SinkError(response["ErrorCode"], response["ErrorMessage"])
        return {"RecordId": response["RecordId"], "Encrypted": False}

    @staticmethod
    def _record_size(entry: Any, number: int) -> int:
        if not isinstance(entry, dict) or not isinstance(entry.get("Data"), str):
            raise SinkError("ValidationException", f"record {number}: Data is required")
        size = b64_decoded_length(entry["Data"])
        if size > MAX_RECORD_BYTES:
            raise SinkError("ValidationException",
                            f"record {number}: {size} bytes is over the {MAX_RECORD_BYTES}-byte limit")
        return size
