"""The rules of the code's shape that the developers' guide and issue 12 set, checked statically so that a
change breaking one fails here rather than in review:

* no module in kpl/, kcl/ or agent/ over 600 lines (split before crossing it);
* kpl/ imports neither kcl/ nor agent/; kcl/ and agent/ do not import each other (both may import kpl/);
* one ListShards pagination (kpl.aws): ``list_shards(`` is sent to a client in one module only;
* nothing under tests/ imports bench/ (tests.support included): what tests and benchmarks share, such as
  the local sink, lives in tests.support, which bench/ imports; bench's own tests live in bench/tests/.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kpl", "kcl", "agent")
MAX_LINES = 600
FORBIDDEN = {"kpl": {"kcl", "agent"}, "kcl": {"agent"}, "agent": {"kcl"}}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_600_lines(package: str) -> None:
    long = {str(path.relative_to(ROOT)): n for path in modules(package)
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (at most {MAX_LINES} lines each): {long}"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_layering(package: str) -> None:
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
             for path in modules(package)}
    assert not {where: names for where, names in wrong.items() if names}


def test_one_list_shards_pagination() -> None:
    senders = set()
    for package in (*PACKAGES, "tests", "bench", "examples"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "list_shards" and not path.name.startswith("test_")):
                    owner = node.func.value
                    if not (isinstance(owner, ast.Name) and owner.id == "self"):  # a method named so, not a client
                        senders.add(str(path.relative_to(ROOT)))
    assert senders == {"kpl/aws.py"}, f"page ListShards through kpl.aws.list_shards, not here: {senders}"


def test_tests_never_import_bench() -> None:
    importers = [str(path.relative_to(ROOT)) for path in modules("tests") if "bench" in imported_packages(path)]
    assert not importers, f"move what these use into tests/support/ (bench imports it from there): {importers}"


def _imports_of_kpl_modules() -> dict[str, set[tuple[str, str]]]:
    """kpl module -> (name, where) for every ``from kpl.<module> import name`` outside kpl/ (code and docs)."""
    found: dict[str, set[tuple[str, str]]] = {}
    for package in ("kcl", "agent", "examples"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("kpl."):
                    for alias in node.names:
                        found.setdefault(node.module, set()).add((alias.name, str(path.relative_to(ROOT))))
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in re.finditer(r"^\s*from (kpl\.\w+) import \(?([\w, ]+)\)?", doc.read_text(), re.M):
            for name in filter(None, re.split(r"[,\s]+", match.group(2))):
                found.setdefault(match.group(1), set()).add((name, str(doc.relative_to(ROOT))))
    return found


def test_what_other_packages_and_the_docs_use_of_kpl_is_in_its_all() -> None:
    """kpl's shared layer is a public API of kcl, agent and users: each module used from outside says what it
    offers in ``__all__``, and nothing outside uses what it does not offer."""
    outside: list[str] = []
    for module, uses in sorted(_imports_of_kpl_modules().items()):
        offered = getattr(importlib.import_module(module), "__all__", None)
        if offered is None:
            outside.append(f"{module} has no __all__ (used by {sorted({where for _, where in uses})})")
            continue
        outside += [f"{where}: {module}.{name}" for name, where in sorted(uses) if name not in offered]
    assert not outside, "\n".join(outside)


def test_tenacity_is_used_as_a_library() -> None:
    """Retry loops run on tenacity's public API (kpl.retry); nothing builds its RetryCallState by hand."""
    built = [str(path.relative_to(ROOT)) for package in (*PACKAGES, "tests", "bench", "examples")
             for path in sorted((ROOT / package).rglob("*.py")) if "RetryCallState(" in path.read_text()
             and path.name != "test_architecture.py"]
    assert not built, f"use kpl.retry.retrying / retrying_blocking instead: {built}"
