"""bench's own tests: the harness and the independent minisink (the sink they share with the tests is
tested in tests/unit/test_support_sink*.py).

They live here, not under tests/, because nothing under tests/ may import bench/
(tests/unit/test_architecture.py).  pyproject's ``testpaths`` runs them with the suite; like tests/unit
they are marked ``unit`` (pure logic, or sinks on 127.0.0.1 in their own processes: no LocalStack).
Their clients name the sink's endpoint and dummy credentials, so they need nothing of tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.unit)
