"""The page-view events the example consumers understand, in the two shapes the toolkit carries.

* The producer example's JSON: ``{"timestamp": ISO-8601, "user_id": ..., "event": ..., "page": ...}``.
* The agent's LOGTOJSON output for COMBINEDAPACHELOG: ``{"host", "ident", "authuser", "datetime":
  "10/Oct/2000:13:55:36 -0700", "request": "GET /path HTTP/1.1", "response", "bytes", "referer",
  "agent"}`` with ``null`` for Apache's ``-`` fields.

page = ``page``, else the path of ``request``; user = ``user_id``, else ``authuser`` when not null,
else ``host``; event time = the record's own time, else the record's arrival time at Kinesis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kcl import Record

APACHE_TIME = "%d/%b/%Y:%H:%M:%S %z"


@dataclass(frozen=True, slots=True)
class PageEvent:
    page: str
    user: str
    time: datetime


def _event_time(fields: dict[str, Any], record: Record) -> datetime | None:
    text = fields.get("timestamp")
    if isinstance(text, str):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    text = fields.get("datetime")
    if isinstance(text, str):
        try:
            return datetime.strptime(text, APACHE_TIME)
        except ValueError:
            pass
    return record.approximate_arrival_timestamp


def parse_event(record: Record) -> PageEvent | None:
    """The page view a record describes, or None for records that are not page views."""
    try:
        fields = json.loads(record.data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(fields, dict):
        return None
    page = fields.get("page")
    if not isinstance(page, str):
        request = fields.get("request")
        parts = request.split() if isinstance(request, str) else []
        page = parts[1].split("?", 1)[0] if len(parts) >= 2 else None
    user = fields.get("user_id") or fields.get("authuser") or fields.get("host")
    moment = _event_time(fields, record)
    if not page or not isinstance(user, str) or moment is None:
        return None
    return PageEvent(page, user, moment.astimezone(UTC))
