"""Reading agent.json's format: the habits of Jackson's lenient parsing, and errors that name the key.

The Java agent parses agent.json with Jackson's ALLOW_COMMENTS and reads every value leniently: numbers
and booleans may be written as strings, and an empty string means "not set" (the installer's own
agent.json ships ``"kinesis.endpoint": ""``).  Files written on Windows often start with a UTF-8 byte
order mark, which Jackson skips; so does this reader.  :class:`Reader` checks one JSON object against a
table of :class:`Setting` and raises one :class:`AgentConfigurationError` naming the file and the key.
Values are converted and checked by the toolkit's one settings routine (:mod:`kpl.settings`), with
Jackson's lenient booleans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentConfigurationError
from kpl import settings
from kpl.errors import ConfigurationError

if TYPE_CHECKING:
    from agent.config_types import Destination

@dataclass(frozen=True, slots=True, kw_only=True)
class Setting(settings.Setting):
    """One agent.json key: the shared descriptor (kpl.settings) plus what only agent.json has.

    ``field`` names the AgentConfig/FlowConfig field that carries the value, or is empty when the value
    feeds something else (a client configuration, a derived value) or has no effect.
    """

    default: Any = None
    #: Why the key is accepted although it changes nothing (Java thread-pool knobs and the like).
    no_effect: str | None = None
    #: Only valid on flows of this destination.
    only_for: Destination | None = None
    #: A credential: ``--check-config`` shows only its last four characters (as ``aws configure list``).
    secret: bool = False
    #: An empty string means "not set" (the Java agent's ``Strings.isNullOrEmpty`` checks).
    empty_is_unset: bool = False


#: Jackson's lenient booleans, which agent.json files rely on.
AGENT_BOOLEANS: settings.BoolWords = (frozenset({"true", "yes", "t", "y", "1"}),
                                      frozenset({"false", "no", "f", "n", "0"}))


# --- reading the file -----------------------------------------------------------------------------


def strip_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments blanked out, leaving strings alone.

    Comments become spaces (newlines are kept) so that JSON error positions still point at the right
    line and column of the original file.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    in_string = False
    while i < n:
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                in_string = False
            i += 1
        elif char == '"':
            in_string = True
            out.append(char)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                line = text.count("\n", 0, i) + 1
                raise ValueError(f"comment opened at line {line} is never closed (missing */)")
            comment = text[i:end + 2]
            out.append(re.sub(r"[^\n]", " ", comment))
            i = end + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: a byte order mark at the start is skipped, as Jackson skips it.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AgentConfigurationError(f"{path}: configuration file not found") from None
    except PermissionError:
        raise AgentConfigurationError(
            f"{path}: permission denied reading the configuration file (the agent's user needs read access)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentConfigurationError(f"{path}: cannot read the configuration file: {exc}") from None
    try:
        document = json.loads(strip_comments(text))
    except json.JSONDecodeError as exc:
        raise AgentConfigurationError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise AgentConfigurationError(f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise AgentConfigurationError(f"{path}: the top level must be a JSON object, not {json_type(document)}")
    return document


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# --- converting values ----------------------------------------------------------------------------


class Reader:
    """Reads the values of one JSON object against a table of settings, naming keys in its errors."""

    def __init__(self, source: Path, where: str, values: Mapping[str, Any]) -> None:
        self.source = source
        self.where = where
        self.values = values

    def error(self, key: str, problem: str) -> AgentConfigurationError:
        return AgentConfigurationError(f"{self.source}: {self.where}{key}: {problem}")

    def check_keys(self, known: Sequence[str], extra_message: Mapping[str, str] | None = None) -> None:
        for key in self.values:
            if extra_message and key in extra_message:
                raise self.error(key, f"not supported: {extra_message[key]}")
            if key not in known:
                close = settings.closest(key, known, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                place = f" in {self.where.rstrip('.')}" if self.where else ""
                raise AgentConfigurationError(f"{self.source}: unknown key {key!r}{place}{hint}")

    def read(self, setting: Setting, default: Any = None) -> Any:
        key = setting.key
        raw = self.values.get(key)
        if raw is None or (raw == "" and setting.empty_is_unset):
            return setting.default if default is None else default
        value = self._convert(setting, raw)
        if value is not None:
            try:
                settings.check(setting, value, key)
            except ConfigurationError as exc:
                raise AgentConfigurationError(f"{self.source}: {self.where}{exc}") from None
        return value

    def _convert(self, setting: Setting, raw: Any) -> Any:
        if isinstance(raw, list | dict):
            expected = {"int": "an integer", "bool": "true or false"}.get(setting.kind, "a string")
            raise self.error(setting.key, f"expected {expected}, got {json_type(raw)}")
        try:
            return settings.convert(setting, raw, setting.key, AGENT_BOOLEANS)
        except ConfigurationError as exc:
            raise AgentConfigurationError(f"{self.source}: {self.where}{exc}") from None


def mask_secret(value: str) -> str:
    """``value`` as ``aws configure list`` shows a credential: sixteen stars and its last four characters.

    Values shorter than twelve characters are masked entirely, so a short test key or external id is
    never printed whole.
    """
    return "*" * 16 + (value[-4:] if len(value) >= 12 else "")
