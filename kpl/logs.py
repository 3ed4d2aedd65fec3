"""Logging for libraries that are guests in other people's programs, and for the toolkit's own programs.

Library modules call :func:`get_logger` (never ``structlog.get_logger``): it returns a structlog
logger bound to the standard ``logging`` logger of the same name (``kpl.producer``, ``kcl.worker``,
``agent.flow``...), independent of any global structlog configuration the application has or has not
made.  Unconfigured, structlog prints to stdout; a library must never do that.  So events go to the
stdlib logger, the packages add only a ``NullHandler``, and whatever the application configured for
``logging`` decides what is shown: nothing below WARNING by default.

The key=value context of an event is kept twice: rendered into the message (``shard map updated
stream=clicks shards=4``), so a plain ``logging.basicConfig`` shows it, and as attributes of the
``LogRecord`` (through ``extra``), so structured handlers receive the fields.  The whole event is also
attached under :data:`EVENT_ATTRIBUTE`, which the programs' formatter reads back to render JSON lines.

The programs (``kcl-worker``, ``kinesis-agent``, examples, benchmarks) call :func:`configure_logging`
once at start-up: console lines on a TTY, one JSON object per line anywhere else (systemd,
containers, CI), so log shippers parse it without regexes.  Records from other libraries (botocore,
aiohttp, pynamodb) are rendered the same way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from kpl.errors import ConfigurationError

__all__ = ["EVENT_ATTRIBUTE", "configure_logging", "get_logger"]

#: The ``LogRecord`` attribute that carries a toolkit event's dict (event name and its fields).
EVENT_ATTRIBUTE = "kinesis_toolkit_event"

# LogRecord's own attribute names: a field with one of these names cannot travel as ``extra``
# (``Logger.makeRecord`` refuses to overwrite them); it still reaches handlers in the message and in
# the event dict.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

#: Arguments a log call may pass through to ``Logger._log``; everything else is event context.
_PASSTHROUGH = ("exc_info", "stack_info")


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return repr(text) if isinstance(value, str) else text
    return text


def _to_stdlib_call(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """structlog's last processor: turn the event dict into the arguments of a stdlib logging call."""
    kwargs: dict[str, Any] = {}
    for name in _PASSTHROUGH:
        if name in event_dict:
            kwargs[name] = event_dict.pop(name)
    event = str(event_dict.pop("event", ""))
    message = " ".join([event, *(f"{key}={_format_value(value)}" for key, value in event_dict.items())])
    extra = {key: value for key, value in event_dict.items() if key not in _RECORD_ATTRIBUTES}
    extra[EVENT_ATTRIBUTE] = {"event": event, **event_dict}
    kwargs["extra"] = extra
    # The frames between the caller and Logger._log are structlog's; name the caller in the record.
    kwargs["stacklevel"] = 4
    return (message,), kwargs


_LIBRARY_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,  # first: a disabled level costs one isEnabledFor() call
    structlog.contextvars.merge_contextvars,
    _to_stdlib_call,
]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """The logger a toolkit module logs through: structlog's API over ``logging.getLogger(name)``."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_LIBRARY_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return logger


# --- programs only -----------------------------------------------------------------------------------

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

#: Chatty third-party loggers that only matter when something is wrong.
_QUIET_LOGGERS = ("botocore", "aiobotocore", "boto3", "urllib3", "aiohttp", "pynamodb", "asyncio")


def _restore_toolkit_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """For a toolkit record, render the original event and fields instead of the flattened message."""
    record = event_dict.get("_record")
    event = getattr(record, EVENT_ATTRIBUTE, None)
    if event is not None:
        event_dict.update(event)
    if record is not None and record.exc_info and "exc_info" not in event_dict:
        event_dict["exc_info"] = record.exc_info
    return event_dict


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ConfigurationError(f"unknown log level {level!r}: use debug, info, warning or error")
    return number


def configure_logging(
    level: str | int = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    file: str | os.PathLike[str] | None = None,
) -> None:
    """Route all logging to ``file`` (appended to) or ``stream`` (stderr by default).  For programs' entry
    points only: a library never calls it.

    ``json=None`` chooses by the destination: console rendering on a TTY, JSON lines otherwise (a file
    gets JSON lines).  Raises ConfigurationError (a ValueError) for an unknown level and OSError when ``file``
    cannot be opened.
    """
    threshold = _level_number(level)
    handler: logging.StreamHandler[Any]
    if file is not None:
        handler = logging.FileHandler(file, mode="a", encoding="utf-8")
        tty = False
    else:
        out = stream or sys.stderr
        handler = logging.StreamHandler(out)
        tty = out.isatty()
    use_json = not tty if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=tty)
    )

    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                _restore_toolkit_event,
                *_SHARED_PROCESSORS,
                structlog.stdlib.add_logger_name,
                structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))
