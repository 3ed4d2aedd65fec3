"""The ``kcl-worker`` command."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kcl-worker",
        description="Consume a Kinesis stream with DynamoDB-coordinated leases, compatible with the Java KCL.",
    )
    parser.add_argument("--stream", help="name of the Kinesis stream to consume")
    parser.add_argument("--application", help="application name (also the lease table name)")
    parser.add_argument("--processor", help="record processor as module:Class")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("kcl-worker: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
