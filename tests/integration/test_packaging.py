"""What a user gets from the package index: ``python -m build`` makes an sdist that carries the README,
LICENSE, docs/ and examples/, and a wheel that installs into a clean venv outside the checkout (every
dependency resolved from the index, nothing borrowed from the project's venv) whose commands run.

The commands are the two console scripts and ``kcl-worker status``, the three ways the package is run."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield out


def only(directory: Path, pattern: str) -> Path:
    [path] = directory.glob(pattern)
    return path


def test_the_sdist_carries_the_readme_license_docs_and_examples(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    assert {"README.md", "LICENSE", "pyproject.toml", "kpl/producer.py", "kcl/cli.py", "agent/cli.py"} <= names
    tracked = subprocess.run(["git", "ls-files", "docs", "examples"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked and set(tracked) <= names, sorted(set(tracked) - names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.startswith(("tests/", ".venv", "localstack/"))]


def test_the_wheel_metadata_names_the_license_and_the_dependency_ranges(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        metadata = Parser().parsestr(wheel.read("kinesis_toolkit-0.1.0.dist-info/METADATA").decode())
        license_text = wheel.read("kinesis_toolkit-0.1.0.dist-info/licenses/LICENSE").decode()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier")
    requires = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert not [r for r in requires if "==" in r], f"runtime dependencies are pinned: {requires}"
    assert {r.split("<")[0].split(">")[0].strip() for r in requires} == {
        "aiobotocore", "boto3", "tenacity", "protobuf", "pynamodb", "structlog", "prometheus-client", "aiohttp"}


def test_the_wheel_installs_into_a_clean_venv_and_its_commands_run(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    started = time.monotonic()
    # This venv's pip only does the installing (``--python``): everything lands in the clean venv, resolved
    # from the index (its cache keeps this to seconds).
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check", "-q",
         str(only(dist, "*.whl"))], capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    install_seconds = time.monotonic() - started
    assert install_seconds < 300

    # Outside the checkout, with nothing on PYTHONPATH: only the venv's site-packages can serve imports.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(list(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                                check=False)
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
        return result

    where = run(str(python), "-c", "import kpl, kcl, agent; print(kpl.__file__, kcl.__file__, agent.__file__)")
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout
    assert "usage: kcl-worker" in run(str(venv / "bin" / "kcl-worker"), "--help").stdout
    assert "usage: kcl-worker status" in run(str(venv / "bin" / "kcl-worker"), "status", "--help").stdout
    assert "usage: kinesis-agent" in run(str(venv / "bin" / "kinesis-agent"), "--help").stdout
    assert run(str(venv / "bin" / "kinesis-agent"), "--version").stdout.strip() == "kinesis-agent 0.1.0"

    # The sdist's example agent.json validates with the installed agent.
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        sdist.extractall(tmp_path / "sdist", filter="data")
    example = only(tmp_path / "sdist", "*/examples/agent/agent.json")
    checked = run(str(venv / "bin" / "kinesis-agent"), "--check-config", "-c", str(example))
    assert '"flows"' in checked.stdout
