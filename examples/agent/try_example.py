"""Run ``agent.json`` (this directory's example) for real against LocalStack, as its systemd unit would.

    examples/with-localstack python -m examples.agent.try_example

The example's paths are system paths (/var/log/httpd, /var/lib/aws-kinesis-agent), so this copies it
into a temporary directory with only those paths rewritten — comments and every setting stay as they
are — creates the ``apache-access-log`` stream when it is missing, starts ``kinesis-agent`` with the
unit's command line, appends a few access-log lines the way a web server would, waits until they are in
the stream, prints what arrived, and stops the agent with the unit's KillSignal (SIGTERM).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kpl.aggregation import decode, is_aggregated
from kpl.aws import list_shards_blocking, sync_client

HERE = Path(__file__).resolve().parent
AGENT = str(Path(sys.executable).parent / "kinesis-agent")
LINES = [
    '192.0.2.10 - - [21/Nov/2026:10:00:00 +0000] "GET /index.html HTTP/1.1" 200 5120 "-" "curl/8.5.0"',
    '198.51.100.7 - alice [21/Nov/2026:10:00:01 +0000] "POST /login HTTP/1.1" 302 - "https://example.com/" '
    '"Mozilla/5.0"',
    "this line is not an access log entry: LOGTOJSON drops it and counts it",
    '203.0.113.5 - - [21/Nov/2026:10:00:02 +0000] "GET /missing HTTP/1.1" 404 153 "-" "Mozilla/5.0"',
]


def rewritten_config(workdir: Path, stream: str) -> Path:
    text = (HERE / "agent.json").read_text()
    text = text.replace("/var/log/httpd/access_log*", str(workdir / "httpd" / "access_log*"))
    text = text.replace("/var/lib/aws-kinesis-agent/checkpoints", str(workdir / "state" / "checkpoints"))
    text = text.replace('"apache-access-log"', json.dumps(stream))
    path = workdir / "agent.json"
    path.write_text(text)
    return path


def read_stream(kinesis: object, stream: str) -> list[bytes]:
    """Every user record in the stream (aggregates split)."""
    out: list[bytes] = []
    for shard in list_shards_blocking(kinesis, stream):
        iterator = kinesis.get_shard_iterator(  # type: ignore[attr-defined]
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)  # type: ignore[attr-defined]
            for record in page["Records"]:
                data = record["Data"]
                out.extend(sub.data for sub in decode(data)) if is_aggregated(data) else out.append(data)
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return out


def wait_for_log(path: Path, event: str, agent: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"kinesis-agent exited with status {agent.returncode}; see {path}")
        if path.exists() and event in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"kinesis-agent did not log {event!r} within {timeout:.0f}s; see {path}")


def main(stream: str = "apache-access-log") -> int:
    kinesis = sync_client("kinesis")
    if stream not in kinesis.list_streams()["StreamNames"]:
        kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    before = len(read_stream(kinesis, stream))
    with tempfile.TemporaryDirectory(prefix="agent-example-") as tmp:
        workdir = Path(tmp)
        (workdir / "httpd").mkdir()
        log = workdir / "httpd" / "access_log"
        log.write_text("")
        config = rewritten_config(workdir, stream)
        subprocess.run([AGENT, "--check-config", "-c", str(config)], check=True, stdout=subprocess.DEVNULL)
        agent_log = workdir / "agent.log"
        agent = subprocess.Popen([AGENT, "-c", str(config), "-L", "info", "-l", str(agent_log)])
        try:
            # initialPosition END_OF_FILE: lines count from the moment the agent tracks the file.
            wait_for_log(agent_log, "tracking file from its end", agent)
            with log.open("a") as out:
                out.write("".join(line + "\n" for line in LINES))
            deadline = time.monotonic() + 60
            arrived: list[bytes] = []
            while time.monotonic() < deadline and len(arrived) < 3:
                time.sleep(1)
                arrived = read_stream(kinesis, stream)[before:]
        finally:
            agent.send_signal(signal.SIGTERM)
            status = agent.wait(30)
    for data in arrived:
        print(data.decode().rstrip())
    print(f"{len(arrived)} of {len(LINES)} lines arrived as JSON (the non-access-log line is dropped); "
          f"kinesis-agent stopped with exit status {status}")
    return 0 if len(arrived) == 3 and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
