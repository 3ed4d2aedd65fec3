"""The systemd template unit in examples/kcl: hardened, a stop timeout above the graceful shutdown, valid."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcl.config import WorkerConfig

UNIT = Path(__file__).resolve().parents[2] / "examples" / "kcl" / "kcl-worker@.service"


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_the_unit_is_hardened_and_outlasts_a_graceful_stop() -> None:
    service = service_section()
    assert service["User"] == "kcl-worker"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"].split() == ["78"]
    assert int(service["TimeoutStopSec"]) > WorkerConfig().graceful_shutdown_timeout_ms / 1000
    assert "--config /etc/kcl-worker/%i.properties" in service["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    command = str(Path(sys.executable).parent / "kcl-worker")
    unit = tmp_path / "kcl-worker@click-counter.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/kcl-worker", command))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert verify.returncode == 0, verify.stderr
    assert str(unit) not in verify.stderr + verify.stdout, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                              text=True, timeout=60, check=False)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    if level is None:
        pytest.skip(f"this systemd-analyze cannot rate units offline: {security.stderr.strip()[:200]}")
    assert float(level.group(1)) <= 2.0, security.stdout
