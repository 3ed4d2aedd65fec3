"""Settings tables: the one way ProducerConfig, WorkerConfig and the agent's configs declare and check settings.

A config lists each setting once, as a :class:`Setting` row: the Java key (the file format, which never
changes), the Python field, the kind of value, its range or closed set, and its unit.  Everything else
comes from that row: a file's text is turned into a value by :func:`convert` (one converter per kind),
a value is checked by :func:`check` (one routine, also run by the dataclasses' ``__post_init__`` through
:func:`validate`), and a misspelt or renamed keyword gets an :class:`UnknownSettingError` with a "did you
mean" from :func:`check_names`.

The style the tables follow: durations are ``*_ms`` integers mirroring the Java keys (``RecordTtl``,
``failoverTimeMillis``, ``maxBufferAgeMillis`` are all milliseconds); closed sets are ``enum.StrEnum``, so
the strings a file or an existing caller uses (``"none"``, ``"LATEST"``) still compare equal and are
accepted; configs are ``@dataclass(frozen=True, slots=True, kw_only=True)``.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import wraps
from typing import Any, Literal, TypeVar

from kpl.errors import ConfigurationError, UnknownSettingError

__all__ = [
    "JAVA_BOOLEANS", "BoolWords", "Kind", "Setting", "Unit", "check", "check_names", "checked_names", "closest",
    "convert", "member", "validate",
]

Kind = Literal["bool", "int", "str", "enum", "regex", "timestamp"]
Unit = Literal["", "ms", "s", "bytes"]

#: The words a boolean may be written as: (true words, false words), compared in lower case.
BoolWords = tuple[frozenset[str], frozenset[str]]
JAVA_BOOLEANS: BoolWords = (frozenset({"true"}), frozenset({"false"}))

_INTEGER = re.compile(r"[+-]?[0-9]+")
_C = TypeVar("_C", bound=type)


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its Java key, its Python field, and what values it takes."""

    key: str
    field: str
    kind: Kind
    minimum: int | None = None
    maximum: int | None = None
    #: The closed set of an ``enum`` setting.
    choices: type[enum.StrEnum] | None = None
    #: A ``str`` setting's value must match it (``re.match``); a ``timestamp`` is read from epoch seconds.
    pattern: re.Pattern[str] | None = None
    unit: Unit = ""
    #: None is a valid value (the setting is then derived from others, or off).
    optional: bool = False
    #: An ``enum`` setting's text is matched regardless of case (the MultiLangDaemon upper-cases it).
    fold_case: bool = False
    #: The field holds the key's value times this: 1000 for a key in seconds read into a ``*_ms`` field.
    #: ``minimum``/``maximum`` are in the key's unit.
    scale: int = 1

    @property
    def named(self) -> str:
        """How errors name the setting: ``record_ttl_ms (RecordTtl)``."""
        return f"{self.field} ({self.key})"


def convert(setting: Setting, raw: object, name: str, booleans: BoolWords = JAVA_BOOLEANS) -> Any:
    """A value as a file carries it (properties text, or a JSON number/boolean/string) as ``setting``'s kind.

    Only converts; :func:`check` applies the range.  Errors are ConfigurationErrors that start with ``name``.
    """
    if setting.kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
            return int(raw)
        raise ConfigurationError(f"{name}: expected an integer, got {raw!r}")
    if setting.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str | int):
            word = str(raw).strip().lower()
            if word in booleans[0]:
                return True
            if word in booleans[1]:
                return False
        raise ConfigurationError(f"{name}: expected true or false, got {raw!r}")
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, int | float | str):
        text = str(raw)
    else:
        raise ConfigurationError(f"{name}: expected a string, got {raw!r}")
    if setting.kind == "enum":
        return member(setting, text, name)
    if setting.kind == "timestamp":
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (ValueError, OverflowError, OSError):
            raise ConfigurationError(f"{name}: expected a timestamp in epoch seconds, got {raw!r}") from None
    if setting.kind == "regex":
        if not text:
            return None
        try:
            re.compile(text)
        except re.error as exc:
            raise ConfigurationError(f"{name}: not a valid regular expression: {exc}") from None
    return text


def member(setting: Setting, value: object, name: str) -> enum.StrEnum:
    """The member of ``setting``'s closed set that ``value`` (a member or its string) is."""
    choices = setting.choices
    assert choices is not None, f"{setting.key} is an enum setting without choices"
    if isinstance(value, choices):
        return value
    if isinstance(value, str):
        for item in choices:
            if value == item.value or (setting.fold_case and value.upper() == item.value.upper()):
                return item
    allowed = ", ".join(item.value for item in choices)
    raise ConfigurationError(f"{name}: {value!r} is not one of {allowed}")


