"""The ``kcl-worker`` command.

    kcl-worker --stream NAME --application NAME --processor module:Class
               [--initial-position LATEST|TRIM_HORIZON|AT_TIMESTAMP] [--timestamp T] [--fan-out]
               [--config FILE] [--worker-id ID] [--log-level LEVEL] [-l FILE]
               [--metrics-port PORT] [--metrics-address ADDR]
    kcl-worker status --application NAME [--table NAME] [--json] [--watch [--interval SECONDS]]

Everything that can be checked locally (arguments, the properties file, importing the processor, the
AWS region and credentials) is checked before any AWS call, and the stream's existence before the lease
table is created: a failing start leaves nothing behind.  Exit codes: 0 after a graceful stop, 2 for bad
arguments, 78 (EX_CONFIG, as kinesis-agent) for an invalid configuration or processor (including a
stream ARN of another account without a role to assume), a missing AWS profile, no credentials or an
invalid region, or a metrics port that cannot be bound, 1 for a missing stream, table or another runtime
failure.  ``--metrics-port``/``--metrics-address`` override the properties keys ``metricsPort``/``metricsAddress``.
``kcl-worker status`` lives in kcl.status.
Logging is configured here, never by the library: JSON lines on stderr (console lines on a terminal), or
appended to ``-l FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from kcl.config import InitialPosition, MetricsLevel, RetrievalMode, WorkerConfig
from kcl.errors import ConfigurationError, ProcessorLoadError
from kcl.multilang import MultiLangProcessorFactory
from kcl.processor import RecordProcessor, check_processor_class
from kcl.properties import LoadedProperties, load_properties
from kcl.status import StatusReader
from kcl.stream import kinesis_client_config
from kcl.worker import Worker
from kpl.aws import ClientConfig, check_setup
from kpl.errors import KinesisToolkitError
from kpl.logs import configure_logging, get_logger
from kpl.observability import add_endpoint_arguments

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kcl-worker",
        description="Consume a Kinesis stream with DynamoDB-coordinated leases, compatible with the Java KCL. "
                    "'kcl-worker status --application NAME' shows the lease table.",
    )
    parser.add_argument("--stream", help="name of the Kinesis stream to consume")
    parser.add_argument("--application", help="application name (also the lease table name)")
    parser.add_argument("--processor", help="record processor as module:Class (or module:factory)")
    parser.add_argument("--initial-position", choices=[p.value for p in InitialPosition], type=str.upper,
                        help="where new leases start reading (default LATEST)")
    parser.add_argument("--timestamp", help="start time for AT_TIMESTAMP: ISO-8601 (UTC if no offset) or epoch seconds")
    parser.add_argument("--fan-out", action="store_true", help="read with enhanced fan-out (SubscribeToShard)")
    parser.add_argument("--config", metavar="FILE", help="KCL/MultiLangDaemon-style .properties file")
    parser.add_argument("--worker-id", help="this worker's id in the lease table (default host-pid-random)")
    parser.add_argument("--log-level", default="info", type=str.lower, choices=["debug", "info", "warning", "error"],
                        help="default info")
    parser.add_argument("-l", "--log-file", metavar="FILE", help="append logs to FILE instead of stderr")
    add_endpoint_arguments(parser, config_key="metricsPort")
    return parser


def build_status_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kcl-worker status", description="Print an application's lease table: per shard the "
                     "owner, checkpoint, lag, last processing and last renewal.")
    parser.add_argument("--application", required=True, help="application name")
    parser.add_argument("--table", help="lease table name, when it differs from the application name")
    parser.add_argument("--json", action="store_true", help="one JSON object per lease instead of a table")
    parser.add_argument("--watch", action="store_true", help="read the table again every --interval seconds "
                        "until Ctrl-C")
    parser.add_argument("--interval", type=_interval, default=None, metavar="SECONDS",
                        help="seconds between reads with --watch (default 2; each read is a Scan of the table)")
    return parser


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.5 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside 0.5-3600 seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "status":
        return _status(build_status_parser(), args[1:])
    return _run(build_parser().parse_args(args))


# --- running a worker -----------------------------------------------------------------------------


def _fail(message: str, code: int) -> int:
    print(f"kcl-worker: error: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    # Logging first: reading the properties file may warn (a key set twice).
    try:
        configure_logging(args.log_level, file=args.log_file)
    except OSError as exc:
        return _fail(f"cannot open the log file: {exc}", EXIT_CONFIG)
    try:
        loaded = load_properties(args.config) if args.config else LoadedProperties(settings={})
        stream = args.stream or loaded.stream
        application = args.application or loaded.application_name
        processor_ref = args.processor or loaded.processor
        # MultiLang mode: the properties file's executableName runs per shard, unless a processor is named.
        multilang = not processor_ref and "executable_name" in loaded.settings
        missing = [flag for flag, value in (("--stream", stream), ("--application", application),
                                            ("--processor", processor_ref or multilang)) if not value]
        if missing:
            return _fail(f"missing {', '.join(missing)} (give them as options or in the --config file)", EXIT_USAGE)
        assert stream and application
        if args.metrics_address is not None and args.metrics_port is None and "metrics_port" not in loaded.settings:
            raise ConfigurationError("--metrics-address needs a port: add --metrics-port PORT (or metricsPort in "
                                     "the properties file)")
        config = loaded.worker_config(**_overrides(args))
        factory: Callable[[], RecordProcessor] = (
            MultiLangProcessorFactory.from_config(config, loaded.directory) if multilang
            else load_processor(str(processor_ref)))
        check_setup(_clients(config, stream))
    except (ConfigurationError, ProcessorLoadError) as exc:
        return _fail(str(exc), EXIT_CONFIG)
    log = get_logger("kcl.cli")
    for key in loaded.keys_without_effect(native=not multilang):
        log.warning("properties key has no meaning for this worker and is ignored", key=key)
    try:
        Worker(stream, application, factory, config).run_forever()
    except (ConfigurationError, ProcessorLoadError) as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except KinesisToolkitError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    finally:
        if isinstance(factory, MultiLangProcessorFactory) and factory.kill_remaining():
            log.warning("killed child processes still running at exit")
    return 0


def _clients(config: WorkerConfig, stream: str) -> dict[str, ClientConfig]:
    clients = {"kinesis": kinesis_client_config(config.kinesis_client_config(), stream),
               "dynamodb": ClientConfig(region=config.region_name, endpoint_url=config.dynamo_db_endpoint)}
    if config.metrics_level is not MetricsLevel.NONE:
        clients["cloudwatch"] = config.cloudwatch_client_config()
    return clients


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.worker_id:
        overrides["worker_id"] = args.worker_id
    if args.initial_position:
        overrides["initial_position_in_stream"] = InitialPosition(args.initial_position)
    if args.timestamp:
        overrides["initial_timestamp"] = parse_timestamp(args.timestamp)
        overrides.setdefault("initial_position_in_stream", InitialPosition.AT_TIMESTAMP)
    if args.fan_out:
        overrides["retrieval_mode"] = RetrievalMode.FANOUT
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.metrics_address is not None:
        overrides["metrics_address"] = args.metrics_address
    return overrides


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 (naive means UTC) or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"--timestamp {text!r} is neither ISO-8601 nor epoch seconds") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def load_processor(reference: str) -> Callable[[], RecordProcessor]:
    """Import ``module:attribute``; it must be a RecordProcessor class or a callable making one.

    The current directory is importable, as with ``python -m``.
    """
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ProcessorLoadError(f"--processor must look like module:Class, got {reference!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProcessorLoadError(f"cannot import processor module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise ProcessorLoadError(f"importing processor module {module_name!r} failed: "
                                 f"{type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ProcessorLoadError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if inspect.isclass(target):
        if not callable(getattr(target, "process_records", None)) or (
                issubclass(target, RecordProcessor) and target.process_records is RecordProcessor.process_records):
            raise ProcessorLoadError(f"{reference} is not a record processor: it does not implement process_records")
        check_processor_class(target)
    elif not callable(target):
        raise ProcessorLoadError(f"{reference} is neither a RecordProcessor class nor a factory function")
    factory: Callable[[], RecordProcessor] = target
    return factory


# --- status -----------------------------------------------------------------------------------------


def _status(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    args = parser.parse_args(argv)
    if args.interval is not None and not args.watch:
        parser.error("--interval needs --watch")
    try:
        check_setup({"dynamodb": ClientConfig()})
    except ConfigurationError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    configure_logging("warning")
    reader = StatusReader(args.table or args.application, args.application)
    try:
        if args.watch:
            watch_status(reader, interval=args.interval or 2.0, as_json=args.json)
        else:
            _print_status(reader, as_json=args.json, out=sys.stdout)
    except KinesisToolkitError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    finally:
        reader.close()
    return 0


def _print_status(reader: StatusReader, *, as_json: bool, out: TextIO) -> None:
    leases = reader.read()
    if as_json:
        for row in reader.rows(leases):
            print(json.dumps(row), file=out)
    else:
        print(reader.render(leases), file=out)
    out.flush()


def watch_status(reader: StatusReader, *, interval: float, as_json: bool, out: TextIO | None = None,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Print the table every ``interval`` seconds until Ctrl-C (which returns normally).

    The first read must succeed (a missing table is an error); later failures are reported on stderr and
    the next read is tried at the next interval."""
    stream = out or sys.stdout
    terminal = not as_json and stream.isatty()
    first = True
    try:
        while True:
            try:
                if terminal:
                    stream.write("\x1b[H\x1b[2J")  # home and clear, as watch(1) does
                if not as_json:
                    stream.write(f"every {interval:g}s, {datetime.now().astimezone().isoformat(timespec='seconds')}"
                                 f", lease table {reader.table.name} (Ctrl-C to stop)\n")
                _print_status(reader, as_json=as_json, out=stream)
                if not as_json and not terminal:
                    stream.write("\n")
                    stream.flush()
            except KinesisToolkitError as exc:
                if first:
                    raise
                print(f"kcl-worker: {exc}; trying again in {interval:g}s", file=sys.stderr)
            first = False
            sleep(interval)
    except KeyboardInterrupt:
        if terminal:
            stream.write("\n")
        stream.flush()


if __name__ == "__main__":
    sys.exit(main())
