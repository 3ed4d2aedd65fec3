"""A producer set up wrong says so at once, and what to fix — not after RecordTtl.

Problems its clients show while being built (a missing profile, no or a malformed region) raise
ConfigurationError from start() (the async face) and from Producer(...) (the sync one).  Problems that
show in the first calls (no credentials, a region that does not exist) fail the records at once, not
retryable.  Each case runs in a fresh process: botocore's session caches credentials for the whole
process, and the environment is the point of the test.  The stream exists: only the setup is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

SCRIPT = """
import asyncio, json, sys, time
import kpl

async def main(stream: str) -> None:
    started = time.monotonic()
    try:
        kpl.Producer(metrics_level="none").close()
    except kpl.ConfigurationError as exc:
        sync_error = str(exc)
    else:
        sync_error = None
    producer = kpl.AsyncProducer(metrics_level="none", record_ttl_ms=60_000)
    try:
        await producer.start()
    except kpl.ConfigurationError as exc:
        print(json.dumps({"raised": str(exc), "sync_raised": sync_error, "seconds": time.monotonic() - started}))
        return
    async with producer:
        result = await (await producer.put_record(stream, b"payload", "key"))
        later = await (await producer.put_record(stream, b"again", "key"))
    print(json.dumps({"success": result.success, "code": result.error and result.error.code,
                      "message": result.error and result.error.message, "retryable": result.retryable,
                      "later": later.error and later.error.code, "seconds": time.monotonic() - started}))

asyncio.run(main(sys.argv[1]))
"""


def run(stream: str, env_changes: dict[str, str | None]) -> dict[str, object]:
    env = dict(os.environ)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    completed = subprocess.run([sys.executable, "-c", SCRIPT, stream], env=env, capture_output=True, text=True,
                               timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip(), completed.stderr
    outcome: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return outcome


NO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
                  "AWS_PROFILE": None}


@pytest.mark.parametrize(("case", "env_changes", "code", "fix"), [
    ("missing profile", {"AWS_PROFILE": "kpl-no-such-profile"}, "ProfileNotFound", "unset AWS_PROFILE"),
    ("malformed region", {"AWS_DEFAULT_REGION": "not a region!", "AWS_REGION": None}, "InvalidRegion",
     "AWS_DEFAULT_REGION"),
    ("no region", {"AWS_DEFAULT_REGION": None, "AWS_REGION": None}, "NoRegion", "AWS_DEFAULT_REGION"),
])
def test_setup_problems_of_the_clients_raise_configuration_error_at_start(
    make_stream: Callable[..., str], case: str, env_changes: dict[str, str | None], code: str, fix: str
) -> None:
    outcome = run(make_stream(shards=1), env_changes)
    for raised in (outcome.get("raised"), outcome.get("sync_raised")):
        assert isinstance(raised, str) and raised.startswith(f"{code}: ") and fix in raised, (case, outcome)


@pytest.mark.parametrize(("case", "env_changes", "code", "fix"), [
    ("no credentials", NO_CREDENTIALS, "NoCredentials", "AWS_ACCESS_KEY_ID"),
    # No endpoint override: the standard endpoint of a region that does not exist.  (Its host name does
    # not resolve; nothing is sent anywhere.)
    ("unknown region", {"AWS_DEFAULT_REGION": "xx-moon-1", "AWS_REGION": None, "AWS_ENDPOINT_URL": None},
     "InvalidRegion", "AWS_DEFAULT_REGION"),
])
def test_setup_problems_of_the_first_calls_fail_records_at_once_saying_what_to_fix(
    make_stream: Callable[..., str], case: str, env_changes: dict[str, str | None], code: str, fix: str
) -> None:
    outcome = run(make_stream(shards=1), env_changes)
    assert outcome["success"] is False, outcome
    assert outcome["code"] == code, outcome
    assert outcome["retryable"] is False, outcome
    assert fix in str(outcome["message"]), outcome
    assert outcome["later"] == code, "the next record fails at once too"
    assert float(outcome["seconds"]) < 15, f"{case}: {outcome['seconds']} s (RecordTtl is 60 s)"


def test_the_same_environment_works(make_stream: Callable[..., str]) -> None:
    outcome = run(make_stream(shards=1), {})
    assert outcome["success"] is True, outcome
