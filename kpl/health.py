"""Health and readiness checks that a daemon registers, for ``/healthz`` and ``/readyz``.

A daemon knows what "alive" and "ready" mean for itself; the HTTP endpoint (kpl.observability) does
not.  So the daemon registers named checks here, and the endpoint only asks them::

    checks = HealthChecks()
    checks.add_liveness("flows running", lambda: None if agent_ok() else "a flow stopped")
    checks.add_readiness("delivering", agent.delivery_problem)     # None when fine, else a short reason

A check is a callable without arguments that returns ``None`` when all is well, or a short reason (one
line, for an operator reading a probe's output) when not.  It may be a coroutine function; it then
runs on the daemon's event loop with a time limit.  A check that raises, or that does not answer
within its limit, fails with a reason that says so: a broken check must never look healthy.

Checks run on the event loop (the endpoint serves from it), so they read the daemon's state without
locks; they must be quick and must not block.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from kpl.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["CheckOutcome", "CheckResult", "HealthChecks", "HealthReport"]

#: What a check returns: None when healthy, else a short reason.
CheckResult = str | None
Check = Callable[[], CheckResult] | Callable[[], Awaitable[CheckResult]]
Kind = Literal["liveness", "readiness"]

#: The longest an asynchronous check may take before it counts as failed.
DEFAULT_CHECK_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    name: str
    reason: CheckResult

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome of every check of one kind, in registration order."""

    kind: Kind
    outcomes: tuple[CheckOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    @property
    def failures(self) -> tuple[CheckOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if not outcome.ok)

    def render(self, verbose: bool = False) -> str:
        """The body of the HTTP answer: ``ok``, or one line per failing check (every check if verbose)."""
        if not verbose:
            if self.ok:
                return "ok\n"
            return "".join(f"{outcome.name}: {outcome.reason}\n" for outcome in self.failures)
        lines = [f"[+] {o.name}: ok" if o.ok else f"[-] {o.name}: {o.reason}" for o in self.outcomes]
        lines.append(f"{self.kind} {'ok' if self.ok else 'failed'}")
        return "\n".join(lines) + "\n"


class HealthChecks:
    """Named liveness and readiness checks.  Names are unique per kind."""

    def __init__(self, *, timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
        if timeout <= 0:
            raise InvalidArgumentError(f"timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self._checks: dict[Kind, dict[str, Check]] = {"liveness": {}, "readiness": {}}

    def add_liveness(self, name: str, check: Check) -> None:
        """``/healthz``: failing means the process should be restarted."""
        self._add("liveness", name, check)

    def add_readiness(self, name: str, check: Check) -> None:
        """``/readyz``: failing means the process is not doing its work now (it may recover by itself)."""
        self._add("readiness", name, check)

    def remove(self, kind: Kind, name: str) -> None:
        self._checks[kind].pop(name, None)

    def names(self, kind: Kind) -> tuple[str, ...]:
        return tuple(self._checks[kind])

    def _add(self, kind: Kind, name: str, check: Check) -> None:
        if not name or "\n" in name:
            raise InvalidArgumentError(f"a check needs a one-line name, got {name!r}")
        if not callable(check):
            raise ArgumentTypeError(f"check {name!r} must be callable, got {type(check).__name__}")
        if name in self._checks[kind]:
            raise InvalidArgumentError(f"a {kind} check named {name!r} is already registered")
        self._checks[kind][name] = check

    async def evaluate(self, kind: Kind) -> HealthReport:
        """Run every check of ``kind`` (synchronous ones inline, asynchronous ones concurrently)."""
        checks = list(self._checks[kind].items())
        reasons = await asyncio.gather(*(self._run(name, check) for name, check in checks))
        return HealthReport(kind, tuple(CheckOutcome(name, reason)
                                        for (name, _), reason in zip(checks, reasons, strict=True)))

    async def _run(self, name: str, check: Check) -> CheckResult:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout)
        except TimeoutError:
            return f"the check did not answer within {self.timeout:g} s"
        except Exception as exc:
            return f"the check raised {type(exc).__name__}: {exc}"
        if result is None:
            return None
        reason = " ".join(str(result).split())  # one line, whatever the check returned
        return reason or "failed (no reason given)"
