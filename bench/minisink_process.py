"""``python -m bench.minisink`` as a process for a ``with`` block, like :class:`tests.support.sink.SinkProcess`.

A module of its own so that ``bench/minisink.py``, the sink, shares no code with the project's sink.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.support.sink.process import SinkBase


class MiniSinkProcess(SinkBase):
    """``python -m bench.minisink``: the minimal independent Kinesis sink the cross-check compares against."""

    module = "bench.minisink"
    stats_path = "/_minisink/stats"
    reset_path = "/_minisink/reset"
    label = "minisink"

    def __init__(self, *, streams: Mapping[str, int] | None = None, latency_ms: float = 0.0,
                 behaviour: str = "keep-alive", start_timeout: float = 60.0) -> None:
        args = ["--port", "0", "--latency-ms", str(latency_ms), "--behaviour", behaviour]
        for name, shards in (streams or {"bench": 4}).items():
            args += ["--stream", f"{name}:{shards}"]
        super().__init__(args, start_timeout)
        self.behaviour = behaviour

    def delta(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        streams = after.get("streams", {})
        return {
            "cpu_s": after["cpu_s"] - before["cpu_s"],
            "wall_s": after["uptime_s"] - before["uptime_s"],
            "requests": sum(after.get("requests", {}).values()),
            "records": sum(s["records"] for s in streams.values()),
            "failed": 0, "user_records": 0, "misrouted_user_records": 0, "invalid_aggregates": 0,
            "served_user_records": 0, "firehose_records": 0, "verify": "none",
        }

