"""The README's promise for a second run: nothing is reinstalled and LocalStack is ready within a minute."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support import localstack

REPO = Path(__file__).resolve().parents[2]


def test_second_run_reinstalls_nothing_and_localstack_is_ready_within_a_minute() -> None:
    # `make -q` exits 0 only when the target is up to date: the project venv would not be rebuilt.
    assert subprocess.run(["make", "-q", "install"], cwd=REPO, check=False).returncode == 0
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(localstack.CTL), "start", "--port", str(localstack.port())],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    assert "creating LocalStack venv" not in done.stderr and "installing" not in done.stderr, done.stderr
