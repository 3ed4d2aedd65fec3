"""Logging configuration for the toolkit's programs, in one place.

Library modules only ever call ``structlog.get_logger(__name__)``; the programs (``kcl-worker``,
``kinesis-agent``, examples, benchmarks) call :func:`configure_logging` once at start-up.  On a TTY the
output is readable console lines; anywhere else (systemd, containers, CI) it is one JSON object per
line, so log shippers parse it without regexes.  Records from the standard ``logging`` module
(botocore, aiohttp, pynamodb) are rendered the same way.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

#: Chatty third-party loggers that only matter when something is wrong.
_QUIET_LOGGERS = ("botocore", "aiobotocore", "boto3", "urllib3", "aiohttp", "pynamodb", "asyncio")


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    return number


def configure_logging(level: str | int = "info", *, json: bool | None = None, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr by default).

    ``json=None`` chooses by the stream: console rendering on a TTY, JSON lines otherwise.
    """
    out = stream or sys.stderr
    use_json = not out.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    threshold = _level_number(level)

    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED_PROCESSORS, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))
