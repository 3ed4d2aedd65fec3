"""Reaching the LocalStack that ``localstack/ctl.py`` runs, from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CTL = REPO / "localstack" / "ctl.py"

FAULT_VARIABLES = (
    "KINESIS_ERROR_PROBABILITY",
    "DYNAMODB_ERROR_PROBABILITY",
    "DYNAMODB_READ_ERROR_PROBABILITY",
    "DYNAMODB_WRITE_ERROR_PROBABILITY",
)


def port() -> int:
    return int(os.environ.get("LOCALSTACK_PORT", "4566"))


def endpoint() -> str:
    return f"http://127.0.0.1:{port()}"


def ensure_running() -> str:
    """Start LocalStack unless a healthy one is already up; it is left running for the next run."""
    result = subprocess.run(
        [sys.executable, str(CTL), "start", "--port", str(port())],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"LocalStack did not start:\n{result.stderr}{result.stdout}")
    return endpoint()


def set_config(variable: str, value: object) -> None:
    """Change a LocalStack setting at run time (needs ENABLE_CONFIG_UPDATES=1, which ctl.py sets)."""
    request = urllib.request.Request(
        f"{endpoint()}/_localstack/config",
        data=json.dumps({"variable": variable, "value": value}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"setting {variable}={value!r} failed: HTTP {response.status}")


class FaultInjector:
    """Sets LocalStack's error-probability switches and puts them back to 0 afterwards."""

    def __init__(self) -> None:
        self._touched: set[str] = set()

    def set(self, **probabilities: float) -> None:
        for variable, probability in probabilities.items():
            if variable not in FAULT_VARIABLES:
                raise ValueError(f"{variable} is not a fault-injection variable ({', '.join(FAULT_VARIABLES)})")
            set_config(variable, float(probability))
            self._touched.add(variable)

    def reset(self) -> None:
        for variable in sorted(self._touched):
            set_config(variable, 0.0)
        self._touched.clear()
