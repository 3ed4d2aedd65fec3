"""A sink as a process: started on a free port for a ``with`` block, its counters read and reset over HTTP.

:class:`SinkProcess` runs ``python -m tests.support.sink``; :class:`SinkBase` is what any sink module
run that way shares (the benchmarks' independent minisink is another).  Each sink module prints
``READY <url>`` once it listens.  Clients reach the sink through standard AWS configuration only
(:meth:`SinkBase.aws_env`), or through an explicit ``endpoint_url`` of ``url``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

if TYPE_CHECKING:
    from tests.support.sink.model import PrefillSpec

ROOT = Path(__file__).resolve().parents[3]


class SinkBase:
    """A sink module run as ``python -m <module> <args>`` on a free 127.0.0.1 port, for a ``with`` block.

    The module prints ``READY <url>`` once it listens; ``__enter__`` then polls ``stats_path`` until
    it answers.
    """

    module = ""
    stats_path = ""
    reset_path = ""
    #: what the table calls this sink (the cross-check names its columns by it)
    label = ""

    def __init__(self, args: Sequence[str], start_timeout: float = 60.0) -> None:
        self.args = list(args)
        self.start_timeout = start_timeout
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in stop())

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=ROOT, env=child_python_env(), stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )
        self.url = self._await_ready(self._process)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        self._stderr.close()

    def _await_ready(self, process: subprocess.Popen[str]) -> str:
        """The URL from the sink's ``READY`` line, read on a thread so a silent sink cannot hang us."""
        stdout = process.stdout
        assert stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        if not lines or not lines[0].startswith("READY "):
            self._fail(f"the sink did not start within {self.start_timeout:.0f}s")
        url = lines[0].split()[1]
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                _get_json(url + self.stats_path)
                return url
            except (urllib.error.URLError, ConnectionError) as error:
                if time.monotonic() > deadline:
                    self._fail(f"the sink at {url} does not answer: {error}")
                time.sleep(0.05)

    def _fail(self, message: str) -> NoReturn:
        self._stderr.seek(0)
        output = self._stderr.read()[-4000:]
        self.stop()
        raise RuntimeError(f"{message}\n--- sink stderr ---\n{output}")

    def stats(self) -> dict[str, Any]:
        return _get_json(self.url + self.stats_path)

    def reset(self) -> None:
        _post_json(self.url + self.reset_path, {})

    def delta(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """What the sink saw between two ``stats()`` (the keys :func:`_sink_summary` reads)."""
        raise NotImplementedError

    def aws_env(self) -> dict[str, str]:
        """Standard AWS configuration pointing every client at this sink, and nowhere else."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


class SinkProcess(SinkBase):
    """``python -m tests.support.sink``: the project's sink (Kinesis, Firehose, CloudWatch, verification, prefill)."""

    module = "tests.support.sink"
    stats_path = "/_sink/stats"
    reset_path = "/_sink/reset"
    label = "sink"

    def __init__(
        self,
        *,
        streams: Mapping[str, int] | None = None,
        delivery_streams: Sequence[str] = ("bench",),
        prefill: Sequence[str | PrefillSpec] = (),
        verify: str = "none",
        verify_inline: bool = False,
        fail_rate: float = 0.0,
        latency_ms: float = 0.0,
        retain: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        args = ["--port", "0", "--verify", verify, "--fail-rate", str(fail_rate), "--latency-ms", str(latency_ms)]
        for name, shards in (streams or {"bench": 4}).items():
            args += ["--stream", f"{name}:{shards}"]
        for name in delivery_streams:
            args += ["--delivery-stream", name]
        for spec in prefill:
            args += ["--prefill", spec if isinstance(spec, str) else spec.to_arg()]
        if retain:
            args.append("--retain")
        if verify_inline:
            args.append("--verify-inline")
        super().__init__(args, start_timeout)

    def configure(self, **settings: Any) -> dict[str, Any]:
        return _post_json(self.url + "/_sink/config", settings)

    def prefill(self, **spec: Any) -> dict[str, Any]:
        return _post_json(self.url + "/_sink/prefill", spec)

    def create_stream(self, name: str, shards: int) -> None:
        _post_json(self.url + "/_sink/streams", {"name": name, "shards": shards})

    def delta(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        return _sink_delta(before, after)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        result: dict[str, Any] = json.load(response)
        return result


def _post_json(url: str, body: Mapping[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            result: dict[str, Any] = json.load(response)
            return result
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"sink refused {url}: {error.read().decode(errors='replace')}") from None


def child_python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without its AWS settings, with the repository importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _sink_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    streams = after.get("streams", {})
    delivery = after.get("delivery_streams", {})
    return {
        "cpu_s": after["cpu_s"] - before["cpu_s"],
        "wall_s": after["uptime_s"] - before["uptime_s"],
        "requests": sum(after.get("requests", {}).values()),
        "records": sum(s["records"] for s in streams.values()),
        "failed": sum(s["failed"] for s in streams.values()),
        "user_records": sum(s["user_records"] for s in streams.values()),
        "misrouted_user_records": sum(s["misrouted_user_records"] for s in streams.values()),
        "invalid_aggregates": sum(s["invalid_aggregates"] for s in streams.values()),
        "served_user_records": sum(sh["served_user_records"] for s in streams.values() for sh in s["shards"]),
        "firehose_records": sum(d["records"] for d in delivery.values()),
        "verify": after.get("settings", {}).get("verify", "none"),
    }
