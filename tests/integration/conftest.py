"""Every integration test needs LocalStack; starting it here keeps unit-only runs free of it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _localstack(localstack_url: str) -> str:
    return localstack_url
