"""Reading a PutRecords response: partial failures, their classes, and the wrong-shard check."""

from __future__ import annotations

from typing import Any

import pytest

from kpl.accumulator import NO_LOG, KinesisRecord, PendingRecord
from kpl.hashing import MAX_HASH_KEY
from kpl.responses import read_response
from kpl.retry import ErrorKind
from kpl.shard_map import ShardMap

HALF = (MAX_HASH_KEY + 1) // 2
QUARTER = HALF // 2


def shard(shard_id: str, start: int, end: int) -> dict[str, Any]:
    return {"ShardId": shard_id, "HashKeyRange": {"StartingHashKey": str(start), "EndingHashKey": str(end)}}


def pending(hash_key: int) -> PendingRecord:
    return ("k", None, b"d", hash_key, 2, 0.0, NO_LOG)


def kinesis_record(shard_id: str | None, *hash_keys: int) -> KinesisRecord:
    records = [pending(h) for h in hash_keys]
    return KinesisRecord(records, [None] * len(records), {}, 10, shard_id, 1, 0.1, 0.0, 30.0, 10)


def ok(shard_id: str, sequence: str = "1") -> dict[str, str]:
    return {"ShardId": shard_id, "SequenceNumber": sequence}


@pytest.fixture
def split_map() -> ShardMap:
    """shard-0 (the lower half) has split into shard-2 and shard-3; the map knows all of them."""
    shard_map = ShardMap("s")
    shard_map.apply([shard("shard-0", 0, HALF - 1), shard("shard-1", HALF, MAX_HASH_KEY)], 1.0)
    shard_map.apply([shard("shard-1", HALF, MAX_HASH_KEY), shard("shard-2", 0, QUARTER - 1),
                     shard("shard-3", QUARTER, HALF - 1)], 2.0)
    return shard_map


