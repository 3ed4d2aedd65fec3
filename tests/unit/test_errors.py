"""One error tree: every error a public call raises is a ``kpl.KinesisToolkitError``, and the docs list them all.

Part one calls each public raise site with bad input: it must raise the toolkit's class and still the
built-in it raised before (``except ValueError``/``except TypeError`` in callers keeps working).  Part
two finds every exception class defined in kpl/, kcl/ and agent/ and checks it against the "Errors"
tables of docs/kpl.md, docs/kcl.md and docs/agent.md: each class is in a table under the name users
import it by, with its bases as written, and derives from ``KinesisToolkitError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import agent
import kcl
import kpl
from agent.config import load_config
from agent.errors import AgentConfigurationError
from kcl.config import WorkerConfig
from kcl.multilang import MultiLangProcessorFactory
from kcl.sequence import ExtendedSequenceNumber
from kpl.aggregation import MAGIC, AggregationFormatError, decode
from kpl.cloudwatch import CloudWatchPublisher, MetricsRegistry
from kpl.config import ProducerConfig
from kpl.core import ProducerCore
from kpl.errors import (
    ArgumentTypeError,
    ConfigurationError,
    InvalidArgumentError,
    KinesisToolkitError,
    RecordTooLargeError,
    UnknownSettingError,
)
from kpl.hashing import effective_hash_key
from kpl.health import HealthChecks
from kpl.logs import configure_logging
from kpl.prometheus import ProducerCollector

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / name for name in ("kpl.md", "kcl.md", "agent.md")]

# --- part one: the public raise sites -----------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    call: Callable[[], object]
    error: type[KinesisToolkitError]
    builtin: type[Exception]
    match: str


def _put(*args: object) -> Callable[[], object]:
    """``AsyncProducer.put_record_nowait`` on a producer never started: input is checked before anything else."""
    return lambda: kpl.AsyncProducer().put_record_nowait(*args)  # type: ignore[arg-type]


def _put_records(records: object) -> Callable[[], object]:
    async def put() -> object:
        return await kpl.AsyncProducer().put_records("s", records)  # type: ignore[arg-type]
    return lambda: asyncio.run(put())


def _check_size(size: int) -> Callable[[], object]:
    """The producer's size check as ``put_record`` makes it (MaxUserRecordSize below 1 MiB: the limit is final)."""
    core = ProducerCore(ProducerConfig(max_user_record_size=1000))
    return lambda: asyncio.run(core.check_size("s", size))


def _raise(make: Callable[[], BaseException]) -> Callable[[], object]:
    """A call raising the error ``make`` builds (for a site that builds its error for several callers)."""
    def call() -> object:
        raise make()
    return call


def _add_check(name: str, check: object, twice: bool = False) -> Callable[[], object]:
    def add() -> None:
        checks = HealthChecks()
        checks.add_liveness(name, check)  # type: ignore[arg-type]
        if twice:
            checks.add_liveness(name, check)  # type: ignore[arg-type]
    return add


def _aggregate_with_bad_digest() -> bytes:
    return MAGIC + b"\x0a\x01k" + hashlib.md5(b"something else").digest()


class _NoProcessor(kcl.RecordProcessor):
    def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int | None) -> None:
        pass


def test_a_worker_named_aws_without_metrics_is_fine() -> None:
    """``AWS/`` is refused only as a CloudWatch namespace: with metrics off, the name is free."""
    worker = kcl.Worker("s", "AWS/app", _NoProcessor, WorkerConfig(metrics_level=kcl.MetricsLevel.NONE))
    assert worker.application_name == "AWS/app"


class _Snapshot:
    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        return {}


