"""What the worker's stages need of each other and of the outside, as Protocols.

The coordinator and its helpers (lease taker, renewer, checkpointer) depend on a :class:`LeaseStore`,
not on ``kcl.leases.LeaseTable``; the coordinator reads shards through a :class:`ShardLister`; a shard
consumer talks to its coordinator through :class:`ShardCoordinator`.  So each stage can be built and
tested with a stand-in (the unit tests do), the shard consumer needs no import of the coordinator (an
import cycle before), and mypy checks that the real classes keep these promises where the worker
wires them together.  Metrics stay the concrete ``kcl.metrics.KclMetrics``: an in-memory recorder
with no I/O, which tests use as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from tenacity.stop import stop_base

from kcl.lease_items import Lease
from kcl.sequence import ExtendedSequenceNumber

__all__ = ["LeaseStore", "ShardCoordinator", "ShardLister"]

T = TypeVar("T")


class LeaseStore(Protocol):
    """The lease table (kcl.leases.LeaseTable): blocking methods, each run through :meth:`call` on the
    table's threads or through :meth:`call_blocking` from a thread of the caller's own."""

    @property
    def name(self) -> str: ...

    async def call(self, method: Callable[..., T], *args: Any, attempts: int | None = None,
                   stop: stop_base | None = None) -> T: ...

    def call_blocking(self, method: Callable[..., T], *args: Any, attempts: int | None = None,
                      stop: stop_base | None = None) -> T: ...

    def list_leases(self) -> list[Lease]: ...

    def get_many(self, lease_keys: Iterable[str]) -> dict[str, Lease]: ...

    def get(self, lease_key: str) -> Lease | None: ...

    def create_if_absent(self, lease: Lease) -> bool: ...

    def renew(self, lease: Lease, owner: str, *, as_previous_owner: bool = False,
              progress: tuple[int, float] | None = None) -> Lease: ...

    def take(self, lease: Lease, owner: str) -> Lease: ...

    def initiate_handoff(self, lease: Lease, new_owner: str) -> Lease: ...

    def complete_handoff(self, lease: Lease, previous_owner: str) -> Lease: ...

    def release(self, lease: Lease, owner: str) -> Lease: ...

    def checkpoint(self, lease: Lease, value: ExtendedSequenceNumber) -> Lease: ...

    def prepare_checkpoint(self, lease: Lease, value: ExtendedSequenceNumber, state: bytes | None) -> Lease: ...

    def set_child_shards(self, lease_key: str, children: Iterable[str]) -> None: ...

    def delete_finished(self, lease_key: str) -> bool: ...


class ShardLister(Protocol):
    """A Kinesis client, as far as shard discovery uses it (kpl.aws.list_shards pages through it)."""

    async def list_shards(self, **request: Any) -> dict[str, Any]: ...


class ShardCoordinator(Protocol):
    """What a shard consumer asks of the coordinator that gave it its lease."""

    @property
    def table(self) -> LeaseStore: ...

    async def relinquish(self, shard_id: str, token: str) -> None: ...

    async def shard_completed(self, shard_id: str, token: str) -> None: ...

    def shard_end_signal(self) -> asyncio.Event: ...

    async def unfinished_parents(self, parents: Iterable[str]) -> set[str]: ...

    async def create_children(self, shard_id: str, token: str, child_shards: list[dict[str, Any]]) -> None: ...
