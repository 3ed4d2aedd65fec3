"""What ``/healthz`` and ``/readyz`` mean for the agent.

Alive (``/healthz``): the event loop answers (the endpoint is served from it, so an answer is the proof)
and no flow has stopped on an unexpected error (the agent then exits 70 at once; the check covers the
moment in between).

Ready (``/readyz``): the agent has started every flow, is not stopping, and **ships**: no flow has
records waiting for delivery while nothing of it was delivered for longer than
``prometheus.maxDeliveryStallMillis`` (60 s by default).  Precisely, a flow's *delivery stall* is

    0                                                  when every batch it sent is acknowledged,
    now - max(oldest unacknowledged batch closed,
              last request that delivered a record)    otherwise.

So a flow that has nothing to send is ready, a flow whose destination is slow or throttles but still
accepts some records is ready, and a flow whose destination is unreachable, missing or denies access
becomes not ready once that has lasted the threshold, and ready again with the first record delivered.
The stall is also exported (``kinesis_agent_delivery_stall_seconds``) for alerting.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kpl.health import CheckResult, HealthChecks

if TYPE_CHECKING:
    from agent.daemon import Agent
    from agent.flow import Flow
    from agent.metrics import SendMetrics


def delivery_stall(flow: Flow, metrics: SendMetrics, now: float) -> float:
    """Seconds the flow has had records waiting without delivering any (0 when none wait)."""
    waiting_since = flow.waiting_since()
    if waiting_since is None:
        return 0.0
    last = metrics.last_delivered_at
    since = waiting_since if last is None else max(waiting_since, last)
    return max(0.0, now - since)


def register_checks(checks: HealthChecks, agent: Agent) -> None:
    """The agent's liveness and readiness checks, by name."""
    checks.add_liveness("flows running", lambda: _flows_running(agent))
    checks.add_readiness("started", lambda: _started(agent))
    checks.add_readiness("delivering", lambda: _delivering(agent))


def _flows_running(agent: Agent) -> CheckResult:
    for flow in agent.flows:
        error = flow.failed
        if error is not None:
            return f"flow {flow.id} stopped on an unexpected error ({error!r}); the agent is exiting"
    return None


def _started(agent: Agent) -> CheckResult:
    if agent.stopping:
        return "stopping: sending what was read, then saving checkpoints"
    if not agent.started.is_set():
        return "starting: opening checkpoints and restoring files"
    return None


def _delivering(agent: Agent) -> CheckResult:
    limit = agent.config.max_delivery_stall_ms / 1000
    now = time.monotonic()
    problems = []
    for flow in agent.flows:
        metrics = agent.send_metrics[flow.id]
        stall = delivery_stall(flow, metrics, now)
        if stall > limit:
            error = f", last error {metrics.last_error}" if metrics.last_error else ""
            problems.append(f"flow {flow.id} delivered nothing for {stall:.0f} s while {flow.budget.batches} "
                            f"batches ({flow.budget.bytes} bytes) wait (limit {limit:g} s{error})")
    return "; ".join(problems) or None