SITES = {
    # The put path (kpl.intake, kpl.hashing, kpl.core), through the public face.
    "data not bytes-like": Site(_put("s", "text", "k"), ArgumentTypeError, TypeError, "data must be bytes-like"),
    "partition key not str": Site(_put("s", b"d", b"k"), ArgumentTypeError, TypeError, "partition_key must be str"),
    "partition key empty": Site(_put("s", b"d", ""), InvalidArgumentError, ValueError, "must have 1 to 256"),
    "partition key too long": Site(_put("s", b"d", "x" * 257), InvalidArgumentError, ValueError, "must have 1 to 256"),
    "partition key not UTF-8": Site(_put("s", b"d", "\ud800"), InvalidArgumentError, ValueError, "UTF-8"),
    "hash key not digits": Site(_put("s", b"d", "k", "12a"), InvalidArgumentError, ValueError, "decimal integer"),
    "hash key a bool": Site(_put("s", b"d", "k", True), InvalidArgumentError, ValueError, "decimal integer"),
    "hash key too big": Site(_put("s", b"d", "k", 2**128), InvalidArgumentError, ValueError, "outside"),
    "hash key a float": Site(_put("s", b"d", "k", 1.5), ArgumentTypeError, TypeError, "must be str or int"),
    "hash key, shared helper": Site(lambda: effective_hash_key("k", "-1"), InvalidArgumentError, ValueError,
                                    "decimal integer"),
    "stream name not str": Site(_put(5, b"d", "k"), ArgumentTypeError, TypeError, "stream_name must be a str"),
    "stream name blank": Site(_put("  ", b"d", "k"), InvalidArgumentError, ValueError, "non-empty string"),
    "async put_record": Site(lambda: kpl.AsyncProducer().put_record("s", "text", "k"),  # type: ignore[arg-type]
                             ArgumentTypeError, TypeError, "data must be bytes-like"),
    "put_records item": Site(_put_records([(b"d", "k"), 5]), ArgumentTypeError, TypeError, r"records\[1\]: each"),
    "put_records not iterable": Site(_put_records(5), ArgumentTypeError, TypeError, r"records\[0\]: .*not iterable"),
    "put_records bad key": Site(_put_records([(b"d", "k"), (b"d", "")]), InvalidArgumentError, ValueError,
                                r"records\[1\]: partition_key"),
    "put_records bad hash key": Site(_put_records([(b"d", "k", "-1")]), InvalidArgumentError, ValueError,
                                     r"records\[0\]: explicit_hash_key"),
    "record too large": Site(_check_size(1001), RecordTooLargeError, ValueError, "record is 1001 bytes"),
    "too large, unknown limit": Site(_raise(lambda: ProducerCore(ProducerConfig()).too_large("s", 2 << 20)),
                                     RecordTooLargeError, ValueError, "default maximum record size"),
    # kcl.ExtendedSequenceNumber (in kcl.__all__).
    "sequence number": Site(lambda: ExtendedSequenceNumber("12a"), InvalidArgumentError, ValueError,
                            "decimal digits"),
    "sub-sequence negative": Site(lambda: ExtendedSequenceNumber("1", -1), InvalidArgumentError, ValueError, ">= 0"),
    "sub-sequence not int": Site(lambda: ExtendedSequenceNumber("1", "0"),  # type: ignore[arg-type]
                                 ArgumentTypeError, TypeError, "must be an int"),
    "sub-sequence a bool": Site(lambda: ExtendedSequenceNumber("1", True), ArgumentTypeError, TypeError,
                                "must be an int"),
    "MultiLang empty command": Site(lambda: MultiLangProcessorFactory([]), InvalidArgumentError, ValueError,
                                    "command must not be empty"),
    # The shared modules: CloudWatch (kcl.Worker's application name is its namespace), Prometheus,
    # logging, health checks, aggregation.
    "CloudWatch namespace AWS/": Site(lambda: CloudWatchPublisher(MetricsRegistry(), "AWS/app"),
                                      ConfigurationError, ValueError, "invalid CloudWatch namespace"),
    "CloudWatch namespace empty": Site(lambda: CloudWatchPublisher(MetricsRegistry(), ""),
                                       ConfigurationError, ValueError, "invalid CloudWatch namespace"),
    "Worker named AWS/...": Site(lambda: kcl.Worker("s", "AWS/app", _NoProcessor), ConfigurationError, ValueError,
                                 "invalid CloudWatch namespace"),
    "Prometheus namespace": Site(lambda: ProducerCollector(_Snapshot(), namespace="my-app"),
                                 InvalidArgumentError, ValueError, "must be a Prometheus name"),
    "Prometheus label": Site(lambda: ProducerCollector(_Snapshot(), labels={"shard": "x"}),
                             InvalidArgumentError, ValueError, "is not a label name"),
    "log level": Site(lambda: configure_logging("loud"), ConfigurationError, ValueError, "unknown log level"),
    "health timeout": Site(lambda: HealthChecks(timeout=0), InvalidArgumentError, ValueError, "must be positive"),
    "health check name": Site(_add_check("two\nlines", lambda: None), InvalidArgumentError, ValueError, "one-line"),
    "health check twice": Site(_add_check("a", lambda: None, twice=True), InvalidArgumentError, ValueError,
                               "already registered"),
    "health check not callable": Site(_add_check("a", 5), ArgumentTypeError, TypeError, "must be callable"),
    "aggregate without magic": Site(lambda: decode(b"plain"), AggregationFormatError, ValueError, "magic"),
    "aggregate bad digest": Site(lambda: decode(_aggregate_with_bad_digest()), AggregationFormatError, ValueError,
                                 "MD5"),
}


@pytest.mark.parametrize("site", list(SITES.values()), ids=list(SITES))
def test_a_public_raise_site_raises_a_toolkit_error_that_is_still_the_builtin(site: Site) -> None:
    with pytest.raises(KinesisToolkitError, match=site.match) as caught:
        site.call()
    assert isinstance(caught.value, site.error), type(caught.value)
    assert isinstance(caught.value, site.builtin), type(caught.value)


@pytest.mark.parametrize("call", [
    pytest.param(lambda: kpl.AsyncProducer(record_ttl=1), id="unknown keyword"),  # type: ignore[call-arg]
    pytest.param(lambda: ProducerConfig().with_(record_ttl=1), id="with_"),
])
def test_an_unknown_producer_setting_is_an_unknown_setting_error_and_a_type_error(call: Callable[[], object]) -> None:
    with pytest.raises(TypeError, match="unknown setting 'record_ttl'") as caught:
        call()
    assert isinstance(caught.value, UnknownSettingError)


