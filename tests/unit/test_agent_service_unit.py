"""The systemd unit in examples/agent: hardened, and valid for systemd (checked by systemd-analyze when present)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "examples" / "agent" / "kinesis-agent.service"


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_the_unit_is_hardened_and_keeps_its_state_writable() -> None:
    service = service_section()
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"  # everything read-only...
    assert service["StateDirectory"] == "aws-kinesis-agent"  # ...but /var/lib/aws-kinesis-agent (checkpoints)
    assert service["LogsDirectory"] == "aws-kinesis-agent"  # ...and /var/log/aws-kinesis-agent (-l)
    assert service["StateDirectoryMode"] == "0700"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["CapabilityBoundingSet"] == ""  # no capability at all
    assert service["AmbientCapabilities"] == ""
    assert service["User"] != "root"
    assert service["RestartPreventExitStatus"].split() == ["73", "78"]
    # Reading the shipped logs is the user's own permission: the comment says how to grant it.
    text = UNIT.read_text()
    assert "setfacl -R -d -m u:aws-kinesis-agent-user:rX" in text
    assert "#SupplementaryGroups=adm" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # ExecStart must name an executable that exists: point it at this checkout's kinesis-agent.
    command = str(Path(sys.executable).parent / "kinesis-agent")
    unit = tmp_path / "kinesis-agent.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/kinesis-agent", command))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert verify.returncode == 0, verify.stderr
    # systemd ignores unknown keys and bad values with a warning only: there must be none.
    assert str(unit) not in verify.stderr + verify.stdout, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                              text=True, timeout=60, check=False)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    if level is None:
        pytest.skip(f"this systemd-analyze cannot rate units offline: {security.stderr.strip()[:200]}")
    assert float(level.group(1)) <= 2.0, security.stdout  # 1.8 ("OK") with systemd 252
