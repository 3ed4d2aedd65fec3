"""The console scripts are installed with the package and answer --help."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", ["kcl-worker", "kinesis-agent"])
def test_console_script_help(command: str) -> None:
    script = Path(sys.executable).parent / command
    executable = str(script) if script.exists() else shutil.which(command)
    assert executable, f"{command} is not installed next to {sys.executable} nor on PATH"
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"usage: {command}" in result.stdout
