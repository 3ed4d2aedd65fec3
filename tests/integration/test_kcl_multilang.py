"""MultiLang mode against LocalStack, driven by a protocol client written from the protocol's description.

``kcl-worker --config app.properties`` where the file names ``executableName`` (a relative name, found
beside the file) and no processor: each leased shard gets a child process running
tests/integration/multilang_child.py, which logs what it sees and does (see its docstring).  The tests
assert from the outside: the child's events, the lease table, the worker's log and exit status, and
which processes are still alive.  amazon-kclpy's own sample is run in test_kcl_multilang_kclpy.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    REPO,
    WorkerProcess,
    kcl_worker_command,
    put_user_records,
    read_events,
    start_worker,
    watched,
    write_properties,
)
from tests.support.kinesis import list_shards, wait_for_active
from tests.support.waiting import wait_for

CHILD = Path(__file__).with_name("multilang_child.py")
SHARD0 = "shardId-000000000000"


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a parent that does not reap)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


@dataclass
class App:
    """One application (stream = application = lease table) run by MultiLang workers."""

    tmp: Path
    stream: str
    properties: Path
    out: Path
    kinesis: Any
    dynamodb: Any

    def start(self, worker_id: str, **env: str) -> WorkerProcess:
        log_path = self.tmp / f"{worker_id}.log"
        environment = {**os.environ, "MLC_OUT": str(self.out), **env}
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [*kcl_worker_command(), "--config", str(self.properties), "--worker-id", worker_id],
                cwd=REPO, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
        return WorkerProcess(worker_id, process, log_path)

    def events(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        found = read_events(self.out)
        return [e for e in found if (kind is None or e["e"] == kind)
                and all(e.get(key) == value for key, value in match.items())]

    def lease(self, shard: str = SHARD0) -> dict[str, Any]:
        item: dict[str, Any] = self.dynamodb.get_item(TableName=self.stream, Key={"leaseKey": {"S": shard}},
                                                      ConsistentRead=True).get("Item", {})
        return item

    def checkpoint(self, shard: str = SHARD0) -> tuple[str, int] | None:
        item = self.lease(shard)
        if "checkpoint" not in item:
            return None
        return item["checkpoint"]["S"], int(item.get("checkpointSubSequenceNumber", {"N": "0"})["N"])

    def put(self, payloads: list[str], key: str = "k") -> None:
        put_user_records(self.kinesis, self.stream, [(key, p.encode()) for p in payloads], aggregate=False)


@pytest.fixture
def make_app(tmp_path: Path, make_stream: Callable[..., str], aws_clients: Callable[[str], Any]) -> Iterator[
        Callable[..., App]]:
    apps: list[App] = []
    workers: list[WorkerProcess] = []

    def make(shards: int = 1, **settings: object) -> App:
        stream = make_stream(shards, "ml")
        directory = tmp_path / stream
        directory.mkdir()
        (directory / "consumer.py").symlink_to(CHILD)  # executableName is a name beside the properties file
        properties = write_properties(
            directory / "app.properties", executableName="consumer.py", streamName=stream, applicationName=stream,
            initialPositionInStream="TRIM_HORIZON", metricsLevel="NONE", processingLanguage="python/3.11",
            AwsCredentialsProvider="DefaultCredentialsProvider", **{**FAST_TIMINGS, **settings})
        out = directory / "events"
        out.mkdir()
        app = App(directory, stream, properties, out, aws_clients("kinesis"), aws_clients("dynamodb"))
        original = app.start

        def start(worker_id: str, **env: str) -> WorkerProcess:
            worker = original(worker_id, **env)
            workers.append(worker)
            return worker

        app.start = start  # type: ignore[method-assign]
        apps.append(app)
        return app

    yield make
    for worker in workers:
        if worker.alive:
            worker.kill()
    for app in apps:
        for event in app.events("init"):
            if alive(event["pid"]):
                os.kill(event["pid"], signal.SIGKILL)
        with contextlib.suppress(Exception):
            app.dynamodb.delete_table(TableName=app.stream)


def waiting(app: App, condition: Callable[[], Any], *workers: WorkerProcess, timeout: float = 60,
            message: str = "condition") -> Any:
    return wait_for(watched(condition, *workers), timeout, interval=0.1, message=message)


def log_events(worker: WorkerProcess) -> list[dict[str, Any]]:
    events = []
    for line in worker.log_text().splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def test_checkpoints_at_a_sequence_and_sub_sequence_number_resume_inside_the_aggregate(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    put_user_records(app.kinesis, app.stream, [("k", f"a{n}".encode()) for n in range(5)], aggregate=True)
    first = app.start("A", MLC_CHECKPOINT="none", MLC_CHECKPOINT_AT_SUB="2", MLC_ON_SHUTDOWN="nothing")
    done = waiting(app, lambda: app.events("ckpt", error=None), first, message="the child's checkpoint")
    records = app.events("rec")
    assert [(r["d"], r["u"], r["k"]) for r in records] == [(f"a{n}", n, "k") for n in range(5)]
    assert len({r["q"] for r in records}) == 1  # one aggregate: one sequence number, sub-records 0..4
    assert all(isinstance(r["t"], int) and abs(r["t"] / 1000 - time.time()) < 600 for r in records)
    assert all(isinstance(r["behind"], int) for r in records)
    assert (done[0]["q"], done[0]["u"]) == (records[0]["q"], 2)
    assert app.checkpoint() == (records[0]["q"], 2)
    assert first.terminate(timeout=60) == 0, first.log_text()[-3000:]

    logged = log_events(first)
    assert {"event": "child stderr", "shard": SHARD0, "line": f"child for {SHARD0} started"}.items() <= \
        next(e for e in logged if e["event"] == "child stderr").items()
    assert any(e["event"] == "skipping a line of the child's stdout that is not a protocol message"
               and e["line"] == "a stray line on stdout, not a protocol message" and e["shard"] == SHARD0
               for e in logged)
    assert {e["key"] for e in logged if e["event"] == "properties key has no meaning for this worker and is ignored"} \
        == {"processingLanguage", "AwsCredentialsProvider"}

    second = app.start("B", MLC_CHECKPOINT="none")
    inits = waiting(app, lambda: len(app.events("init")) >= 2 and app.events("init"), second,
                    message="a second child")
    restarted = inits[-1]
    assert (restarted["q"], restarted["u"]) == (records[0]["q"], 2)
    waiting(app, lambda: len(app.events("rec", pid=restarted["pid"])) >= 2, second, message="the rest redelivered")
    assert [r["d"] for r in app.events("rec", pid=restarted["pid"])] == ["a3", "a4"]
    assert second.terminate(timeout=60) == 0


def test_a_checkpoint_after_the_lease_was_taken_is_refused(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.put(["wait"])
    worker = app.start("A", MLC_CHECKPOINT="none")
    waiting(app, lambda: app.events("waiting"), worker, message="the child inside processRecords")
    lease = app.lease()
    app.dynamodb.update_item(
        TableName=app.stream, Key={"leaseKey": {"S": SHARD0}},
        UpdateExpression="SET leaseOwner = :thief, leaseCounter = :next",
        ExpressionAttributeValues={":thief": {"S": "thief"},
                                   ":next": {"N": str(int(lease["leaseCounter"]["N"]) + 1)}})
    (app.out / "gate").touch()
    outcomes = waiting(app, lambda: len(app.events("ckpt")) >= 2 and app.events("ckpt"), worker,
                       message="the checkpoint in processRecords and the one in leaseLost")
    assert outcomes[0]["error"] == "ShutdownException"  # in processRecords: the lease is another worker's
    assert app.events("lost")  # then leaseLost, where no checkpoint is possible
    assert outcomes[1]["error"] == "InvalidStateException"
    assert app.checkpoint() == ("TRIM_HORIZON", 0)
    assert worker.terminate(timeout=60) == 0


FAILURES = {
    "die": ({}, "processRecords: the child process exited with status 3"),
    "wrong-status": ({}, "processRecords: the child process answered status for 'initialize' while "
                         "'processRecords' was outstanding"),
    "hang": ({"timeoutInSeconds": 2}, "processRecords: no message from the child process within 2 s "
                                      "(timeoutInSeconds)"),
}


@pytest.mark.parametrize("trigger", list(FAILURES))
def test_a_failing_child_gives_the_shard_up_and_its_records_are_delivered_again(
    make_app: Callable[..., App], trigger: str,
) -> None:
    settings, reason = FAILURES[trigger]
    app = make_app(**settings)
    app.put(["r0", "r1", "r2"])
    worker = app.start("A")
    waiting(app, lambda: app.events("ckpt", error=None), worker, message="the first batch checkpointed")
    confirmed = app.checkpoint()
    assert confirmed is not None and confirmed[0].isdigit()
    app.put(["x0", trigger, "x2"])
    marker = {"die": "dying", "hang": "hanging"}.get(trigger, trigger)
    failed_pid = waiting(app, lambda: app.events(marker), worker,
                         message=f"the child's {trigger}")[0]["pid"]
    inits = waiting(app, lambda: len(app.events("init")) >= 2 and app.events("init"), worker,
                    message="a new child for the shard")
    restarted = inits[-1]
    # Nothing was checkpointed past what the failed child confirmed: the new child starts there.
    assert (restarted["q"], restarted["u"]) == confirmed
    waiting(app, lambda: app.events("ckpt", pid=restarted["pid"], error=None), worker,
            message="the new child checkpointed")
    assert [r["d"] for r in app.events("rec", pid=restarted["pid"])] == ["x0", trigger, "x2"]
    last = app.events("rec", pid=restarted["pid"])[-1]
    assert app.checkpoint() == (last["q"], 0)
    assert not alive(failed_pid)
    logged = log_events(worker)
    gave_up = [e for e in logged if e["event"] == "record processor gave up the shard; releasing the lease"]
    assert [e["reason"] for e in gave_up] == [reason] and gave_up[0]["checkpoint"] == confirmed[0]
    assert any(e["event"] == "released lease" and e["shard"] == SHARD0 for e in logged)
    assert sum(1 for e in logged if e["event"] == "took lease") == 2
    if trigger == "hang":
        hung = app.events(marker)[0]["m"]
        assert restarted["m"] - hung >= 2.0
    assert worker.terminate(timeout=60) == 0


def test_shard_end_is_checkpointed_by_the_child_and_the_children_shards_follow(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.put(["before-0", "before-1"])
    worker = app.start("A")
    waiting(app, lambda: app.events("ckpt", error=None), worker, message="the parent's records checkpointed")
    shard = list_shards(app.kinesis, app.stream)[0]
    low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    app.kinesis.split_shard(StreamName=app.stream, ShardToSplit=SHARD0, NewStartingHashKey=str((low + high) // 2))
    wait_for_active(app.kinesis, app.stream)
    app.put([f"after-{n}" for n in range(6)], key="k")
    app.put([f"other-{n}" for n in range(6)], key="another key")
    waiting(app, lambda: app.checkpoint() == ("SHARD_END", 0), worker, message="SHARD_END on the parent")
    ended = app.events("end", s=SHARD0)
    assert len(ended) == 1
    ended_pid = ended[0]["pid"]
    assert app.events("ckpt", pid=ended_pid)[-1]["error"] is None  # checkpoint() in shardEnded
    waiting(app, lambda: app.events("eof", pid=ended_pid), worker, message="the parent's child ended at EOF")
    after = waiting(app, lambda: (d := {r["d"] for r in app.events("rec") if r["s"] != SHARD0}) >= {
        *(f"after-{n}" for n in range(6)), *(f"other-{n}" for n in range(6))} and d, worker,
        message="the children shards' records")
    assert after
    assert worker.terminate(timeout=60) == 0


def test_sigterm_asks_every_child_to_checkpoint_and_kill_9_leaves_them_eof(make_app: Callable[..., App]) -> None:
    app = make_app(shards=2)
    keys = {s["ShardId"]: s["HashKeyRange"]["StartingHashKey"] for s in list_shards(app.kinesis, app.stream)}
    for shard, low in keys.items():
        app.kinesis.put_records(StreamName=app.stream, Records=[
            {"Data": f"{shard}-{n}".encode(), "PartitionKey": "p", "ExplicitHashKey": low} for n in range(3)])
    worker = app.start("A", MLC_CHECKPOINT="none")
    waiting(app, lambda: {e["s"] for e in app.events("rec")} == set(keys), worker, message="both shards delivered")
    pids = {e["pid"] for e in app.events("init")}
    assert len(pids) == 2
    assert worker.terminate(timeout=60) == 0
    for pid in pids:
        kinds = [e["e"] for e in app.events(pid=pid) if e["e"] != "rec"]
        assert kinds == ["init", "shutdown", "ckpt", "lost", "ckpt", "eof"], kinds
        outcomes = [e["error"] for e in app.events("ckpt", pid=pid)]
        assert outcomes == [None, "InvalidStateException"]
        assert not alive(pid)
    for shard in keys:
        item = app.lease(shard)
        assert "leaseOwner" not in item and item["checkpoint"]["S"].isdigit()  # checkpointed, then released

    second = app.start("B")
    waiting(app, lambda: len({e["pid"] for e in app.events("init")} - pids) == 2, second, message="two new children")
    new = {e["pid"] for e in app.events("init")} - pids
    second.kill()
    wait_for(lambda: not any(alive(pid) for pid in new), 10, interval=0.1,
             message="the children of a worker killed with SIGKILL ended")
    assert all(app.events("eof", pid=pid) for pid in new)  # they saw EOF on stdin and ended by themselves


def test_multilang_and_native_workers_share_one_lease_table(make_app: Callable[..., App], tmp_path: Path) -> None:
    app = make_app(shards=4)
    payloads = [f"m-{n}" for n in range(40)]
    put_user_records(app.kinesis, app.stream, [(f"key-{n}", p.encode()) for n, p in enumerate(payloads)],
                     aggregate=False)
    native_out = tmp_path / "native-events"
    native = start_worker(native_out, "N", "--config", str(app.properties))  # names a processor: native mode
    multilang = app.start("M")

    def owners() -> Counter[str]:
        try:
            items = app.dynamodb.scan(TableName=app.stream, ConsistentRead=True)["Items"]
        except app.dynamodb.exceptions.ResourceNotFoundException:
            return Counter()  # the workers have not created the lease table yet
        return Counter(item.get("leaseOwner", {}).get("S") for item in items)

    waiting(app, lambda: owners() == Counter({"N": 2, "M": 2}), native, multilang, timeout=90,
            message="two leases each")

    def delivered() -> set[str]:
        natively = {e["d"] for e in read_events(native_out) if e["e"] == "rec"}
        return natively | {e["d"] for e in app.events("rec")}

    waiting(app, lambda: delivered() >= set(payloads), native, multilang, timeout=90, message="every record")
    assert {e["s"] for e in app.events("init")} & {e["s"] for e in read_events(native_out) if e["e"] == "init"} \
        <= {e["s"] for e in app.events("lost")}  # a shard moved between the two only through a clean handoff
    assert native.terminate(timeout=60) == 0
    assert multilang.terminate(timeout=60) == 0
    logged = log_events(native)
    assert any(e["event"] == "properties key has no meaning for this worker and is ignored"
               and e["key"] == "executableName" for e in logged)  # the processor wins over executableName


def test_an_executable_that_cannot_run_stops_kcl_worker_at_start(tmp_path: Path) -> None:
    properties = write_properties(tmp_path / "app.properties", executableName="missing_app.py --flag",
                                  streamName="s", applicationName="a")
    result = subprocess.run([*kcl_worker_command(), "--config", str(properties)], capture_output=True, text=True,
                            timeout=60, cwd=REPO, check=False)
    assert result.returncode == 78
    assert f"executableName 'missing_app.py' not found (looked for {tmp_path.resolve()}/missing_app.py and PATH)" \
        in result.stderr
    (tmp_path / "plain.py").write_text("print('not executable')\n")
    properties.write_text(properties.read_text().replace("missing_app.py", "plain.py"))
    result = subprocess.run([*kcl_worker_command(), "--config", str(properties)], capture_output=True, text=True,
                            timeout=60, cwd=REPO, check=False)
    assert result.returncode == 78
    assert "which is not an executable file" in result.stderr and "Traceback" not in result.stderr
