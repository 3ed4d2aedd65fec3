"""A fast local AWS sink: Kinesis, Firehose and CloudWatch as far as the toolkit's clients use them.

    python -m tests.support.sink --port 0 --shards 16 [--stream NAME[:SHARDS]] [--prefill SPEC] [--verify count]

It lives with the tests because tests need what LocalStack's kinesis-mock does not offer (a stream's
MaxRecordSizeInKiB, a share of entries failed inside a request that otherwise succeeds), and the
benchmarks in ``bench/`` measure client throughput against it because the emulator absorbs only
~900 records/s.  ``bench/`` imports it from here; nothing here imports ``bench/`` (the sink's own
ceiling is measured by ``python -m bench.sink_selftest``).

It speaks the real wire protocol (JSON 1.1 with ``X-Amz-Target``, or the same with CBOR bodies,
``application/x-amz-cbor-1.1``; any SigV4 signature accepted), so clients reach it through
``AWS_ENDPOINT_URL`` like any endpoint, and it answers as the service would: real shard routing,
per-record results, the service's size limits and error codes.  What it does not implement is listed
in docs/bench.md.

The modules: :mod:`.model` (streams, shards, sequence numbers, settings; no I/O), :mod:`.kinesis`
and :mod:`.firehose` (the operations), :mod:`.server` (HTTP and the control API), ``__main__`` (the
command line) and :mod:`.process` (:class:`SinkProcess`: the sink in its own process for a ``with``
block, the way tests and benchmarks start it).
"""

from tests.support.sink.model import PrefillSpec
from tests.support.sink.process import SinkBase, SinkProcess

__all__ = ["PrefillSpec", "SinkBase", "SinkProcess"]
