"""Can the toolkit be installed beside the boto3 an application already has?  Run by ``make install-check``.

Applications pin boto3; each aiobotocore release pins botocore to a narrow range and each boto3 release
pins botocore to its own patch level, so the toolkit installs beside an application's boto3 only if our
aiobotocore range holds a release on that boto3's botocore.  This resolves, with pip and nothing installed
(``pip install --dry-run --ignore-installed``), the runtime dependencies in pyproject.toml together with:

* ``boto3>=1.35,<1.36``: an older boto3 that many applications still pin;
* ``boto3`` unconstrained: pip then picks the newest boto3 that the newest aiobotocore release allows.

It fails when either does not resolve, or when the second does not pick the newest aiobotocore on the
index (our range would then keep users from the newest boto3 they could otherwise have).  A boto3 newer
than any aiobotocore release allows is reported, not failed: only an aiobotocore release can lift that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OLDER_BOTO3 = "boto3>=1.35,<1.36"
TIMEOUT = 180
#: Older pips backtrack for more than ten minutes over boto3 and aiobotocore releases; `make install` upgrades.
MIN_PIP = (25, 1)


def runtime_requirements() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def resolve(requirements: list[str], *pip_options: str) -> tuple[dict[str, Any], float]:
    """pip's resolution of ``requirements`` for this interpreter: {name: install item of the report}."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--disable-pip-version-check", "--report", str(report), *pip_options, *requirements]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"[install-check] FAILED: {' '.join(requirements)} did not resolve within {TIMEOUT} s "
                             "(pip backtracking through releases)") from None
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "is ignored: it is neither" not in line]
            raise SystemExit(f"[install-check] FAILED: {' '.join(requirements)} does not resolve:\n"
                             + "\n".join(errors[-25:]))
        items = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower(): item for item in items}, time.monotonic() - started


def versions(resolved: dict[str, Any]) -> str:
    return ", ".join(f"{name} {resolved[name]['metadata']['version']}" for name in ("boto3", "botocore", "aiobotocore"))


def main() -> int:
    pip_version = tuple(int(part) for part in metadata.version("pip").split(".")[:2])
    if pip_version < MIN_PIP:
        print(f"[install-check] FAILED: pip {metadata.version('pip')} is too old to resolve this in reasonable time: "
              f"pip install -U 'pip>={'.'.join(map(str, MIN_PIP))}' (make install does)")
        return 1
    toolkit = runtime_requirements()
    with ThreadPoolExecutor(4) as pool:
        # The application's boto3 first, as its own requirements come before ours (pip also finds the
        # answer in seconds that way instead of backtracking for tens of seconds).
        older = pool.submit(resolve, [OLDER_BOTO3, *toolkit])
        newest = pool.submit(resolve, ["boto3", *toolkit])
        newest_aiobotocore = pool.submit(resolve, ["aiobotocore"], "--no-deps")
        newest_boto3 = pool.submit(resolve, ["boto3"], "--no-deps")
        (older_set, older_seconds), (newest_set, newest_seconds) = older.result(), newest.result()
        latest_aiobotocore = newest_aiobotocore.result()[0]["aiobotocore"]["metadata"]["version"]
        latest_boto3 = newest_boto3.result()[0]["boto3"]["metadata"]["version"]

    print(f"[install-check] beside {OLDER_BOTO3}: {versions(older_set)} ({older_seconds:.1f} s)")
    print(f"[install-check] beside the newest boto3 possible: {versions(newest_set)} ({newest_seconds:.1f} s)")
    chosen = newest_set["aiobotocore"]["metadata"]["version"]
    if chosen != latest_aiobotocore:
        print(f"[install-check] FAILED: aiobotocore {latest_aiobotocore} is the newest release but the toolkit's "
              f"range gets {chosen}: widen the aiobotocore range in pyproject.toml (after testing that release)")
        return 1
    if newest_set["boto3"]["metadata"]["version"] != latest_boto3:
        pins = [r for r in newest_set["aiobotocore"]["metadata"].get("requires_dist", []) if r.startswith("botocore")]
        print(f"[install-check] note: boto3 {latest_boto3} is newer than the newest aiobotocore ({chosen}) allows "
              f"({', '.join(pins)}): nothing that uses aiobotocore can install it yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
