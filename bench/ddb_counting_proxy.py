"""An HTTP proxy in front of LocalStack that counts what DynamoDB clients ask for.

Clients (here: the lease-table benchmark's worker processes, through ``AWS_ENDPOINT_URL_DYNAMODB``)
talk to ``proxy.url``; every request is forwarded unchanged and its answer returned unchanged, and on
the way the proxy counts, per operation: requests, items read (a Scan's ``ScannedCount``, a GetItem's
item, a BatchGetItem's items: what DynamoDB bills reads by), writes, and conditional writes that
failed their condition.  It runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"})
_READS = frozenset({"Scan", "Query", "GetItem", "BatchGetItem"})
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})


@dataclass
class Counts:
    requests: Counter[str] = field(default_factory=Counter)
    items_read: Counter[str] = field(default_factory=Counter)
    failed_conditions: int = 0

    @property
    def reads(self) -> int:
        return sum(self.items_read.values())

    @property
    def read_requests(self) -> int:
        return sum(n for op, n in self.requests.items() if op in _READS)

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.requests.items() if op in _WRITES)

    def minus(self, earlier: Counts) -> Counts:
        return Counts(self.requests - earlier.requests, self.items_read - earlier.items_read,
                      self.failed_conditions - earlier.failed_conditions)


def items_read(operation: str, answer: dict[str, Any]) -> int:
    if operation in ("Scan", "Query"):
        return int(answer.get("ScannedCount", answer.get("Count", 0)))
    if operation == "GetItem":
        return 1 if "Item" in answer else 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in answer.get("Responses", {}).values())
    return 0


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._counts = Counts()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ddb-counting-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> Counts:
        with self._lock:
            current = self._counts
            return Counts(Counter(current.requests), Counter(current.items_read), current.failed_conditions)

    def start(self) -> CountingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(limit=256))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        async with self._session.request(request.method, self.upstream + str(request.rel_url), data=body,
                                         headers=headers) as answer:
            data = await answer.read()
            status = answer.status
            answer_headers = {name: value for name, value in answer.headers.items()
                              if name.lower() not in _HOP_BY_HOP}
        self._count(request.headers.get("X-Amz-Target", ""), status, data)
        return web.Response(status=status, body=data, headers=answer_headers)

    def _count(self, target: str, status: int, data: bytes) -> None:
        operation = target.rpartition(".")[2] or "other"
        read = 0
        failed = False
        if status == 200 and operation in _READS:
            try:
                read = items_read(operation, json.loads(data))
            except ValueError:
                read = 0
        elif status == 400 and b"ConditionalCheckFailed" in data:
            failed = True
        with self._lock:
            self._counts.requests[operation] += 1
            self._counts.items_read[operation] += read
            self._counts.failed_conditions += failed
