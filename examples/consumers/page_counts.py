"""Page views per page per 1-minute tumbling window (the seed's first Kinesis Analytics query).

    examples/with-localstack kcl-worker --stream page-views --application page-counts \
        --processor examples.consumers.page_counts:PageCountProcessor --initial-position TRIM_HORIZON

Writes one JSON line per (window, page) to the file named by ``PAGE_COUNTS_OUTPUT`` (stdout when
unset): ``{"window_start": "2024-05-01T12:00:00+00:00", "page": "/cart", "event_count": 17,
"shard": "shardId-000000000001", "closed": true}``.  Each shard emits its own partial counts: the
total for a page and window is the sum of its lines (``closed: false`` lines are windows that were
still open when the worker stopped; later data for the same window adds further lines).

Accepts the producer example's JSON and the agent's COMBINEDAPACHELOG JSON (see events.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from examples.consumers.events import PageEvent
from examples.consumers.windows import TumblingWindowProcessor


class PageCountProcessor(TumblingWindowProcessor):
    window_seconds = 60
    output_env = "PAGE_COUNTS_OUTPUT"

    def key(self, event: PageEvent) -> str:
        return event.page

    def lines_for(self, start: datetime, counts: Counter[str], closed: bool) -> list[dict[str, Any]]:
        return [{"window_start": start.isoformat(), "page": page, "event_count": count, "shard": self.shard_id,
                 "closed": closed} for page, count in sorted(counts.items())]
