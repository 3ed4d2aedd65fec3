"""The Python peers alone, through the harness and against the sink: 100-byte and 1 KiB records.

    python -m bench.peers_bench [--quick] [--repeat N] [--only TEXT] [--json bench/results/peers.json]

Temporary: it shows the benchmark infrastructure working end to end until producer_bench.py,
consumer_bench.py and agent_bench.py put the toolkit beside these same rows.
"""

from __future__ import annotations

import sys

from bench.harness import Variant, format_table, parse_options, run_variants
from bench.peers import consumer_peer_variants, prefilled_streams, producer_peer_variants
from bench.workload import Workload
from tests.support.sink import SinkProcess

SHARDS = 16
RECORDS = {100: 200_000, 1024: 100_000}


def main() -> int:
    options = parse_options(__doc__.split("\n\n")[0])
    for record_size, records in RECORDS.items():
        workload = Workload(records=records, record_size=record_size)
        plain, aggregated = prefilled_streams(workload)
        variants = [Variant("workload generation only", "bench.peers:baseline_workload",
                            {"workload": workload.to_dict()}, note="the floor every row includes")]
        variants += producer_peer_variants(workload)
        variants += consumer_peer_variants(workload, plain, aggregated)
        with SinkProcess(streams={"bench": SHARDS}, verify="route", prefill=[plain, aggregated]) as sink:
            results = run_variants(variants, sink=sink, options=options)
        print(format_table(results, title=f"Python peers, {record_size}-byte records, {SHARDS}-shard sink stream"))
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
