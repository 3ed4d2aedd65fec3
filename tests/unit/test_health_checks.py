"""kpl.health: registering checks and rendering their outcome (no HTTP here)."""

from __future__ import annotations

import asyncio

import pytest

from kpl.health import HealthChecks


async def test_outcomes_in_registration_order_and_one_line_reasons() -> None:
    checks = HealthChecks()
    checks.add_readiness("a", lambda: None)
    checks.add_readiness("b", lambda: "waiting\nfor  leases")

    async def c() -> str | None:
        await asyncio.sleep(0)
        return ""

    checks.add_readiness("c", c)
    report = await checks.evaluate("readiness")
    assert [o.name for o in report.outcomes] == ["a", "b", "c"]
    assert not report.ok
    assert report.render() == "b: waiting for leases\nc: failed (no reason given)\n"
    assert report.render(verbose=True) == ("[+] a: ok\n[-] b: waiting for leases\n[-] c: failed (no reason given)\n"
                                           "readiness failed\n")
    assert (await checks.evaluate("liveness")).render() == "ok\n"
    checks.remove("readiness", "b")
    checks.remove("readiness", "c")
    assert (await checks.evaluate("readiness")).ok


def test_names_are_unique_per_kind_and_checks_callable() -> None:
    checks = HealthChecks()
    checks.add_liveness("loop", lambda: None)
    checks.add_readiness("loop", lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        checks.add_liveness("loop", lambda: None)
    with pytest.raises(ValueError, match="one-line name"):
        checks.add_liveness("two\nlines", lambda: None)
    with pytest.raises(TypeError):
        checks.add_liveness("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HealthChecks(timeout=0)