def check(setting: Setting, value: object, name: str, *, scaled: bool = False) -> None:
    """Raise a ConfigurationError starting with ``name`` unless ``value`` is valid for ``setting``.

    ``scaled``: ``value`` is a field's (the key's value times ``setting.scale``), not the key's.
    """
    if value is None and setting.optional:
        return
    if setting.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigurationError(f"{name}: expected true or false, got {value!r}")
    elif setting.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name}: expected an integer, got {value!r}")
        factor = setting.scale if scaled else 1
        lowest = None if setting.minimum is None else setting.minimum * factor
        highest = None if setting.maximum is None else setting.maximum * factor
        if (lowest is not None and value < lowest) or (highest is not None and value > highest):
            lower = "" if lowest is None else str(lowest)
            upper = "" if highest is None else str(highest)
            raise ConfigurationError(f"{name}: {value} is outside the valid range {lower}..{upper}")
    elif setting.kind == "enum":
        member(setting, value, name)
    elif setting.kind == "timestamp":
        if not isinstance(value, datetime):
            raise ConfigurationError(f"{name}: expected a datetime, got {value!r}")
        if value.tzinfo is None:
            raise ConfigurationError(f"{name}: {value} must be timezone-aware")
    elif not isinstance(value, str):
        raise ConfigurationError(f"{name}: expected a string, got {value!r}")
    elif setting.pattern is not None and not setting.pattern.match(value):
        raise ConfigurationError(f"{name}: {value!r} does not match {setting.pattern.pattern}")


def validate(config: object, table: Iterable[Setting]) -> None:
    """Check every field of a frozen config named in ``table``; a closed set's string becomes its member."""
    for setting in table:
        if not setting.field:
            continue
        value = getattr(config, setting.field)
        if setting.kind == "enum" and value is not None:
            value = member(setting, value, setting.named)
            object.__setattr__(config, setting.field, value)  # frozen: only __post_init__ may do this
        check(setting, value, setting.named, scaled=True)


def closest(name: str, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The known names (keys or fields) closest to a misspelt ``name``, best first: what "did you mean" offers."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)


def check_names(names: Iterable[str], known: Collection[str], table: Iterable[Setting], where: str, *,
                renamed: Mapping[str, str] | None = None, key_hint: str = "", owner: str = "Java",
                fallback: str = "") -> None:
    """Raise UnknownSettingError (a TypeError) for the first of ``names`` not in ``known``.

    The message says what was meant: the new name of a ``renamed`` field, the Python name of a Java key
    (``RecordTtl`` is ``record_ttl_ms``, "the KPL's" with ``owner="KPL"``; ``key_hint`` is appended), or the
    closest known names.
    """
    by_key = {setting.key: setting for setting in table if setting.field}
    for name in names:
        if name in known:
            continue
        if renamed and name in renamed:
            hint = f"it is {renamed[name]!r} now (durations are *_ms, as the Java keys)"
        elif name in by_key:
            hint = f"the {owner}'s {name} is {by_key[name].field!r} here{key_hint}"
        else:
            close = closest(name, known, n=3) or closest(name.lower(), known, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else (fallback or "no such setting")
        raise UnknownSettingError(f"{where} got an unknown setting {name!r}: {hint}")


def checked_names(table: Iterable[Setting], *, renamed: Mapping[str, str] | None = None,
                  key_hint: str = "", owner: str = "Java") -> Callable[[_C], _C]:
    """Class decorator (outside ``@dataclass``): an unknown keyword to the constructor is an UnknownSettingError
    with a "did you mean", instead of Python's bare TypeError."""
    rows = tuple(table)

    def decorate(cls: _C) -> _C:
        init: Callable[..., None] = vars(cls)["__init__"]
        known = frozenset(item.name for item in fields(cls))
        where = f"{cls.__name__}()"

        @wraps(init)
        def __init__(self: object, *args: Any, **kwargs: Any) -> None:
            if not known.issuperset(kwargs):
                check_names(kwargs, known, rows, where, renamed=renamed, key_hint=key_hint, owner=owner)
            init(self, *args, **kwargs)

        type.__setattr__(cls, "__init__", __init__)
        return cls

    return decorate
