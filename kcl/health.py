"""What ``/healthz`` and ``/readyz`` mean for a worker (served by kpl.observability, see docs/kcl.md).

Alive (``/healthz``, failing means "restart me"): the event loop answers (the endpoint is served from
it, so an answer is the proof), and **leases renew**:

* *lease renewal*: the renewal thread runs and begins a round at least once per failover time, and no
  lease this worker holds has gone unrenewed for the failover time (such a lease is self-fenced: its
  records are no longer dispatched, and another worker may take it);
* *lease table*: the lease table answers.  Precisely: not alive while the table's last answer is more
  than the failover time old and a request has failed since (a timeout, a network error, throttling
  or access denied after retries; a refused condition is an answer).  So a worker cut off from
  DynamoDB stops being alive when the leases it renewed expire (and the first check already reports
  them self-fenced), stays so whether it still holds leases or none (its reads of the table fail
  too), and is alive again with the first answer.

Ready (``/readyz``, failing means "not doing its work now"): the worker has started and is not
stopping, and it holds or is taking leases:

* *lease table read*: its last read of the whole lease table is at most one taker read interval plus
  the failover time old (so one failed read makes it not ready until the next one succeeds);
* *shard sync*: a shard sync (ListShards) succeeded within the last two shard sync intervals (one
  failed sync is tolerated, two in a row are not).

Checks run on the event loop and read plain attributes that the renewal thread and the lease table's
threads set (single assignments), so they take no locks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kpl.health import CheckResult, HealthChecks

if TYPE_CHECKING:
    from kcl.worker import Worker


def register_checks(checks: HealthChecks, worker: Worker) -> None:
    """The worker's liveness and readiness checks, by name."""
    checks.add_liveness("lease renewal", lambda: lease_renewal(worker))
    checks.add_liveness("lease table", lambda: lease_table_answers(worker))
    checks.add_readiness("started", lambda: started(worker))
    checks.add_readiness("lease table read", lambda: lease_table_read(worker))
    checks.add_readiness("shard sync", lambda: shard_sync(worker))


def lease_renewal(worker: Worker) -> CheckResult:
    coordinator = worker.coordinator
    if coordinator is None or not worker.running:
        return None
    failover = worker.config.failover_time
    renewer = coordinator.renewer
    now = time.monotonic()
    if not renewer.running:
        return "the lease renewal thread has stopped"
    began = renewer.last_round_started
    if began is not None and now - began > failover:
        return (f"no lease renewal round began for {now - began:.1f} s (one is due every "
                f"{worker.config.renewal_interval:.1f} s; failover time {failover:g} s)")
    held = coordinator.held
    clock = held.clock()
    fenced = sorted(lease.shard_id for lease in held.all() if not lease.lost and clock >= held.fence_time(lease))
    if fenced:
        return (f"not renewed within the failover time ({failover:g} s), so no longer processed: "
                f"{', '.join(fenced)}")
    return None


def lease_table_answers(worker: Worker) -> CheckResult:
    table = worker.lease_table
    if table is None:
        return None
    since = table.unanswered_since
    if since is None:
        return None
    silent = time.monotonic() - since
    failover = worker.config.failover_time
    if silent <= failover:
        return None
    return (f"the lease table {table.name} has not answered for {silent:.1f} s (longer than the failover time, "
            f"{failover:g} s); last error {table.last_error}")


def started(worker: Worker) -> CheckResult:
    if worker.stopping:
        return "stopping: processors checkpoint, then the leases are released"
    if not worker.running:
        return "starting: checking the stream, opening the lease table, first shard sync"
    return None


def lease_table_read(worker: Worker) -> CheckResult:
    coordinator = worker.coordinator
    if coordinator is None or not worker.running:
        return None
    last = coordinator.taker.last_scan_at
    if last is None:
        return "the lease table has not been read yet"
    age = coordinator.clock() - last
    interval = worker.config.scan_interval
    limit = interval + worker.config.failover_time
    if age > limit:
        return f"the lease table was last read {age:.1f} s ago (read every {interval:g} s; limit {limit:g} s)"
    return None


def shard_sync(worker: Worker) -> CheckResult:
    coordinator = worker.coordinator
    if coordinator is None or not worker.running:
        return None
    interval = worker.config.shard_sync_interval_ms / 1000
    last = coordinator.last_sync_ok
    age = None if last is None else time.monotonic() - last
    if age is not None and age <= 2 * interval:
        return None
    error = f"; last error {coordinator.last_sync_error}" if coordinator.last_sync_error else ""
    when = "yet" if age is None else f"for {age:.0f} s"
    return f"no shard sync succeeded {when} (one is due every {interval:g} s){error}"
