"""dataProcessingOptions: the Java agent's record converters, with the same output for the same input.

Users have dashboards, Athena tables and Lambda parsers built on what the Java converters emit, so the
port keeps their quirks on purpose (research agent.md §2.4 and §10 item 8):

* records arrive with their trailing newline and every JSON-producing converter ends its output with one;
* CSVTOJSON's delimiter is a Java regular expression and ``String.split`` drops trailing empty fields;
* LOGTOJSON drops a line its pattern does not match (counted, not sent raw) and turns Apache ``-``
  fields into ``null``;
* JSON is written as Jackson writes it: compact ``{"a":"b"}``, control characters as ``\\u00XX`` with
  upper-case hex, doubles in Java's notation; PRETTYPRINT follows Jackson's default pretty printer;
* SINGLELINE's ESCAPE_NEW_LINE joins lines with a backslash, a backslash and ``n`` (three characters);
* a converter that fails (for example ADDEC2METADATA on input that is not JSON) makes the agent send
  the raw record, and the failure is counted.

Converters work on ``str`` decoded from UTF-8 with replacement characters, as Java's ``new String``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from agent.ec2_metadata import fetch_ec2_metadata
from agent.errors import AgentConfigurationError, ConversionError
from kpl.logs import get_logger

log = get_logger(__name__)

ErrorFactory = Callable[[int, str, str], AgentConfigurationError]
NEW_LINE = "\n"


# --- JSON as Jackson writes it --------------------------------------------------------------------

_ESCAPES = {chr(i): f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


def _json_string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(lambda match: _ESCAPES[match.group()], text) + '"'


def java_double(value: float) -> str:
    """``Double.toString``: plain notation in [1e-3, 1e7), otherwise ``d.dddE±n``."""
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        if "e" in text:  # repr never does this in this range, but stay exact if it did
            text = format(Decimal(text), "f")
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digit_text = "".join(map(str, digits))
    scientific_exponent = exponent + len(digit_text) - 1
    mantissa = digit_text[0] + "." + (digit_text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{scientific_exponent}"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    return _json_string(str(value))


def write_compact(value: Any) -> str:
    """Jackson's ``writeValueAsString``."""
    if isinstance(value, dict):
        return "{" + ",".join(_json_string(str(k)) + ":" + write_compact(v) for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(write_compact(item) for item in value) + "]"
    return _scalar(value)


def write_pretty(value: Any, nesting: int = 0) -> str:
    """Jackson's ``DefaultPrettyPrinter``: two-space object indentation, ``" : "``, arrays on one line."""
    if isinstance(value, dict):
        if not value:
            return "{ }"
        inner = "  " * (nesting + 1)
        entries = [f"{inner}{_json_string(str(k))} : {write_pretty(v, nesting + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(entries) + "\n" + "  " * nesting + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[ ]"
        return "[ " + ", ".join(write_pretty(item, nesting + 1) for item in value) + " ]"
    return _scalar(value)


# --- Java string helpers -------------------------------------------------------------------------


def java_split(pattern: re.Pattern[str], text: str) -> list[str]:
    """``String.split(regex)``: no capture groups in the result, no empty leading piece from a zero-width
    match at the start, trailing empty pieces removed."""
    pieces: list[str] = []
    index = 0
    matched = False
    for match in pattern.finditer(text):
        if index == 0 and match.start() == 0 and match.end() == 0:
            continue
        pieces.append(text[index:match.start()])
        index = match.end()
        matched = True
    if not matched:
        return [text]
    pieces.append(text[index:])
    while pieces and not pieces[-1]:
        pieces.pop()
    return pieces


_JAVA_WHITESPACE = "".join(chr(i) for i in range(0x21))


def java_trim(text: str) -> str:
    """``String.trim``: strips every character up to and including U+0020, nothing else."""
    return text.strip(_JAVA_WHITESPACE)


def compile_java_regex(pattern: str) -> re.Pattern[str]:
    """A Java regular expression in Python: ASCII classes like Java's defaults, ``(?<name>`` groups."""
    return re.compile(re.sub(r"\(\?<([A-Za-z])", r"(?P<\1", pattern), re.ASCII)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _strip_newline(text: str) -> str:
    return text[:-1] if text.endswith(NEW_LINE) else text


# --- converters ----------------------------------------------------------------------------------


class Converter(Protocol):
    name: str

    def convert(self, text: str) -> str | None:
        """The converted record, or None to drop it; raises ConversionError to have the raw record sent."""


Printer = Callable[[Any], str]


class SingleLine:
    name = "SINGLELINE"
    _lines = re.compile("\n")

    def __init__(self, no_trim: bool, escape_new_line: bool) -> None:
        self.no_trim = no_trim
        self.joiner = "\\\\n" if escape_new_line else ""

    def convert(self, text: str) -> str | None:
        lines = java_split(self._lines, text)
        if not self.no_trim:
            lines = [java_trim(line) for line in lines]
        return self.joiner.join(lines) + NEW_LINE


class CsvToJson:
    name = "CSVTOJSON"

    def __init__(self, field_names: Sequence[str], delimiter: re.Pattern[str], printer: Printer) -> None:
        self.field_names = list(field_names)
        self.delimiter = delimiter
        self.printer = printer

    def convert(self, text: str) -> str | None:
        columns = java_split(self.delimiter, _strip_newline(text))
        record = {name: (columns[i] if i < len(columns) else None) for i, name in enumerate(self.field_names)}
        return self.printer(record) + NEW_LINE


# Building blocks of the Java agent's PatternConstants.  Java's "." stops at any line terminator,
# Python's only at "\n"; ANYDATA spells Java's meaning out so CRLF lines behave the same.
_ANY = r"[^\n\r\u0085\u2028\u2029]*"
_INT = r"(?:[+-]?(?:[0-9]+))"
_POSINT = r"(?:[1-9][0-9]*)"
_NONNEGINT = r"(?:[0-9]+)"
_WORD = r"\w+"
_NOQUOTE = r'[^"]+'
_IP = r"(?:[\d\.]+)"
_HOSTNAME = r"(?:[\w\-]+)(?:\.(?:[\w\-]+))*(?:\.?|\b)"
_IPORHOST = f"(?:{_HOSTNAME}|{_IP})"
_URIHOST = f"(?:{_IPORHOST}(?::{_POSINT})?)"
_USER = r"(?:[a-zA-Z0-9._-]+)"
_MONTHDAY = r"(?:(?:0[1-9])|(?:[12][0-9])|(?:3[01])|[1-9])"
_DAY = r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)"
_MONTH = (r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?"
          r"|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b")
_YEAR = r"(?:[1-9]\d*)"
_HOUR = r"(?:2[0123]|[01]?[0-9])"
_MINUTE = r"(?:[0-5][0-9])"
_SECOND = r"(?:(?:[0-5]?[0-9]|60)(?:[:\.,][0-9]+)?)"
_TIME = f"(?:{_HOUR}:{_MINUTE}:{_SECOND})"
_HTTPDATE = rf"(?:{_MONTHDAY}/{_MONTH}/{_YEAR}:{_TIME}\s{_INT})"
_ERRORLOG_TIMESTAMP = rf"(?:{_DAY}\s+{_MONTH}\s+{_MONTHDAY}\s+{_TIME}\s+{_YEAR})"
_SYSLOG_TIMESTAMP = rf"(?:{_MONTH}\s+{_MONTHDAY}\s+{_TIME})"
_RFC3339 = r"(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?:Z|(?:[-+]\d{2}:\d{2}))"
_SYSLOG_FACILITY = f"<{_NONNEGINT}.{_NONNEGINT}>"
_SYSLOG_PROG = rf"([\w\._/%-]+)(?:\[({_POSINT})\])?"
_COMMON_APACHE = (rf'^({_IPORHOST}) ({_USER}) ({_USER}) \[({_HTTPDATE})\] "({_NOQUOTE})" '
                  rf"({_INT}|\-) ({_INT}|\-)")
_COMBINED_APACHE = rf'{_COMMON_APACHE} "({_NOQUOTE})" "({_NOQUOTE})"'
_APACHE_ERROR = (rf"^\[({_ERRORLOG_TIMESTAMP})\] \[(?:({_WORD}):)?({_WORD})\] "
                 rf"\[pid ({_NONNEGINT})(?::tid ({_NONNEGINT}))?\] \[client ({_URIHOST})\] ({_ANY})")
_SYSLOG = rf"^({_SYSLOG_TIMESTAMP}) (?:{_SYSLOG_FACILITY} )?({_USER}) {_SYSLOG_PROG}: ({_ANY})"
_RFC3339_SYSLOG = rf"^({_RFC3339}) (?:{_SYSLOG_FACILITY} )?({_USER}) {_SYSLOG_PROG}: ({_ANY})"

#: format -> (pattern, default field names, whether "-" means null)
LOG_FORMATS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "COMMONAPACHELOG": (_COMMON_APACHE + _ANY,
                        ("host", "ident", "authuser", "datetime", "request", "response", "bytes"), True),
    "COMBINEDAPACHELOG": (_COMBINED_APACHE + _ANY,
                          ("host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer",
                           "agent"), True),
    "APACHEERRORLOG": (_APACHE_ERROR,
                       ("timestamp", "module", "severity", "processid", "threadid", "client", "message"), True),
    "SYSLOG": (_SYSLOG, ("timestamp", "hostname", "program", "processid", "message"), False),
    "RFC3339SYSLOG": (_RFC3339_SYSLOG, ("timestamp", "hostname", "program", "processid", "message"), False),
}
#: Names people use for the syslog formats; the Java agent knows only SYSLOG (RFC 3164) and RFC3339SYSLOG.
LOG_FORMAT_ALIASES = {"RFC3164SYSLOG": "SYSLOG"}


