"""A second, minimal Kinesis sink, independent of tests/support/sink/ and of kpl: the benchmark's cross-check.

    python -m bench.minisink --port 0 --stream bench:16 [--latency-ms M] [--behaviour connection-close]

Written from the Kinesis API reference alone, with the standard library only (no aiohttp, no kpl, no
code shared with ``tests/support/sink/``; CBOR bodies are read and written with the ``cbor2`` package), so
that a benchmark number that depends on how *our* sink answers shows up as a disagreement between the
two (``python -m bench.crosscheck``).

It serves the JSON 1.1 protocol (``X-Amz-Target: Kinesis_20131202.<Operation>``, any signature
accepted), and the same with CBOR bodies (``Content-Type: application/x-amz-cbor-1.1``: ``Data`` as raw
bytes instead of base64 text, answered in CBOR; what the AWS SDK for Java speaks), over HTTP/1.1
keep-alive on plain asyncio streams: every response is one write of the status line, ``Content-Length``
headers and body. Operations:

* ``ListShards`` (``NextToken`` pages of ``MaxResults``, default 1000), ``DescribeStreamSummary``,
``DescribeStream`` (async-kinesis asks for it at start); * ``PutRecords``: each entry's hash key is its
``ExplicitHashKey`` or MD5 of its partition key (UTF-8) read as a big-endian 128-bit integer; the entry
goes to the shard whose range holds it (ranges split evenly, as CreateStream does) and gets that shard's
id and a sequence number; * CloudWatch ``PutMetricData`` (JSON 1.0 or Smithy RPC v2 CBOR, whichever
botocore speaks) is answered with an empty success, so a producer that publishes metrics at close does
not retry against the sink.

Anything else is ``UnknownOperationException``.  It keeps counters only (requests, Kinesis records
and bytes per shard); it never decodes the data, so it does not know user records inside aggregates.

``--behaviour`` makes it answer in one of the ways a slow or careless server does (each one is a
suspect of the cross-check, ``python -m bench.crosscheck --suspects``): ``connection-close`` (close
after every response), ``http10`` (an HTTP/1.0 response without keep-alive), ``chunked``
(``Transfer-Encoding: chunked`` instead of ``Content-Length``), ``split-nagle`` (headers and body in
two writes with Nagle's algorithm on, the classic 40 ms delayed-ACK stall); ``--latency-ms`` delays
every Kinesis response.

Control: ``GET /_minisink/stats`` and ``POST /_minisink/reset``; ``READY <url>`` on stdout once it
listens.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import json
import resource
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

import cbor2

KINESIS_PREFIX = "Kinesis_20131202."
CLOUDWATCH_CBOR_PATH = "/service/GraniteServiceVersion20100801/operation/"
CLOUDWATCH_JSON_TARGET = "GraniteServiceVersion20100801.PutMetricData"
CBOR_CONTENT_TYPE = "application/x-amz-cbor-1.1"
HASH_SPACE = 1 << 128
BEHAVIOURS = ("keep-alive", "connection-close", "http10", "chunked", "split-nagle")
MAX_BODY = 16 * 1024 * 1024


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Stream:
    """Evenly split hash ranges; per shard a record count, a byte count and the next sequence number."""

    def __init__(self, name: str, shards: int) -> None:
        self.name = name
        self.arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"
        self.created = time.time()
        width = HASH_SPACE // shards
        self.starts = [i * width for i in range(shards)]
        self.ends = [*(start - 1 for start in self.starts[1:]), HASH_SPACE - 1]
        self.ids = [f"shardId-{i:012d}" for i in range(shards)]
        self.records = [0] * shards
        self.bytes = [0] * shards
        self.key_cache: dict[str, int] = {}

    def shard_of(self, partition_key: str, explicit_hash_key: str | None) -> int:
        if explicit_hash_key is not None:
            value = int(explicit_hash_key)
            if not 0 <= value < HASH_SPACE:
                raise ServiceError("InvalidArgumentException", f"ExplicitHashKey {explicit_hash_key} out of range")
            return bisect.bisect_right(self.starts, value) - 1
        shard = self.key_cache.get(partition_key)
        if shard is None:
            digest = hashlib.md5(partition_key.encode(), usedforsecurity=False).digest()
            shard = self.key_cache[partition_key] = bisect.bisect_right(self.starts, int.from_bytes(digest, "big")) - 1
        return shard

    def shard_json(self, index: int) -> dict[str, Any]:
        return {"ShardId": self.ids[index],
                "HashKeyRange": {"StartingHashKey": str(self.starts[index]), "EndingHashKey": str(self.ends[index])},
                "SequenceNumberRange": {"StartingSequenceNumber": self.sequence(index, 0)}}

    @staticmethod
    def sequence(index: int, number: int) -> str:
        return f"4959{index:06d}{number:046d}"


class Kinesis:
    def __init__(self, streams: dict[str, Stream], latency_s: float) -> None:
        self.streams = streams
        self.latency_s = latency_s
        self.requests: Counter[str] = Counter()

    def stream(self, body: dict[str, Any]) -> Stream:
        name = body.get("StreamName") or str(body.get("StreamARN", "")).rpartition("/")[2]
        if name not in self.streams:
            raise ServiceError("ResourceNotFoundException", f"Stream {name} under account 000000000000 not found.")
        return self.streams[name]

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "op_" + operation, None)
        if handler is None:
            raise ServiceError("UnknownOperationException", f"minisink does not serve {operation}")
        result: dict[str, Any] = handler(body)
        return result

    def op_PutRecords(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self.stream(body)
        entries = body.get("Records") or []
        if not 1 <= len(entries) <= 500:
            raise ServiceError("ValidationException", f"Records must hold 1 to 500 entries, got {len(entries)}")
        results = []
        shard_of, records, sizes, ids = stream.shard_of, stream.records, stream.bytes, stream.ids
        for entry in entries:
            key, data = entry.get("PartitionKey"), entry.get("Data")
            if not isinstance(key, str) or not 1 <= len(key) <= 256 or not isinstance(data, (str, bytes)):
                raise ServiceError("ValidationException", "each record needs Data and a 1-256 character PartitionKey")
            # Data is base64 text in JSON, raw bytes in CBOR.
            size = len(data) if isinstance(data, bytes) else len(data) * 3 // 4 - data.count("=", -2)
            size += len(key.encode())
            if size > 1024 * 1024:
                raise ServiceError("ValidationException", f"record of {size} bytes exceeds 1 MiB")
            shard = shard_of(key, entry.get("ExplicitHashKey"))
            number = records[shard]
            records[shard] = number + 1
            sizes[shard] += size
            results.append({"SequenceNumber": stream.sequence(shard, number), "ShardId": ids[shard]})
        return {"FailedRecordCount": 0, "Records": results, "EncryptionType": "NONE"}

    def op_ListShards(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("NextToken")
        if token:
            name, _, start_text = token.rpartition(":")
            stream, start = self.stream({"StreamName": name}), int(start_text)
        else:
            stream, start = self.stream(body), 0
        limit = int(body.get("MaxResults", 1000))
        stop = min(start + limit, len(stream.ids))
        result: dict[str, Any] = {"Shards": [stream.shard_json(i) for i in range(start, stop)]}
        if stop < len(stream.ids):
            result["NextToken"] = f"{stream.name}:{stop}"
        return result

    def _summary(self, stream: Stream) -> dict[str, Any]:
        return {"StreamName": stream.name, "StreamARN": stream.arn, "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": "PROVISIONED"}, "RetentionPeriodHours": 24,
                "StreamCreationTimestamp": stream.created, "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE"}

    def op_DescribeStreamSummary(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self.stream(body)
        return {"StreamDescriptionSummary": {**self._summary(stream), "OpenShardCount": len(stream.ids),
                                             "ConsumerCount": 0}}

    def op_DescribeStream(self, body: dict[str, Any]) -> dict[str, Any]:
        stream = self.stream(body)
        return {"StreamDescription": {**self._summary(stream), "HasMoreShards": False,
                                      "Shards": [stream.shard_json(i) for i in range(len(stream.ids))]}}


class Server:
    """HTTP/1.1 on asyncio streams: requests with Content-Length (or chunked) bodies, keep-alive."""

    def __init__(self, kinesis: Kinesis, behaviour: str) -> None:
        self.kinesis = kinesis
        self.behaviour = behaviour
        self.started = time.monotonic()
        self.request_ids = 0

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and self.behaviour == "split-nagle":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await self.read_body(reader, headers)
                status, response_headers, payload = await self.respond(method, path, headers, body)
                keep_alive = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                              and self.behaviour not in ("connection-close", "http10"))
                await self.send(writer, status, response_headers, payload, keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, ValueError) as error:
            print(f"minisink: connection dropped: {error!r}", file=sys.stderr)
        finally:
            writer.close()

    @staticmethod
    async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            raise ValueError(f"request body of {length} bytes")
        return await reader.readexactly(length) if length else b""

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes
                      ) -> tuple[int, list[tuple[str, str]], bytes]:
        if path.startswith("/_minisink/"):
            return self.control(method, path)
        if path.startswith(CLOUDWATCH_CBOR_PATH):
            self.kinesis.requests["cloudwatch." + path.rpartition("/")[2]] += 1
            return 200, [("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", "application/cbor")], b""
        target = headers.get("x-amz-target", "")
        if target == CLOUDWATCH_JSON_TARGET:
            self.kinesis.requests["cloudwatch.PutMetricData"] += 1
            return 200, [("Content-Type", "application/x-amz-json-1.0")], b"{}"
        operation = target[len(KINESIS_PREFIX):] if target.startswith(KINESIS_PREFIX) else target or path
        self.kinesis.requests[operation] += 1
        if self.kinesis.latency_s:
            await asyncio.sleep(self.kinesis.latency_s)
        self.request_ids += 1
        cbor = headers.get("content-type", "").startswith(CBOR_CONTENT_TYPE)
        encode = cbor2.dumps if cbor else (lambda value: json.dumps(value).encode())
        response_headers = [("Content-Type", CBOR_CONTENT_TYPE if cbor else "application/x-amz-json-1.1"),
                            ("x-amzn-RequestId", f"mini-{self.request_ids}")]
        try:
            if not target.startswith(KINESIS_PREFIX):
                raise ServiceError("UnknownOperationException", f"minisink does not serve {operation!r}")
            try:
                request = (cbor2.loads(body) if body else {}) if cbor else json.loads(body or b"{}")
            except (ValueError, cbor2.CBORDecodeError) as error:
                raise ServiceError("SerializationException", str(error)) from None
            return 200, response_headers, encode(self.kinesis.call(operation, request))
        except ServiceError as error:
            payload = encode({"__type": error.code, "message": error.message})
            return error.status, [*response_headers, ("x-amzn-ErrorType", error.code)], payload

    def control(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if (method, path) == ("POST", "/_minisink/reset"):
            self.kinesis.requests.clear()
            for stream in self.kinesis.streams.values():
                stream.records = [0] * len(stream.ids)
                stream.bytes = [0] * len(stream.ids)
            result: dict[str, Any] = {"reset": True}
        elif (method, path) == ("GET", "/_minisink/stats"):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            result = {"requests": dict(self.kinesis.requests), "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_mib": usage.ru_maxrss / 1024, "uptime_s": time.monotonic() - self.started,
                      "streams": {name: {"records": sum(s.records), "bytes": sum(s.bytes),
                                         "records_per_shard": s.records}
                                  for name, s in self.kinesis.streams.items()}}
        else:
            return 404, [("Content-Type", "application/json")], b'{"error": "no such control endpoint"}'
        return 200, [("Content-Type", "application/json")], json.dumps(result).encode()

    async def send(self, writer: asyncio.StreamWriter, status: int, headers: list[tuple[str, str]], payload: bytes,
                   keep_alive: bool) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        version = "HTTP/1.0" if self.behaviour == "http10" else "HTTP/1.1"
        lines = [f"{version} {status} {reason}", *(f"{name}: {value}" for name, value in headers)]
        if self.behaviour == "chunked":
            lines.append("Transfer-Encoding: chunked")
            payload = (f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n") if payload else b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(payload)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.behaviour == "split-nagle":
            writer.write(head)
            await writer.drain()
            writer.write(payload)
        else:
            writer.write(head + payload)
        await writer.drain()


async def serve(server: Server, port: int) -> None:
    listener = await asyncio.start_server(server.connection, "127.0.0.1", port, backlog=512, limit=1 << 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY http://127.0.0.1:{listener.sockets[0].getsockname()[1]}", flush=True)
    async with listener:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.minisink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stream", action="append", default=[], metavar="NAME:SHARDS",
                        help="a stream to serve (default bench:4)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every Kinesis response")
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="keep-alive", help="how responses are sent")
    args = parser.parse_args(argv)
    streams = {}
    for spec in args.stream or ["bench:4"]:
        name, _, shards = spec.partition(":")
        streams[name] = Stream(name, int(shards or 4))
    asyncio.run(serve(Server(Kinesis(streams, args.latency_ms / 1000), args.behaviour), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
