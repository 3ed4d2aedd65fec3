"""The sink behind HTTP: AWS requests to :mod:`.kinesis` and :mod:`.firehose`, and a control API.

Besides the AWS operations it serves a small control API for the tests and the benchmark harness:

* ``GET /_sink/stats`` — counters per operation, stream, shard and delivery stream, and the sink's own
CPU time (so a benchmark can show the sink was not the bottleneck); * ``POST /_sink/reset`` — zero the
counters; * ``POST /_sink/config`` — change :class:`tests.support.sink.model.SinkSettings` (failure rate,
latency, ...); * ``POST /_sink/prefill`` — create a pre-filled stream (a
:class:`tests.support.sink.model.PrefillSpec` as JSON); * ``POST /_sink/streams`` — create a stream:
``{"name": ..., "shards": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import signal
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
from aiohttp import web

from tests.support.sink.firehose import FirehoseService
from tests.support.sink.kinesis import KinesisService
from tests.support.sink.model import PrefillSpec, SinkError, SinkSettings

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
#: Kinesis' JSON 1.1 protocol with CBOR bodies (blobs as raw bytes, not base64), as the AWS SDK for Java sends it.
CBOR_CONTENT_TYPE = "application/x-amz-cbor-1.1"
KINESIS_TARGET_PREFIX = "Kinesis_20131202."
FIREHOSE_TARGET_PREFIX = "Firehose_20150804."
#: botocore speaks CloudWatch over Smithy RPC v2 CBOR; the only call our code makes is PutMetricData.
CLOUDWATCH_CBOR_PATH = "/service/GraniteServiceVersion20100801/operation/"
CLOUDWATCH_JSON_TARGET_PREFIX = "GraniteServiceVersion20100801."
#: PutRecords of 500 x 1 MiB records, base64-encoded, with room for JSON framing.
MAX_REQUEST_BODY = 16 * 1024 * 1024

Operation = Callable[[dict[str, Any]], "dict[str, Any] | str"]


def process_usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


class Sink:
    """One sink: the settings its services share, the services, and how many requests each operation got."""

    def __init__(self, settings: SinkSettings | None = None, region: str = "us-east-1") -> None:
        self.settings = settings or SinkSettings()
        self.kinesis = KinesisService(self.settings, region)
        self.firehose = FirehoseService(self.settings, region)
        self.requests: Counter[str] = Counter()

    def reset_counters(self) -> None:
        self.requests.clear()
        self.kinesis.reset_counters()
        self.firehose.reset_counters()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "streams": self.kinesis.stats(),
            "delivery_streams": self.firehose.stats(),
            "settings": self.settings.as_dict(),
        }


class SinkServer:
    """Turns HTTP requests into :class:`Sink` operations and their results back into responses."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.started = time.monotonic()
        self._request_ids = 0
        kinesis, firehose = sink.kinesis, sink.firehose
        self._kinesis: dict[str, Operation] = {
            "CreateStream": kinesis.create_stream_operation,
            "DeleteStream": kinesis.delete_stream,
            "DescribeStream": kinesis.describe_stream,
            "DescribeStreamSummary": kinesis.describe_stream_summary,
            "ListShards": kinesis.list_shards,
            "ListStreams": kinesis.list_streams,
            "PutRecords": kinesis.put_records,
            "PutRecord": kinesis.put_record,
            "GetShardIterator": kinesis.get_shard_iterator,
            "GetRecords": kinesis.get_records,
        }
        self._firehose: dict[str, Operation] = {
            "CreateDeliveryStream": firehose.create_delivery_stream,
            "DeleteDeliveryStream": firehose.delete_delivery_stream,
            "DescribeDeliveryStream": firehose.describe_delivery_stream,
            "ListDeliveryStreams": firehose.list_delivery_streams,
            "PutRecordBatch": firehose.put_record_batch,
            "PutRecord": firehose.put_record,
        }
        self._control: dict[tuple[str, str], Callable[[web.Request], Awaitable[Any]]] = {
            ("GET", "/_sink/stats"): self._stats,
            ("POST", "/_sink/reset"): self._reset,
            ("POST", "/_sink/config"): self._config,
            ("POST", "/_sink/prefill"): self._prefill,
            ("POST", "/_sink/streams"): self._create_stream,
        }

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_sink/"):
            return await self._handle_control(request)
        latency = self.sink.settings.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        if request.path.startswith(CLOUDWATCH_CBOR_PATH):
            self.sink.requests["cloudwatch." + request.path.rpartition("/")[2]] += 1
            return web.Response(status=200, headers={"smithy-protocol": "rpc-v2-cbor",
                                                     "Content-Type": "application/cbor"})
        target = request.headers.get("X-Amz-Target", "")
        if target.startswith(CLOUDWATCH_JSON_TARGET_PREFIX):
            self.sink.requests["cloudwatch." + target.partition(".")[2]] += 1
            return self._json_response("{}")
        if target.startswith(KINESIS_TARGET_PREFIX):
            operations, service = self._kinesis, "kinesis"
        elif target.startswith(FIREHOSE_TARGET_PREFIX):
            operations, service = self._firehose, "firehose"
        else:
            unknown = target or request.path
            return self._error(SinkError("UnknownOperationException", f"the sink does not serve {unknown!r}"))
        name = target.partition(".")[2]
        self.sink.requests[f"{service}.{name}"] += 1
        operation = operations.get(name)
        if operation is None:
            return self._error(SinkError("UnknownOperationException", f"the sink does not implement {service} {name}"))
        cbor = request.content_type == CBOR_CONTENT_TYPE
        raw = await request.read()
        try:
            body = (cbor2.loads(raw) if raw else {}) if cbor else json.loads(raw or b"{}")
        except (ValueError, cbor2.CBORDecodeError) as error:
            return self._error(SinkError("SerializationException", f"request body is not "
                                                                    f"{'CBOR' if cbor else 'JSON'}: {error}"), cbor)
        if not isinstance(body, dict):
            return self._error(SinkError("SerializationException", "request body is not an object"), cbor)
        try:
            result = operation(body)
        except SinkError as error:
            return self._error(error, cbor)
        except Exception as error:  # a request the sink did not foresee, or a sink bug: say so loudly
            traceback.print_exc(file=sys.stderr)
            return self._error(SinkError("InternalFailure", f"sink error: {error!r}", status=500), cbor)
        if cbor:
            return self._cbor_response(cbor_result(json.loads(result) if isinstance(result, str) else result))
        return self._json_response(result if isinstance(result, str) else json.dumps(result))

    def _json_response(self, text: str) -> web.Response:
        self._request_ids += 1
        return web.Response(body=text.encode(), content_type=JSON_CONTENT_TYPE,
                            headers={"x-amzn-RequestId": f"sink-{self._request_ids}"})

    def _cbor_response(self, result: dict[str, Any]) -> web.Response:
        self._request_ids += 1
        return web.Response(body=cbor2.dumps(result), content_type=CBOR_CONTENT_TYPE,
                            headers={"x-amzn-RequestId": f"sink-{self._request_ids}"})

    def _error(self, error: SinkError, cbor: bool = False) -> web.Response:
        fields = {"__type": error.code, "message": error.message}
        body = cbor2.dumps(fields) if cbor else json.dumps(fields).encode()
        return web.Response(status=error.status, body=body,
                            content_type=CBOR_CONTENT_TYPE if cbor else JSON_CONTENT_TYPE,
                            headers={"x-amzn-ErrorType": error.code})

    # --- control API --------------------------------------------------------------------------------

    async def _handle_control(self, request: web.Request) -> web.StreamResponse:
        handler = self._control.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": f"no control endpoint {request.method} {request.path}"}, status=404)
        try:
            return web.json_response(await handler(request))
        except (SinkError, ValueError, TypeError, KeyError) as error:
            return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=400)

    async def _stats(self, request: web.Request) -> dict[str, Any]:
        # The sink's own usage is read before the deferred verification runs (in sink.stats()), so
        # that cpu_s is what the sink spent serving; verify_cpu_s is what checking the aggregates cost.
        usage = process_usage()
        uptime = time.monotonic() - self.started
        stats = self.sink.stats()
        return {**stats, **usage, "uptime_s": uptime, "verify_cpu_s": process_usage()["cpu_s"] - usage["cpu_s"]}

    async def _reset(self, request: web.Request) -> dict[str, Any]:
        self.sink.reset_counters()
        return {"reset": True}

    async def _config(self, request: web.Request) -> dict[str, Any]:
        self.sink.settings.update(await request.json())
        return self.sink.settings.as_dict()

    async def _prefill(self, request: web.Request) -> dict[str, Any]:
        return self.sink.kinesis.prefill(PrefillSpec(**await request.json())).stats()

    async def _create_stream(self, request: web.Request) -> dict[str, Any]:
        body = await request.json()
        shards = int(body.get("shards", self.sink.settings.default_shards))
        stream = self.sink.kinesis.create_stream(body["name"], shards)
        return {"name": stream.name, "shards": len(stream.shards)}


def cbor_result(result: dict[str, Any]) -> dict[str, Any]:
    """A result rendered for JSON, as CBOR carries it: GetRecords' ``Data`` as raw bytes, not base64."""
    records = result.get("Records")
    if isinstance(records, list):
        for record in records:
            if isinstance(record, dict) and isinstance(record.get("Data"), str):
                record["Data"] = base64.b64decode(record["Data"])
    return result


async def serve(sink: Sink, port: int) -> None:
    server = SinkServer(sink)
    runner = web.AppRunner(server.application(), access_log=None, handle_signals=False)
    await runner.setup()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    site = web.SockSite(runner, listener, backlog=512)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
