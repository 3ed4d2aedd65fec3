"""The ``kinesis-agent`` command.

    kinesis-agent [-c /etc/aws-kinesis/agent.json] [--check-config] [-L info] [-l FILE]
                  [--metrics-port PORT] [--metrics-address ADDR]

Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for a bad command line, 70 when a flow failed
unexpectedly, 73 when the checkpoint database cannot be created or written, 78 when the configuration
is invalid, an AWS profile is missing, there are no credentials, the region is invalid, the log file
cannot be opened or the metrics port cannot be bound.  systemd units can keep 73 and 78 out of their
restart loop (RestartPreventExitStatus).  ``--metrics-port``/``--metrics-address`` override agent.json's
``prometheus.port``/``prometheus.address``.
Logging is configured here, never by the library: JSON lines on stderr (console lines on a terminal), or
appended to ``-l FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from agent.config import DEFAULT_CONFIG_FILE, AgentConfig, load_config
from agent.daemon import EXIT_CHECKPOINTS, EXIT_CONFIG, Agent
from agent.errors import CheckpointStoreError
from agent.private_files import open_log_file
from kpl import __version__
from kpl.aws import ClientConfig, check_setup
from kpl.errors import ConfigurationError
from kpl.logs import configure_logging, get_logger
from kpl.observability import DEFAULT_ADDRESS, EndpointSettings, add_endpoint_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinesis-agent",
        description="Tail files and ship their lines to Kinesis Data Streams or Firehose (reads agent.json).",
    )
    parser.add_argument("-c", "--configuration", default=DEFAULT_CONFIG_FILE,
                        help="path to agent.json; flows are also read from agent.d/ next to it "
                             "(default: %(default)s)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print the effective settings as JSON and exit")
    parser.add_argument("-L", "--log-level", default="info",
                        choices=["debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default: %(default)s)")
    parser.add_argument("-l", "--log-file", default=None,
                        help="append logs to this file instead of stderr")
    add_endpoint_arguments(parser, config_key="prometheus.port")
    parser.add_argument("--version", action="version", version=f"kinesis-agent {__version__}")
    return parser


def with_endpoint_arguments(config: AgentConfig, args: argparse.Namespace) -> AgentConfig:
    """agent.json's endpoint with the command line's ``--metrics-port``/``--metrics-address`` on top."""
    endpoint = config.metrics_endpoint
    port = args.metrics_port if args.metrics_port is not None else (endpoint.port if endpoint else None)
    if port is None:
        if args.metrics_address is not None:
            raise ConfigurationError("--metrics-address needs a port: add --metrics-port PORT "
                                     "(or prometheus.port in agent.json)")
        return config
    address = args.metrics_address or (endpoint.address if endpoint else DEFAULT_ADDRESS)
    return dataclasses.replace(config, metrics_endpoint=EndpointSettings(port, address))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = with_endpoint_arguments(load_config(args.configuration), args)
    except ConfigurationError as exc:
        print(f"kinesis-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        json.dump(config.describe(), sys.stdout, indent=2, default=str)
        print()
        for note in config.ineffective:
            print(f"kinesis-agent: note: accepted for compatibility, no effect: {note}", file=sys.stderr)
        return 0

    try:
        check_setup(_clients(config))
    except ConfigurationError as exc:
        print(f"kinesis-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        # 0640 whatever the umask (agent.private_files); the file lives as long as the agent.
        log_stream = open_log_file(args.log_file) if args.log_file else None
    except OSError as exc:
        print(f"kinesis-agent: cannot open the log file: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.log_level, stream=log_stream)
    log = get_logger("agent")
    log.info("kinesis-agent starting", version=__version__, configuration=args.configuration,
             flows=len(config.flows))
    try:
        return asyncio.run(Agent(config).run())
    except CheckpointStoreError as exc:
        log.error("cannot start: checkpoint database unusable", detail=str(exc))
        print(f"kinesis-agent: {exc}", file=sys.stderr)
        return EXIT_CHECKPOINTS
    except ConfigurationError as exc:  # found at start-up: no region, no source credentials for a role...
        log.error("cannot start: configuration error", detail=str(exc))
        print(f"kinesis-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _clients(config: AgentConfig) -> dict[str, ClientConfig]:
    """The clients the agent will make, for the set-up check."""
    kinds = {flow.destination_kind for flow in config.flows}
    clients = {}
    if "kinesis" in kinds:
        clients["kinesis"] = config.kinesis_client
    if "firehose" in kinds:
        clients["firehose"] = config.firehose_client
    if config.emit_metrics:
        clients["cloudwatch"] = config.cloudwatch_client
    return clients


if __name__ == "__main__":
    sys.exit(main())
