"""The lease table: one DynamoDB item per shard, in the Java KCL's exact schema, through pynamodb.

A table written by a Java KCL or amazon-kclpy application is read and continued in place, and one
written here is readable by them: the attribute names, DynamoDB types and sentinel strings are the
KCL's (``leaseKey`` S hash key, ``leaseCounter`` N, ``checkpoint`` S, ``parentShardId`` SS omitted when
empty, ``pendingCheckpointState`` B, ...).  Non-lease rows that KCL 3.5 keeps in the same table
(``entityType`` other than ``LEASE``) are skipped.

Items carry a few attributes of our own, which the Java KCL ignores (its serializer reads the attributes
it knows and nothing else) and whose names it does not use: ``renewalCounter`` (kcl.expiry),
``pyMillisBehindLatest`` and ``pyProcessedAt`` (the owner's progress, written by renewals at no extra
cost, for ``kcl-worker status``), and ``pyCounterChangedAt``/``pyCounterChangedTo`` (when our last write
set ``leaseCounter``, and to what: a renewal age that a Java worker's later write cannot falsify).

Every write that changes who may act on a shard is conditional on ``leaseCounter``, the lease's
optimistic lock and heartbeat: renew, take, checkpoint and release succeed only if nobody else has
written since this worker last looked.  pynamodb is blocking; the methods here are blocking too, and
each sends one request.  Callers on the event loop go through :meth:`LeaseTable.call`, which runs them
on the table's own threads and retries them (:data:`ATTEMPTS`) with the wait on the event loop; code
already on a thread of its own uses :meth:`LeaseTable.call_blocking`.  The item schema and its mapping
to :class:`Lease` are in :mod:`kcl.lease_items`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import botocore.exceptions
from pynamodb.exceptions import PynamoDBException
from tenacity import stop_after_attempt, stop_any
from tenacity.stop import stop_base

from kcl.errors import KclError, LeaseTableError
from kcl.lease_items import (
    EXTRA_ATTRIBUTES,
    LEASE_ENTITY_TYPE,
    Lease,
    _LeaseItem,
    describe_failure,
    item_from_lease,
    lease_from_item,
)
from kcl.sequence import SHARD_END, ExtendedSequenceNumber
from kpl.aws import resolve_region
from kpl.logs import get_logger
from kpl.retry import Backoff, error_code, is_retryable, retrying, retrying_blocking

log = get_logger(__name__)

__all__ = [
    "EXTRA_ATTRIBUTES",
    "LEASE_ENTITY_TYPE",
    "ConditionFailed",
    "Lease",
    "LeaseTable",
    "TableSettings",
    "describe_failure",
    "item_from_lease",
    "lease_from_item",
]

T = TypeVar("T")


class ConditionFailed(KclError):
    """A conditional write found the item changed (or missing): someone else acted first.

    Internal: it never reaches a processor (the checkpointer turns it into :class:`kcl.errors.LeaseLostError`),
    and it is never retried, as the next attempt would find the same item.
    """


#: Attempts per table operation when it goes through :meth:`LeaseTable.call` or :meth:`LeaseTable.call_blocking`.
#: Renewals, takes and handoff requests are sent once: the next renewal or taker round decides again, from a
#: fresh read, and a renewal that waited out a backoff would only come closer to the failover time.
ATTEMPTS: dict[str, int] = {
    "list_leases": 3, "get_many": 3, "get": 3, "create_if_absent": 3, "delete_finished": 3, "set_child_shards": 3,
    "checkpoint": 3, "prepare_checkpoint": 3, "release": 3, "complete_handoff": 3,
}

_WAIT = Backoff(initial=0.05, maximum=1.0)


def _retried(error: BaseException) -> bool:
    """Throttling and transient failures; never a refused condition (the next attempt finds the same item)."""
    return not isinstance(error, ConditionFailed) and is_retryable(error)


@dataclass(frozen=True)
class TableSettings:
    """Connection settings for the lease table; endpoint and region from standard AWS configuration."""

    table_name: str
    region: str | None = None
    #: Only when a configuration file names one (``dynamoDBEndpoint``); None means standard configuration.
    endpoint_url: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_pool_connections: int = 32
    #: Applied when this worker creates the table (leaseTableDeletionProtectionEnabled, leaseTablePitrEnabled).
    deletion_protection: bool = False
    point_in_time_recovery: bool = False


def _lease_model(settings: TableSettings) -> type[_LeaseItem]:
    meta = type("Meta", (), {
        "table_name": settings.table_name,
        "region": resolve_region(settings.region),
        "host": settings.endpoint_url,
        "billing_mode": "PAY_PER_REQUEST",
        "connect_timeout_seconds": settings.connect_timeout,
        "read_timeout_seconds": settings.read_timeout,
        # Retries are ours (kpl.retry), so that a renewal fails fast and a checkpoint retries with backoff.
        "max_retry_attempts": 0,
        "max_pool_connections": settings.max_pool_connections,
    })
    return type(f"LeaseItem_{settings.table_name}", (_LeaseItem,), {"Meta": meta})


# --- the table ------------------------------------------------------------------------------------


class LeaseTable:
    """Blocking lease operations with the KCL's conditions; ``call`` runs one off the event loop."""

    def __init__(self, settings: TableSettings, *, threads: int = 8) -> None:
        self.settings = settings
        self.model = _lease_model(settings)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kcl-lease-table")
        #: DynamoDB requests sent, by operation; read by metrics and the benchmark.
        self.requests: dict[str, int] = {}
        #: Requests that failed (the table did not answer, or refused), by (operation, error code); a
        #: failed condition is an answer, not a failure.
        self.failures: dict[tuple[str, str], int] = {}
        #: The last failure, for /healthz (kcl.health) and its reason.
        self.last_error: str | None = None
        # Monotonic times of the last answer (the table's creation counts as one) and the last failure.
        self._last_answer = time.monotonic()
        self._last_failure: float | None = None
        self._requests_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.settings.table_name

    @property
    def region(self) -> str:
        return resolve_region(self.settings.region)

    async def call(self, method: Callable[..., T], *args: Any, attempts: int | None = None,
                   stop: stop_base | None = None) -> T:
        """Run a blocking method of this table on the table's threads, retrying it as :data:`ATTEMPTS` says.

        Each attempt is one hop to a table thread; the backoff between attempts is awaited here, on the
        event loop, so a throttled request does not hold a table thread while it waits.  ``attempts``
        overrides the operation's budget (other callables get one attempt); ``stop`` ends the retries
        sooner (the lease is lost, the worker stops).  A refused condition is never retried.
        """
        loop = asyncio.get_running_loop()
        request = functools.partial(method, *args)

        async def once() -> T:
            return await loop.run_in_executor(self._executor, request)

        result: T = await retrying(wait=_WAIT.wait, stop=self._stop(method, attempts, stop), retry_on=_retried)(once)
        return result

    def call_blocking(self, method: Callable[..., T], *args: Any, attempts: int | None = None,
                      stop: stop_base | None = None) -> T:
        """:meth:`call` for code already on a thread of its own (a processor's checkpoint, the renewer).

        The backoff blocks the calling thread, never one of the table's.
        """
        result: T = retrying_blocking(wait=_WAIT.wait, stop=self._stop(method, attempts, stop),
                                      retry_on=_retried)(method, *args)
        return result

    def _stop(self, method: Callable[..., Any], attempts: int | None, stop: stop_base | None) -> stop_base:
        if attempts is None:
            ours = getattr(method, "__self__", None) is self
            attempts = ATTEMPTS.get(getattr(method, "__name__", ""), 1) if ours else 1
        budget = stop_after_attempt(attempts)
        return budget if stop is None else stop_any(budget, stop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- table lifecycle --------------------------------------------------------------------------

    def exists(self) -> bool:
        return bool(self._request("DescribeTable", self.model.exists))

    def ensure_exists(self, timeout: float = 600.0) -> bool:
        """Create the table (on-demand billing) unless it exists; True when this call created it."""
        if self.exists():
            self._wait_active(timeout)
            return False
        client = self.model._get_connection().connection.client
        request: dict[str, Any] = {
            "TableName": self.name, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "leaseKey", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        }
        if self.settings.deletion_protection:
            request["DeletionProtectionEnabled"] = True
        try:
            self._request("CreateTable", client.create_table, **request)
            created = True
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise LeaseTableError(f"cannot create lease table {self.name}: {exc}") from exc
            created = False  # another worker created it at the same moment
        self._wait_active(timeout)
        if created:
            if self.settings.point_in_time_recovery:
                self._enable_point_in_time_recovery(client)
            log.info("created lease table", table=self.name, billing="PAY_PER_REQUEST",
                     deletion_protection=self.settings.deletion_protection,
                     point_in_time_recovery=self.settings.point_in_time_recovery)
        return created

    def _enable_point_in_time_recovery(self, client: Any) -> None:
        """PITR is a separate call once the table is ACTIVE (CreateTable cannot set it), as in the KCL."""
        try:
            self._request("UpdateContinuousBackups", client.update_continuous_backups, TableName=self.name,
                          PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        except Exception as exc:
            log.error("lease table created, but point-in-time recovery could not be enabled; enable it by hand",
                      table=self.name, error=describe_failure(exc))

    def _wait_active(self, timeout: float) -> None:
        """Poll DescribeTable until the table is ACTIVE; stops at the deadline (a poll, not a retry: an error of
        DescribeTable ends it).  Runs once, at start-up, before the table has other users."""
        deadline = time.monotonic() + timeout
        while True:
            description = self._request("DescribeTable", self.model._get_connection().describe_table)
            if description.get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise LeaseTableError(f"lease table {self.name} did not become ACTIVE within {timeout:.0f}s")
            time.sleep(0.5)

    # --- reads ------------------------------------------------------------------------------------

    def list_leases(self) -> list[Lease]:
        def scan() -> list[Lease]:
            leases = []
            for item in self.model.scan(consistent_read=True):
                lease = lease_from_item(item)
                if lease is not None:
                    leases.append(lease)
            return leases

        return self._request("Scan", scan)

    def get_many(self, lease_keys: Iterable[str]) -> dict[str, Lease]:
        """Consistent reads of a few leases (BatchGetItem, up to 100 keys a request); absent keys are left out."""
        keys = list(dict.fromkeys(lease_keys))

        def read() -> dict[str, Lease]:
            found = {}
            for item in self.model.batch_get(keys, consistent_read=True):
                lease = lease_from_item(item)
                if lease is not None:
                    found[lease.lease_key] = lease
            return found

        if not keys:
            return {}
        return self._request("BatchGetItem", read)

    def get(self, lease_key: str) -> Lease | None:
        def read() -> Lease | None:
            try:
                item = self.model.get(lease_key, consistent_read=True)
            except self.model.DoesNotExist:
                return None
            return lease_from_item(item)

        return self._request("GetItem", read)

    # --- writes -----------------------------------------------------------------------------------

    def create_if_absent(self, lease: Lease) -> bool:
        """Write a new lease unless one with its key exists; True when this call wrote it."""
        item = item_from_lease(self.model, lease)
        try:
            self._request("PutItem", item.save, self.model.lease_key.does_not_exist())
        except ConditionFailed:
            return False
        return True

    def renew(self, lease: Lease, owner: str, *, as_previous_owner: bool = False,
              progress: tuple[int, float] | None = None) -> Lease:
        """Bump the counter if nobody else has written.  ``as_previous_owner``: renew during a handoff.

        ``progress`` (MillisBehindLatest, when in epoch seconds) is recorded in the same write."""
        model = self.model
        item = model(lease.lease_key)
        condition = model.lease_counter == lease.lease_counter
        if as_previous_owner:
            condition &= model.checkpoint_owner == owner
        else:
            condition &= (model.lease_owner == owner) & model.checkpoint_owner.does_not_exist()
        actions = [*self._counter_actions(lease), model.renewal_counter.add(1)]
        if progress is not None:
            actions += [model.millis_behind_latest.set(progress[0]), model.processed_at.set(_millis(progress[1]))]
        return self._update("UpdateItem:renew", item, actions, condition)

    def _counter_actions(self, lease: Lease) -> list[Any]:
        """``leaseCounter`` + 1, and when and to what our write set it (see the module docstring)."""
        counter = lease.lease_counter + 1
        return [self.model.lease_counter.set(counter), self.model.counter_changed_to.set(counter),
                self.model.counter_changed_at.set(_millis(time.time()))]

    def take(self, lease: Lease, owner: str) -> Lease:
        """Become the owner of a lease last seen as ``lease`` (expired, released or stolen after timeout)."""
        item = self.model(lease.lease_key)
        actions: list[Any] = [*self._counter_actions(lease), self.model.lease_owner.set(owner),
                              self.model.checkpoint_owner.remove()]
        if _owner_switches(lease, owner):
            actions.append(self.model.owner_switches_since_checkpoint.add(1))
        condition = self.model.lease_counter == lease.lease_counter
        return self._update("UpdateItem:take", item, actions, condition)

    def initiate_handoff(self, lease: Lease, new_owner: str) -> Lease:
        """KCL 3.x graceful handoff: name the next owner and keep the current one as checkpoint owner.

        The counter does not change: the current owner keeps renewing (as previous owner) until its
        processor has checkpointed, then calls :meth:`complete_handoff`.
        """
        assert lease.lease_owner is not None
        item = self.model(lease.lease_key)
        actions = [self.model.lease_owner.set(new_owner), self.model.checkpoint_owner.set(lease.lease_owner)]
        condition = ((self.model.lease_owner == lease.lease_owner) & self.model.checkpoint_owner.does_not_exist()
                     & self.model.lease_key.exists())
        return self._update("UpdateItem:handoff", item, actions, condition)

    def complete_handoff(self, lease: Lease, previous_owner: str) -> Lease:
        item = self.model(lease.lease_key)
        # The KCL 3.x completes a handoff with assignLease(lease, leaseOwner): its owner-switch rule does
        # not count that (the owner named in the item does not change), and neither does this.
        actions = [*self._counter_actions(lease), self.model.checkpoint_owner.remove()]
        condition = (self.model.lease_counter == lease.lease_counter) & (
            self.model.checkpoint_owner == previous_owner)
        return self._update("UpdateItem:complete-handoff", item, actions, condition)

    def release(self, lease: Lease, owner: str) -> Lease:
        """Clear the owner and bump the counter, so that other workers may take the lease at once."""
        item = self.model(lease.lease_key)
        actions = [*self._counter_actions(lease), self.model.lease_owner.remove()]
        condition = (self.model.lease_counter == lease.lease_counter) & (self.model.lease_owner == owner)
        return self._update("UpdateItem:release", item, actions, condition)

    def checkpoint(self, lease: Lease, value: ExtendedSequenceNumber) -> Lease:
        """Record ``value`` and discard any prepared checkpoint."""
        model = self.model
        item = model(lease.lease_key)
        actions = [
            *self._counter_actions(lease),
            model.checkpoint.set(value.sequence_number),
            model.checkpoint_sub_sequence_number.set(value.sub_sequence_number),
            model.owner_switches_since_checkpoint.set(0),
            model.pending_checkpoint.remove(),
            model.pending_checkpoint_sub_sequence_number.remove(),
            model.pending_checkpoint_state.remove(),
        ]
        condition = model.lease_counter == lease.lease_counter

        def already_written(current: Lease) -> bool:
            return current.lease_counter == lease.lease_counter + 1 and current.checkpoint == value

        return self._update("UpdateItem:checkpoint", item, actions, condition, recovered=already_written)

    def prepare_checkpoint(self, lease: Lease, value: ExtendedSequenceNumber, state: bytes | None) -> Lease:
        """Write the pending fields (two-phase checkpoint) without moving ``checkpoint``."""
        model = self.model
        item = model(lease.lease_key)
        actions = [
            *self._counter_actions(lease),
            model.pending_checkpoint.set(value.sequence_number),
            model.pending_checkpoint_sub_sequence_number.set(value.sub_sequence_number),
            model.pending_checkpoint_state.set(state) if state is not None else model.pending_checkpoint_state.remove(),
        ]
        condition = model.lease_counter == lease.lease_counter

        def already_written(current: Lease) -> bool:
            return current.lease_counter == lease.lease_counter + 1 and current.pending_checkpoint == value

        return self._update("UpdateItem:prepare", item, actions, condition, recovered=already_written)

    def set_child_shards(self, lease_key: str, children: Iterable[str]) -> None:
        """Record a closed shard's children (metadata only: the counter does not change)."""
        child_set = set(children)
        if not child_set:
            return
        item = self.model(lease_key)
        self._update("UpdateItem:children", item, [self.model.child_shard_ids.add(child_set)],
                     self.model.lease_key.exists())

    def delete_finished(self, lease_key: str) -> bool:
        """Delete a lease whose shard has been consumed to its end; False if it is not at SHARD_END."""
        item = self.model(lease_key)
        try:
            self._request("DeleteItem", item.delete, self.model.checkpoint == SHARD_END)
        except ConditionFailed:
            return False
        return True

    # --- plumbing ---------------------------------------------------------------------------------

    def _update(
        self, operation: str, item: _LeaseItem, actions: list[Any], condition: Any, *,
        recovered: Callable[[Lease], bool] | None = None,
    ) -> Lease:
        try:
            self._request(operation, item.update, actions=actions, condition=condition)
        except ConditionFailed:
            # A retried write whose first attempt did land (the reply was lost) fails its condition on the
            # second; the KCL calls this a spurious failure and checks the item.
            if recovered is not None:
                current = self.get(item.lease_key)
                if current is not None and recovered(current):
                    return current
            raise
        lease = lease_from_item(item)
        if lease is None:
            raise LeaseTableError(f"lease {item.lease_key} in {self.name} is not readable after {operation}")
        return lease

    def _request(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._requests_lock:
            self.requests[operation] = self.requests.get(operation, 0) + 1
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            error = _translate(exc) if isinstance(exc, PynamoDBException) else exc
            if isinstance(error, ConditionFailed):
                self._answered()  # a refused condition is an answer
            else:
                self._failed(operation, error)
            if error is exc:
                raise
            raise error from exc
        self._answered()
        return result

    @property
    def unanswered_since(self) -> float | None:
        """When the table last answered, if a request has failed since (monotonic); None while it answers."""
        failure, answer = self._last_failure, self._last_answer
        return answer if failure is not None and failure > answer else None

    def _answered(self) -> None:
        self._last_answer = time.monotonic()

    def _failed(self, operation: str, error: BaseException) -> None:
        key = (operation, error_code(error))
        with self._requests_lock:
            self.failures[key] = self.failures.get(key, 0) + 1
            self.last_error = f"{operation}: {describe_failure(error)}"
        self._last_failure = time.monotonic()


def _millis(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _owner_switches(lease: Lease, new_owner: str) -> bool:
    """The Java KCL's rule (DynamoDBLeaseSerializer.getDynamoTakeLeaseUpdate) for adding 1 to
    ``ownerSwitchesSinceCheckpoint``: another worker owned the lease, or the new owner was finishing a
    handoff of it.  The first take of a new (never owned) lease is not a switch."""
    previous = lease.lease_owner
    return (previous is not None and previous != new_owner) or lease.checkpoint_owner == new_owner


def _translate(exc: PynamoDBException) -> BaseException:
    """ConditionFailed for failed conditions, else the underlying botocore error (for kpl.retry)."""
    cause = exc.cause
    # Not exc.cause_response_code: it fails on causes without a response (a read timeout).
    if isinstance(cause, botocore.exceptions.ClientError) and error_code(cause) == "ConditionalCheckFailedException":
        return ConditionFailed(str(exc))
    if isinstance(cause, BaseException):
        return cause
    return LeaseTableError(str(exc))