def test_partial_failures_are_classified_and_logged(split_map: ShardMap) -> None:
    batch = [kinesis_record("shard-1", HALF), kinesis_record("shard-1", HALF + 1), kinesis_record("shard-1", HALF),
             kinesis_record("shard-1", HALF)]
    response = {"FailedRecordCount": 3, "Records": [
        ok("shard-1", "100"),
        {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
        {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"},
        {"ErrorCode": "KMSAccessDeniedException", "ErrorMessage": "no key"},
    ]}
    outcome = read_response(batch, response, split_map, start=5.0, end=5.2)
    assert [(kr, shard_id, seq) for kr, shard_id, seq in outcome.delivered] == [(batch[0], "shard-1", "100")]
    assert [(code, kind) for _, code, _, kind in outcome.failed] == [
        ("ProvisionedThroughputExceededException", ErrorKind.THROTTLED),
        ("InternalFailure", ErrorKind.TRANSIENT),
        ("KMSAccessDeniedException", ErrorKind.FATAL),
    ]
    assert batch[0].log == [(5.0, 5.2, None, None)]
    assert batch[1].log == [(5.0, 5.2, "ProvisionedThroughputExceededException", "slow down")]
    assert not outcome.stale_map


def test_an_aggregate_on_a_child_shard_is_checked_record_by_record(split_map: ShardMap) -> None:
    inside_only = kinesis_record("shard-0", 1, 2)                  # both keys in shard-2's range
    straddling = kinesis_record("shard-0", 1, QUARTER + 5)         # second key belongs to shard-3
    plain = kinesis_record("shard-0", QUARTER + 9)                 # one record: routed by its own key
    unknown = kinesis_record("shard-0", 1, 2)                      # landed on a shard the map has not seen
    response = {"Records": [ok("shard-2"), ok("shard-2"), ok("shard-3"), ok("shard-9")]}
    outcome = read_response([inside_only, straddling, plain, unknown], response, split_map, 1.0, 2.0)
    assert outcome.stale_map
    assert [kr for kr, _, _ in outcome.delivered] == [inside_only, plain]
    assert [kr for kr, _, _ in outcome.misrouted] == [straddling]
    assert [(kr, shard_id) for kr, shard_id, _ in outcome.unverified] == [(unknown, "shard-9")]


def test_unpredicted_records_are_not_checked(split_map: ShardMap) -> None:
    kr = kinesis_record(None, 1, 2)
    outcome = read_response([kr], {"Records": [ok("shard-3")]}, split_map, 1.0, 2.0)
    assert [k for k, _, _ in outcome.delivered] == [kr] and not outcome.stale_map


def test_a_response_of_the_wrong_length_is_refused(split_map: ShardMap) -> None:
    with pytest.raises(ValueError, match="2 entries"):
        read_response([kinesis_record("shard-1", HALF)] * 2, {"Records": [ok("shard-1")]}, split_map, 1.0, 2.0)


def test_put_records_body_matches_what_botocore_writes() -> None:
    import json

    import botocore.session
    from botocore.serialize import create_serializer

    from kpl.wire import _set_entries_aside, _splice_entries

    model = botocore.session.get_session().get_service_model("kinesis").operation_model("PutRecords")
    serializer = create_serializer("json")
    entries = [
        {"Data": b"\x00\xff binary", "PartitionKey": "a", "ExplicitHashKey": "123"},
        {"Data": b"", "PartitionKey": 'quote " backslash \\ and ключ', "ExplicitHashKey": str(2**128 - 1)},
        {"Data": b"x" * 1000, "PartitionKey": "no-hash-key"},
    ]
    params = {"Records": entries, "StreamName": "s"}
    expected = serializer.serialize_to_request(dict(params), model)["body"]
    context: dict[str, Any] = {}
    params_copy = dict(params)
    _set_entries_aside(params_copy, context)
    request = serializer.serialize_to_request(params_copy, model)
    _splice_entries(request, context)
    assert json.loads(request["body"]) == json.loads(expected)
    assert context == {}


def test_which_request_failures_leave_the_outcome_unknown() -> None:
    import botocore.exceptions

    from kpl.responses import request_failure, unanswered

    def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
        return botocore.exceptions.ClientError(
            {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutRecords")

    # Rejected by the service, or never sent: nothing was written.
    assert not unanswered(client_error("ProvisionedThroughputExceededException", 400))
    assert not unanswered(client_error("AccessDeniedException", 400))
    assert not unanswered(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"))
    assert not unanswered(botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"))
    assert not unanswered(botocore.exceptions.NoCredentialsError())
    assert not unanswered(ConnectionRefusedError())
    # No answer: the request may have been written.
    assert unanswered(client_error("InternalFailure", 500))
    assert unanswered(client_error("ServiceUnavailable", 503))
    assert unanswered(botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"))
    assert unanswered(botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"))
    assert unanswered(ConnectionResetError())
    timeout = request_failure(TimeoutError(), request_timeout=6.0)
    assert (timeout.code, timeout.unanswered) == ("RequestTimeout", True)
    assert timeout.message == "no response within 6 s"


def test_giving_up_tells_records_that_may_be_written_from_those_that_are_not() -> None:
    from kpl.backpressure import Budget
    from kpl.metrics import ProducerMetrics
    from kpl.records import Unanswered
    from kpl.resolver import Resolver

    class Future:
        result: Any = None

        def set_result(self, result: Any) -> None:
            self.result = result

    budget = Budget(100, 10_000)
    for _ in range(3):
        budget.admit(2)
    resolver = Resolver("s", lambda futures, result: None, budget, ProducerMetrics("none"))
    throttled = (0.0, 0.1, "ProvisionedThroughputExceededException", "slow down")
    timed_out = Unanswered((0.2, 1.2, "RequestTimeout", "no response within 1 s"))
    never_sent, answered, maybe = pending(1), (*pending(2)[:6], (throttled,)), (*pending(3)[:6], (timed_out,))
    futures = [Future(), Future(), Future()]
    resolver.give_up([never_sent, answered, maybe], list(futures), (), "close(timeout=1) ran out of time",
                     shard_id=None)
    codes = [(f.result.error.code, f.result.retryable) for f in futures]
    assert codes == [("ProducerClosed", True), ("ProducerClosed", True), ("OutcomeUnknown", False)]
    assert "may be in the stream" in futures[2].result.error.message
    assert "RequestTimeout" in futures[2].result.error.message
    assert [a.outcome_unknown for a in futures[2].result.attempts] == [True]
    assert budget.outstanding_records == 0
    # A Kinesis record whose own request went unanswered: all of its records may be written.
    whole = [Future(), Future()]
    resolver.give_up([pending(4), pending(5)], list(whole), (timed_out,), "close() was cancelled", shard_id=None)
    assert {f.result.error.code for f in whole} == {"OutcomeUnknown"}