def test_a_producer_given_something_else_than_a_config_says_so() -> None:
    with pytest.raises(ArgumentTypeError, match=r"takes a kpl\.ProducerConfig"):
        kpl.AsyncProducer(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [{"table_name": 5}, {"table_name": b"leases"}, {"kinesis_role_arn": 5}])
def test_a_worker_setting_of_the_wrong_type_is_a_configuration_error(changes: dict[str, object]) -> None:
    # Before, re.fullmatch's own TypeError escaped; every other invalid WorkerConfig value is a ConfigurationError.
    with pytest.raises(ConfigurationError, match=r"table_name|kinesis_role_arn"):
        WorkerConfig(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", [{"optionName": ["LOGTOJSON"]}, {"optionName": {}},
                                    {"optionName": "LOGTOJSON", "logFormat": ["COMMONAPACHELOG"]}])
def test_a_json_list_or_object_where_agent_json_wants_a_name_is_a_configuration_error(
        tmp_path: Path, option: dict[str, object]) -> None:
    # Before, "unhashable type" (a TypeError) escaped from the option table's lookup.
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"flows": [{"filePattern": "/tmp/app.log", "kinesisStream": "s",
                                           "dataProcessingOptions": [option]}]}))
    with pytest.raises(AgentConfigurationError, match="is not one of"):
        load_config(path)


# --- part two: every error class, in the docs' tables ---------------------------------------------------

#: Exception classes that never leave the toolkit: each is caught and translated where it is raised.
INTERNAL = {
    "kcl.leases.ConditionFailed": "a refused DynamoDB condition; its callers (taker, renewer, checkpointer) "
                                  "translate it",
    "kcl.multilang.child.ChildFailed": "the MultiLang processor turns it into ReleaseLeaseError",
}


def defined_errors() -> dict[str, type[BaseException]]:
    """module.Class -> class, for every exception class defined (not imported) in kpl, kcl and agent."""
    found: dict[str, type[BaseException]] = {}
    for package in (kpl, kcl, agent):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name:
                    found[f"{info.name}.{name}"] = value
    return found


def public_errors() -> dict[str, type[BaseException]]:
    return {path: cls for path, cls in defined_errors().items()
            if path not in INTERNAL and not path.rsplit(".", 1)[1].startswith("_")}


@dataclass(frozen=True)
class Row:
    page: str
    path: str
    bases: list[str]
    when: str


def table_rows() -> list[Row]:
    """The rows of the table under the "Errors" heading of each page: `dotted.Class` | `Base`, ... | when."""
    rows = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        start = [i for i, line in enumerate(lines) if re.fullmatch(r"#{2,3} Errors", line)]
        assert len(start) == 1, f"{page.name}: one Errors section"
        for line in lines[start[0] + 1:]:
            if line.startswith("#"):
                break
            if line.startswith("| `"):
                cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
                assert len(cells) == 3, f"{page.name}: {line}"
                path = re.fullmatch(r"`([\w.]+)`", cells[0])
                assert path, f"{page.name}: the first cell names one class: {line}"
                rows.append(Row(page.name, path.group(1), re.findall(r"`(\w+)`", cells[1]), cells[2]))
    return rows


def resolve(path: str) -> object:
    """The object a user gets for ``path`` (``kpl.InvalidArgumentError``, ``agent.errors.ConversionError``)."""
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute, None)


def test_the_scan_finds_the_error_modules() -> None:
    errors = defined_errors()
    for path in ("kpl.errors.KinesisToolkitError", "kpl.errors.RecordTooLargeError", "kcl.errors.ReleaseLeaseError",
                 "agent.errors.ConversionError", "kpl.aggregation.AggregationFormatError",
                 "kpl.observability.EndpointBindError"):
        assert path in errors, path
    assert {row.page for row in table_rows()} == {page.name for page in PAGES}


def test_every_public_error_class_is_a_toolkit_error() -> None:
    outside = [path for path, cls in public_errors().items() if not issubclass(cls, KinesisToolkitError)]
    assert not outside, f"derive these from kpl.errors.KinesisToolkitError (or a subclass): {outside}"


def test_every_public_error_class_says_when_it_is_raised() -> None:
    undocumented = [path for path, cls in public_errors().items() if not (cls.__dict__.get("__doc__") or "").strip()]
    assert not undocumented, f"give these a docstring saying when they are raised: {undocumented}"


def test_every_public_error_class_is_in_an_errors_table() -> None:
    documented = {id(resolve(row.path)) for row in table_rows()}
    missing = [path for path, cls in public_errors().items() if id(cls) not in documented]
    assert not missing, f"add these to the Errors table of docs/kpl.md, kcl.md or agent.md: {missing}"


def test_each_table_row_names_a_real_class_with_its_real_bases() -> None:
    for row in table_rows():
        cls = resolve(row.path)
        assert isinstance(cls, type) and issubclass(cls, KinesisToolkitError), f"{row.page}: {row.path}"
        assert row.bases == [base.__name__ for base in cls.__bases__], f"{row.page}: {row.path} bases"
        assert row.when, f"{row.page}: {row.path} says when it is raised"

