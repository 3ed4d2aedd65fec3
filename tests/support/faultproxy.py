"""A TCP proxy on 127.0.0.1 that injects network faults between AWS clients and LocalStack.

Clients (in this process or in child processes) are pointed at ``proxy.url`` instead of LocalStack;
the proxy forwards bytes both ways and, on command, misbehaves the way real networks do:

* ``latency(s)``  - every chunk is delayed by ``s`` seconds in each direction;
* ``blackhole()`` - connections are accepted and read, but nothing is forwarded or answered, so
  clients hit their timeouts (new connections too: the TCP handshake still succeeds);
* ``reset()``     - open connections are torn down with a TCP RST and new ones are reset at once;
* ``heal()``      - back to a clean pass-through.  Connections that were blackholed are reset so
  that clients reconnect instead of reading a half-dropped HTTP exchange.

It runs its own asyncio loop in a daemon thread, so synchronous tests can drive it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass


@dataclass
class ProxyStats:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped_bytes: int = 0
    resets: int = 0


def _blackholed(connection: _Connection) -> bool:
    """Read the flag afresh: a type checker narrows ``connection.blackholed`` across an ``await``."""
    return connection.blackholed


class _Connection:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter | None) -> None:
        self.client = client
        self.upstream = upstream
        self.blackholed = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            _set_rst_on_close(writer)
            writer.transport.abort()


def _set_rst_on_close(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.stats = ProxyStats()
        self._mode = "pass"
        self._latency = 0.0
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start_server())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop_server())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- fault controls -------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    def latency(self, seconds: float) -> None:
        self._latency = max(0.0, seconds)

    def blackhole(self) -> None:
        def apply() -> None:
            self._mode = "blackhole"
            for connection in self._connections:
                connection.blackholed = True

        self._loop.call_soon_threadsafe(apply)
        self._sync()

    def reset(self) -> None:
        def apply() -> None:
            self._mode = "reset"
            self._abort_all()

        self._loop.call_soon_threadsafe(apply)
        self._sync()

    def heal(self) -> None:
        def apply() -> None:
            self._mode = "pass"
            self._latency = 0.0
            for connection in [c for c in self._connections if c.blackholed]:
                connection.abort()
                self._connections.discard(connection)
                self.stats.resets += 1

        self._loop.call_soon_threadsafe(apply)
        self._sync()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # --- internals ------------------------------------------------------------------------------

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def _sync(self) -> None:
        """Return only after the loop has applied what was scheduled before."""
        async def noop() -> None:
            return None

        self._call(noop())

    def _abort_all(self) -> None:
        for connection in list(self._connections):
            connection.abort()
            self.stats.resets += 1
        self._connections.clear()

    async def _start_server(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self._mode == "reset":
            _set_rst_on_close(writer)
            writer.transport.abort()
            self.stats.resets += 1
            return
        if self._mode == "blackhole":
            connection = _Connection(writer, None)
            connection.blackholed = True
            self._connections.add(connection)
            await self._drain_into_void(reader, connection)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _set_rst_on_close(writer)
            writer.transport.abort()
            return
        connection = _Connection(writer, up_writer)
        self._connections.add(connection)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, connection, upstream=True),
                self._pump(up_reader, writer, connection, upstream=False),
            )
        finally:
            self._connections.discard(connection)
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _drain_into_void(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        try:
            while chunk := await reader.read(65536):
                self.stats.dropped_bytes += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            self._connections.discard(connection)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection, *, upstream: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if connection.blackholed:
                    self.stats.dropped_bytes += len(chunk)
                    continue
                if self._latency:
                    await asyncio.sleep(self._latency)
                    if _blackholed(connection):  # blackhole() may have run during the sleep
                        self.stats.dropped_bytes += len(chunk)
                        continue
                writer.write(chunk)
                await writer.drain()
                if upstream:
                    self.stats.bytes_up += len(chunk)
                else:
                    self.stats.bytes_down += len(chunk)
            if not connection.blackholed and writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
        except (ConnectionError, OSError):
            connection.abort()
