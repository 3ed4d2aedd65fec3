"""Users with more than 100 events in 5 minutes (the seed's second Kinesis Analytics query).

    examples/with-localstack kcl-worker --stream page-views --application anomalies \
        --processor examples.consumers.anomalies:AnomalyProcessor --initial-position TRIM_HORIZON

Counts events per user in 5-minute tumbling windows and writes one JSON line per user above the
threshold to the file named by ``ANOMALIES_OUTPUT`` (stdout when unset): ``{"window_start": ...,
"user": "crawler-1", "event_count": 142, "shard": ..., "closed": true}``.  When the worker stops with
windows still open, users already above the threshold are reported with ``"closed": false`` (a count
only grows, so they are anomalies whatever follows); the open windows are not checkpointed, so the
next worker re-reads them and may report the same user again with the final count: deduplicate by
(window_start, user).

Counting is per shard, so it is exact when the partition key is the user (as in the producer
example, which keys by ``user_id``).  When a user's events are spread over shards (the agent's
default random partition keys), a per-shard count can stay under the threshold although the total
exceeds it: sum per-shard counts downstream, or key records by user.  ``ANOMALY_THRESHOLD`` changes
the threshold (default 100).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from typing import Any

from examples.consumers.events import PageEvent
from examples.consumers.windows import TumblingWindowProcessor


class AnomalyProcessor(TumblingWindowProcessor):
    window_seconds = 300
    output_env = "ANOMALIES_OUTPUT"
    replay_open_windows = True

    def __init__(self) -> None:
        self.threshold = int(os.environ.get("ANOMALY_THRESHOLD", "100"))

    def key(self, event: PageEvent) -> str:
        return event.user

    def lines_for(self, start: datetime, counts: Counter[str], closed: bool) -> list[dict[str, Any]]:
        return [{"window_start": start.isoformat(), "user": user, "event_count": count, "shard": self.shard_id,
                 "closed": closed} for user, count in sorted(counts.items()) if count > self.threshold]
