"""Benchmarks: a fast local AWS sink, a harness that measures each variant in its own process, and
runners for the Python peers the issues compare against.  See docs/bench.md."""
