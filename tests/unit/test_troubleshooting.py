"""docs/troubleshooting.md lists every warning and error the toolkit logs, and the shared start-up errors.

A static scan of kpl/, kcl/ and agent/ finds every ``log.warning/error/exception/critical("event", ...)``
(also through a bound logger, ``self._log.error(...)``)
and every call that passes a level ("warning"/"error") followed by an event string (agent.sinks logs
through such a helper).  Each event must appear on the page verbatim.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"
LEVELS = {"warning", "error", "exception", "critical"}


def _is_logger(node: ast.expr) -> bool:
    """``log`` (a module's logger) or ``self._log``/``self.log`` (one bound with context)."""
    return ((isinstance(node, ast.Name) and node.id == "log")
            or (isinstance(node, ast.Attribute) and node.attr in ("log", "_log")))


def logged_events() -> dict[str, str]:
    """event -> where it is logged."""
    events: dict[str, str] = {}
    for package in ("kpl", "kcl", "agent"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in LEVELS and _is_logger(func.value):
                    assert node.args and isinstance(node.args[0], ast.Constant), f"{where}: not a constant event"
                    events[str(node.args[0].value)] = where
                args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
                for level, event in itertools.pairwise(args):
                    if level in ("warning", "error") and isinstance(event, str) and len(event) > 20:
                        events[event] = where
    return events


def test_every_logged_warning_and_error_is_on_the_page() -> None:
    events = logged_events()
    assert "sending failed; retrying with backoff" in events  # found through agent.sinks' helper
    assert "lease lost" in events
    assert "record processor failed on a batch" in events  # through a bound logger (self._log)
    text = PAGE.read_text()
    missing = {event: where for event, where in events.items() if f"`{event}`" not in text}
    assert not missing, f"add these to docs/troubleshooting.md with their fix: {missing}"


def test_the_shared_start_up_errors_are_on_the_page() -> None:
    text = PAGE.read_text()
    for fragment in ("no AWS region configured", "is not a valid region name", "is not an AWS region",
                     "does not exist", "no AWS credentials found", "AWS credentials cannot be loaded",
                     "the AWS configuration cannot be read", "the port is already in use",
                     "permission denied (ports below 1024 need privileges)", "this host has no such address",
                     "--metrics-address needs a port"):
        assert fragment in text, fragment
    sources = (ROOT / "kpl" / "aws.py").read_text() + (ROOT / "kpl" / "observability.py").read_text()
    sources += (ROOT / "agent" / "cli.py").read_text()
    for fragment in ("no AWS region configured", "is not a valid region name", "the port is already in use",
                     "this host has no such address", "--metrics-address needs a port"):
        assert fragment in sources, f"the page quotes {fragment!r}, which the code no longer says"