class LogToJson:
    name = "LOGTOJSON"

    def __init__(self, pattern: re.Pattern[str], fields: Sequence[str], dash_is_null: bool, printer: Printer) -> None:
        self.pattern = pattern
        self.fields = list(fields)
        self.dash_is_null = dash_is_null
        self.printer = printer

    def convert(self, text: str) -> str | None:
        match = self.pattern.fullmatch(_strip_newline(text))
        if match is None:
            return None
        values = match.groups()
        if self.dash_is_null:
            values = tuple(None if value == "-" else value for value in values)
        return self.printer(dict(zip(self.fields, values, strict=True))) + NEW_LINE


class AddMetadata:
    name = "ADDMETADATA"

    def __init__(self, metadata: Any, timestamp: bool, printer: Printer,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.metadata = metadata
        self.timestamp = timestamp
        self.printer = printer
        self.clock = clock

    def convert(self, text: str) -> str | None:
        record: dict[str, Any] = {}
        if self.timestamp:
            now = self.clock().astimezone(dt.UTC)
            record["ts"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        record["metadata"] = self.metadata
        record["data"] = _strip_newline(text)
        return self.printer(record) + NEW_LINE


class AddBrackets:
    name = "ADDBRACKETS"

    def convert(self, text: str) -> str | None:
        return "{" + text + "}"


Ec2MetadataFetcher = Callable[[], dict[str, Any] | None]


class AddEc2Metadata:
    """Merges the instance's identity and tags into a JSON record (agent.ec2_metadata says what and how).

    The metadata is fetched off the event loop by :meth:`refresh` (the flow calls it at start and every
    ``metadataTTL``); ``convert`` only reads what was fetched.  Off EC2 the records pass through
    unchanged, with one warning instead of the Java agent's warning per record.
    """

    name = "ADDEC2METADATA"

    def __init__(self, ttl: float, printer: Printer, fetcher: Ec2MetadataFetcher = fetch_ec2_metadata) -> None:
        self.ttl = ttl
        self.printer = printer
        self.fetcher = fetcher
        self.metadata: dict[str, Any] | None = None
        self._warned = False

    async def refresh(self) -> None:
        metadata = await asyncio.to_thread(self.fetcher)
        if metadata:
            self.metadata = metadata
        elif self.metadata is None and not self._warned:
            self._warned = True
            log.warning("ADDEC2METADATA: no EC2 instance metadata (not on EC2, or IMDS unreachable); "
                        "records are sent without it")

    def convert(self, text: str) -> str | None:
        if not self.metadata:
            return text
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise ConversionError(f"ADDEC2METADATA needs JSON input: {exc}") from None
        if not isinstance(record, dict):
            raise ConversionError("ADDEC2METADATA needs a JSON object as input")
        record.update(self.metadata)
        return self.printer(record) + NEW_LINE


class ConverterChain:
    """The flow's converters in order.  ``convert`` returns None for a dropped record and raises
    ConversionError when a converter fails (the caller then sends the raw record)."""

    def __init__(self, converters: Sequence[Converter]) -> None:
        self.converters = list(converters)

    @property
    def names(self) -> list[str]:
        return [converter.name for converter in self.converters]

    def refreshers(self) -> list[AddEc2Metadata]:
        return [c for c in self.converters if isinstance(c, AddEc2Metadata)]

    def convert(self, data: bytes) -> bytes | None:
        text: str | None = _decode(data)
        for converter in self.converters:
            assert text is not None
            try:
                text = converter.convert(text)
            except ConversionError:
                raise
            except Exception as exc:  # a converter bug must not stop the flow: the raw record is sent
                raise ConversionError(f"{converter.name} failed: {exc!r}") from exc
            if text is None:
                return None
        assert text is not None
        return text.encode()


# --- building from dataProcessingOptions ---------------------------------------------------------

_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "SINGLELINE": ("parseOptions",),
    "CSVTOJSON": ("customFieldNames", "delimiter", "jsonFormat"),
    "LOGTOJSON": ("logFormat", "matchPattern", "customFieldNames", "jsonFormat"),
    "ADDMETADATA": ("metadata", "timestamp", "jsonFormat"),
    "ADDEC2METADATA": ("metadataTTL", "jsonFormat", "logFormat", "matchPattern", "customFieldNames"),
    "ADDBRACKETS": (),
}
_UNSUPPORTED_OPTIONS = {"USINGPLUGGIN": "it loads a Java class, which a Python agent cannot run"}


def build_converter_chain(options: Sequence[Any], error: ErrorFactory) -> ConverterChain | None:
    """Validate a flow's ``dataProcessingOptions`` and build its chain (None when there are none)."""
    converters = [_build_converter(index, option, error) for index, option in enumerate(options)]
    return ConverterChain(converters) if converters else None


def _build_converter(index: int, option: Any, error: ErrorFactory) -> Converter:
    if not isinstance(option, dict):
        raise error(index, "optionName", "each dataProcessingOptions entry must be an object with an optionName")
    name = option.get("optionName")
    if name is None:
        raise error(index, "optionName", "is required")
    if isinstance(name, str) and name in _UNSUPPORTED_OPTIONS:
        raise error(index, "optionName", f"{name} is not supported: {_UNSUPPORTED_OPTIONS[name]}")
    if not isinstance(name, str) or name not in _OPTION_KEYS:  # a JSON list or object is not hashable
        raise error(index, "optionName", f"{name!r} is not one of {', '.join(_OPTION_KEYS)}")
    allowed = ("optionName", *_OPTION_KEYS[name])
    for key in option:
        if key not in allowed:
            raise error(index, key, f"unknown key for {name} (known: {', '.join(allowed[1:]) or 'none'})")
    printer = _printer(index, option, error)
    if name == "SINGLELINE":
        parse_options = _string_list(index, option, "parseOptions", error, required=False)
        for parse_option in parse_options:
            if parse_option not in ("NO_TRIM", "ESCAPE_NEW_LINE"):
                raise error(index, "parseOptions", f"{parse_option!r} is not one of NO_TRIM, ESCAPE_NEW_LINE")
        return SingleLine("NO_TRIM" in parse_options, "ESCAPE_NEW_LINE" in parse_options)
    if name == "CSVTOJSON":
        fields = _string_list(index, option, "customFieldNames", error, required=True)
        delimiter = _regex(index, option, "delimiter", error) or compile_java_regex(",")
        return CsvToJson(fields, delimiter, printer)
    if name == "LOGTOJSON":
        return _build_log_to_json(index, option, printer, error)
    if name == "ADDMETADATA":
        stamp = option.get("timestamp", False)
        if isinstance(stamp, str):
            stamp = stamp.lower() == "true"
        elif not isinstance(stamp, bool):
            raise error(index, "timestamp", f"expected \"true\" or \"false\", got {stamp!r}")
        return AddMetadata(option.get("metadata"), stamp, printer)
    if name == "ADDEC2METADATA":
        ttl = option.get("metadataTTL", 3600)
        if isinstance(ttl, str) and re.fullmatch(r"[0-9]+", ttl):
            ttl = int(ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise error(index, "metadataTTL", f"expected a positive number of seconds, got {ttl!r}")
        return AddEc2Metadata(float(ttl), printer)
    return AddBrackets()


def _printer(index: int, option: dict[str, Any], error: ErrorFactory) -> Printer:
    json_format = option.get("jsonFormat", "COMPACT")
    if json_format == "COMPACT":
        return write_compact
    if json_format == "PRETTYPRINT":
        return write_pretty
    raise error(index, "jsonFormat", f"{json_format!r} is not one of COMPACT, PRETTYPRINT")


def _string_list(index: int, option: dict[str, Any], key: str, error: ErrorFactory, *, required: bool) -> list[str]:
    value = option.get(key)
    if value is None:
        if required:
            raise error(index, key, f"is required for {option['optionName']}")
        return []
    if not isinstance(value, list) or not all(isinstance(item, str | int | float) for item in value):
        raise error(index, key, f"expected a list of strings, got {value!r}")
    return [str(item) for item in value]


def _regex(index: int, option: dict[str, Any], key: str, error: ErrorFactory) -> re.Pattern[str] | None:
    value = option.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise error(index, key, f"expected a regular expression string, got {value!r}")
    try:
        return compile_java_regex(value)
    except re.error as exc:
        raise error(index, key, f"not a valid regular expression: {exc}") from None


def _build_log_to_json(index: int, option: dict[str, Any], printer: Printer, error: ErrorFactory) -> LogToJson:
    log_format = option.get("logFormat")
    if log_format is None:
        raise error(index, "logFormat", f"is required for LOGTOJSON (one of {', '.join(LOG_FORMATS)})")
    if isinstance(log_format, str):
        log_format = LOG_FORMAT_ALIASES.get(log_format, log_format)
    if not isinstance(log_format, str) or log_format not in LOG_FORMATS:
        raise error(index, "logFormat", f"{log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    default_pattern, default_fields, dash_is_null = LOG_FORMATS[log_format]
    custom_fields = _string_list(index, option, "customFieldNames", error, required=False) or None
    match_pattern = _regex(index, option, "matchPattern", error)
    if match_pattern is not None:
        if custom_fields is None:
            raise error(index, "customFieldNames", "is required when matchPattern is set")
        if match_pattern.groups != len(custom_fields):
            raise error(index, "customFieldNames",
                        f"names {len(custom_fields)} fields but matchPattern has {match_pattern.groups} capturing "
                        "groups; every line would be dropped")
        return LogToJson(match_pattern, custom_fields, dash_is_null, printer)
    if custom_fields is not None and len(custom_fields) != len(default_fields):
        raise error(index, "customFieldNames",
                    f"names {len(custom_fields)} fields but {log_format} has {len(default_fields)} "
                    f"({', '.join(default_fields)}); rename all of them or set matchPattern")
    return LogToJson(re.compile(default_pattern, re.ASCII), custom_fields or default_fields, dash_is_null, printer)
