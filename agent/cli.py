"""The ``kinesis-agent`` command."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinesis-agent",
        description="Tail files and ship their lines to Kinesis Data Streams or Firehose (reads agent.json).",
    )
    parser.add_argument("-c", "--configuration", default="/etc/aws-kinesis/agent.json",
                        help="path to agent.json (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("kinesis-agent: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
