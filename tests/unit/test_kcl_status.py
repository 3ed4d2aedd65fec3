"""``kcl-worker status`` rows and the lease items' extra attributes (no I/O: items are parsed, not read)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from kcl.cli import watch_status
from kcl.leases import EXTRA_ATTRIBUTES, Lease, LeaseTable, TableSettings, lease_from_item
from kcl.sequence import ExtendedSequenceNumber
from kcl.status import CounterWatch, RenewalAge, StatusReader, format_seconds

NOW = 1_800_000_000.0  # wall clock of the host running status (epoch seconds)


def java_item(key: str, counter: int, owner: str | None = "java-worker-1", **extra: Any) -> dict[str, Any]:
    """A lease item exactly as the Java KCL writes it, plus ``extra`` attributes."""
    item: dict[str, Any] = {"leaseKey": {"S": key}, "leaseCounter": {"N": str(counter)},
                            "checkpoint": {"S": "49590338271490256608559692538361571095921575989136588898"},
                            "checkpointSubSequenceNumber": {"N": "0"}, "ownerSwitchesSinceCheckpoint": {"N": "0"}}
    if owner is not None:
        item["leaseOwner"] = {"S": owner}
    item.update(extra)
    return item


def ours(counter: int, *, changed_to: int | None = None, lag: int = 1500, processed: float = NOW - 2,
         changed: float = NOW - 0.5) -> dict[str, Any]:
    """The attributes our renewal adds (times in epoch milliseconds)."""
    return {"renewalCounter": {"N": "9"}, "pyMillisBehindLatest": {"N": str(lag)},
            "pyProcessedAt": {"N": str(int(processed * 1000))},
            "pyCounterChangedAt": {"N": str(int(changed * 1000))},
            "pyCounterChangedTo": {"N": str(counter if changed_to is None else changed_to)}}


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> StatusReader:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clock = iter(float(n) for n in range(100, 10_000, 5))
    return StatusReader("unit-status", "unit-status", clock=lambda: next(clock), wall_clock=lambda: NOW)


def parse(reader: StatusReader, *items: dict[str, Any]) -> list[Lease]:
    leases = [lease_from_item(reader.table.model.from_raw_data(item)) for item in items]
    assert all(lease is not None for lease in leases)
    return [lease for lease in leases if lease is not None]


def test_our_attributes_give_lag_processing_and_an_exact_renewal_age(reader: StatusReader) -> None:
    leases = parse(reader, java_item("shardId-000000000000", 12, "py-1", **ours(12)))
    row = reader.rows(leases)[0]
    assert (row["lag_millis"], row["processed_age_seconds"], row["renewal_age_seconds"], row["renewal_age_is"]) == \
        (1500, 2.0, 0.5, "exact")
    assert row["processed_at"] == "2027-01-15T07:59:58.000Z"  # ISO 8601, UTC
    assert row["renewed_at"] == "2027-01-15T07:59:59.500Z" and row["read_at"] == "2027-01-15T08:00:00.000Z"
    text = reader.render(leases)
    assert "1.5s" in text and "2.0s ago" in text and "0.5s ago" in text
    assert text.splitlines()[-1].endswith("largest lag 1.5s (shardId-000000000000)")


def test_a_java_written_item_reads_with_every_figure_unknown(reader: StatusReader) -> None:
    leases = parse(reader, java_item("shardId-000000000000", 41), java_item("shardId-000000000001", 3, owner=None))
    rows = reader.rows(leases)
    assert [(r["owner"], r["lease_counter"], r["state"]) for r in rows] == [
        ("java-worker-1", 41, "processing"), (None, 3, "unowned")]
    for row in rows:
        assert (row["lag_millis"], row["processed_at"], row["renewed_at"], row["renewal_age_seconds"]) == (None,) * 4
    lines = reader.render(leases).splitlines()
    assert lines[2].split()[3:6] == ["unknown", "unknown", "unknown"], lines[2]
    assert "largest lag" not in lines[-1]
    json.dumps(rows)  # JSON-ready


def test_once_a_java_worker_moves_the_counter_our_figures_are_unknown_not_stale(reader: StatusReader) -> None:
    # Our worker wrote counter 12; a Java worker renewed (13) and kept our attributes untouched.
    leases = parse(reader, java_item("shardId-000000000000", 13, **ours(13, changed_to=12)))
    lease = leases[0]
    assert (lease.millis_behind_latest, lease.processed_at, lease.counter_changed_at) == (None, None, None)
    assert lease.renewal_counter == 9  # ours, still read (kcl.expiry)


def test_a_shard_end_lease_shows_no_lag(reader: StatusReader) -> None:
    item = java_item("shardId-000000000000", 5, owner=None, **ours(5))
    item["checkpoint"] = {"S": "SHARD_END"}
    line = reader.render(parse(reader, item)).splitlines()[2]
    assert line.split()[3:5] == ["-", "-"] and "finished (SHARD_END)" in line


def test_extra_attributes_are_numbers_the_java_kcl_does_not_name() -> None:
    java_names = {"leaseKey", "leaseOwner", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
                  "pendingCheckpoint", "pendingCheckpointSubSequenceNumber", "pendingCheckpointState",
                  "ownerSwitchesSinceCheckpoint", "parentShardId", "childShardIds", "startingHashKey",
                  "endingHashKey", "throughputKBps", "checkpointOwner", "entityType", "streamName", "shardId"}
    assert not set(EXTRA_ATTRIBUTES) & java_names
    assert len(EXTRA_ATTRIBUTES) == 5


def test_renew_writes_progress_in_the_same_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    table = LeaseTable(TableSettings(table_name="unit-status"))
    sent: list[tuple[str, list[Any], Any]] = []

    def update(operation: str, item: Any, actions: list[Any], condition: Any) -> Lease:
        sent.append((operation, actions, condition))
        return Lease("s")

    monkeypatch.setattr(table, "_update", update)
    lease = Lease("s", lease_owner="me", lease_counter=7, checkpoint=ExtendedSequenceNumber("1"))
    table.renew(lease, "me", progress=(2500, NOW))
    table.renew(lease, "me")
    table.close()
    (op, with_progress, condition), (_, without, _) = sent
    assert op == "UpdateItem:renew"
    def written(actions: list[Any]) -> set[str]:
        return {str(action.values[0]) for action in actions}  # the attribute each action sets

    assert {"leaseCounter", "pyMillisBehindLatest", "pyProcessedAt", "pyCounterChangedAt", "pyCounterChangedTo",
            "renewalCounter"} == written(with_progress)
    assert written(without) == {"leaseCounter", "pyCounterChangedAt", "pyCounterChangedTo", "renewalCounter"}
    # The condition is the Java KCL's: the counter, the owner, no handoff; none of our attributes.
    expression = str(condition)
    assert "leaseCounter" in expression and "leaseOwner" in expression
    assert not any(name in expression for name in EXTRA_ATTRIBUTES)


def test_counter_watch_bounds_ages_without_timestamps() -> None:
    watch_ = CounterWatch()
    lease = Lease("s", lease_counter=1)
    watch_.observe([lease], 10.0)
    assert watch_.age("s", 10.0) is None  # one read says nothing
    watch_.observe([lease.with_(lease_counter=2)], 13.0)
    assert watch_.age("s", 13.0) == RenewalAge(3.0, "at most")
    watch_.observe([lease.with_(lease_counter=2)], 16.0)
    assert watch_.age("s", 16.0) == RenewalAge(6.0, "at most")
    unchanged = CounterWatch()
    unchanged.observe([lease], 10.0)
    unchanged.observe([lease], 40.0)
    assert str(unchanged.age("s", 40.0)) == ">=30s ago"


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0s"), (9.96, "10.0s"), (42, "42s"), (125, "2m05s"),
                                               (7300, "2h01m"), (-1, "0.0s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_watch_prints_until_ctrl_c_and_retries_failed_reads(reader: StatusReader,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from kcl.errors import LeaseTableError

    reads = iter([[Lease("shardId-000000000000", lease_owner="a", lease_counter=1)], LeaseTableError("throttled"),
                  [Lease("shardId-000000000000", lease_owner="a", lease_counter=2)]])

    def read() -> list[Lease]:
        result = next(reads)
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(reader, "read", read)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    out = io.StringIO()
    watch_status(reader, interval=1.5, as_json=True, out=out, sleep=sleep)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["lease_counter"] for row in rows] == [1, 2] and sleeps == [1.5] * 3
    assert "throttled; trying again in 1.5s" in capsys.readouterr().err


def test_watch_fails_when_the_first_read_fails(reader: StatusReader, monkeypatch: pytest.MonkeyPatch) -> None:
    from kcl.errors import LeaseTableError

    def read() -> list[Lease]:
        raise LeaseTableError("lease table 'x' does not exist")

    monkeypatch.setattr(reader, "read", read)
    with pytest.raises(LeaseTableError):
        watch_status(reader, interval=1, as_json=False, out=io.StringIO(), sleep=lambda _: None)
