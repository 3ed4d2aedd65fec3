"""Every code snippet in README.md runs, so the front page cannot rot.

Each fenced block in the README is preceded by a directive comment saying how it runs:

    <!-- test: python [streams=a,b] -->            a Python script (in a scratch directory)
    <!-- test: shell [cwd=repo] [streams=a,b] [daemon=SECONDS] [port=N] -->
                                                   bash; ``daemon`` runs it that long, then SIGTERM
                                                   and expects a clean exit; ``port`` runs it against
                                                   its own LocalStack on that port
    <!-- test: file NAME -->                       the block is a file later blocks use
    <!-- test: two-commands -->                    the two top-level make commands

Blocks run in document order and share the scratch directory.  A block without a directive fails
the suite, so nobody can add an untested snippet.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import localstack
from tests.support.kinesis import create_stream

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DIRECTIVE_BLOCK = re.compile(r"<!-- test: (?P<directive>[^>]*?) -->\n```(?P<lang>[\w-]*)\n(?P<body>.*?)^```",
                             re.S | re.M)


@dataclass
class Snippet:
    line: int
    kind: str
    argument: str | None
    options: dict[str, str]
    body: str

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.kind}"


def snippets() -> list[Snippet]:
    text = README.read_text()
    found = []
    for match in DIRECTIVE_BLOCK.finditer(text):
        words = shlex.split(match["directive"])
        kind, rest = words[0], words[1:]
        argument = rest.pop(0) if kind == "file" else None
        options = dict(word.split("=", 1) for word in rest)
        found.append(Snippet(text.count("\n", 0, match.start()) + 2, kind, argument, options, match["body"]))
    return found


SNIPPETS = snippets()
STREAMS = sorted({name for s in SNIPPETS for name in s.options.get("streams", "").split(",") if name}
                 | {"apache-access-log"})
TABLES = ["click-counter"]


def test_every_snippet_has_a_directive() -> None:
    fences = len(re.findall(r"^```", README.read_text(), re.M))
    assert fences % 2 == 0
    assert fences // 2 == len(SNIPPETS), "a README code block has no <!-- test: ... --> directive before it"
    assert {s.kind for s in SNIPPETS} <= {"python", "shell", "file", "two-commands"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, aws_clients: Callable[[str], Any]) -> Iterator[Path]:
    """The scratch directory, with the README's streams fresh and its lease tables gone, before and after."""
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")

    def clean() -> None:
        existing = kinesis.list_streams()["StreamNames"]
        for stream in STREAMS:
            if stream in existing:
                kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        for table in TABLES:
            with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
                dynamodb.delete_table(TableName=table)

    clean()
    yield tmp_path_factory.mktemp("readme")
    clean()


def _env(scratch: Path, snippet: Snippet) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), str(REPO)])
    env["LOCALSTACK_PORT"] = snippet.options.get("port", str(localstack.port()))
    return env


def _ensure_streams(kinesis: Any, snippet: Snippet) -> None:
    existing = set(kinesis.list_streams()["StreamNames"])
    for name in filter(None, snippet.options.get("streams", "").split(",")):
        if name not in existing:
            create_stream(kinesis, name, 2)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, scratch: Path, kinesis: Any) -> None:
    _ensure_streams(kinesis, snippet)
    env = _env(scratch, snippet)
    cwd = REPO if snippet.options.get("cwd") == "repo" else scratch
    if snippet.kind == "file":
        assert snippet.argument
        (scratch / snippet.argument).write_text(snippet.body)
        if snippet.argument.endswith(".py"):
            subprocess.run([sys.executable, "-m", "py_compile", snippet.argument], cwd=scratch, check=True)
    elif snippet.kind == "python":
        done = subprocess.run([sys.executable, "-c", snippet.body], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    elif snippet.kind == "two-commands":
        _run_two_commands(snippet, env)
    elif "daemon" in snippet.options:
        _run_daemon(snippet, cwd, env, float(snippet.options["daemon"]))
    else:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet.body], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def _run_two_commands(snippet: Snippet, env: dict[str, str]) -> None:
    commands = [line.split("#")[0].strip() for line in snippet.body.splitlines()]
    assert commands == ["make demo", "make test"]
    # `make test` is the command running this suite; its dry run proves the target is well-formed.
    dry = subprocess.run(["make", "-n", "test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert dry.returncode == 0 and "pytest" in dry.stdout, dry.stdout + dry.stderr
    demo = subprocess.run(["make", "demo", "DEMO_ARGS=--quick"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "VERIFIED: every one of the" in demo.stdout


def _run_daemon(snippet: Snippet, cwd: Path, env: dict[str, str], seconds: float) -> None:
    process = subprocess.Popen(["bash", "-c", f"exec {snippet.body.strip()}"], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=seconds)
        pytest.fail(f"the command exited on its own with status {process.returncode}:\n{out}{err}")
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    if "kcl-worker" in snippet.body:
        # The README's processor prints its count when asked to shut down; the earlier snippets put 101 clicks.
        counts = [int(m) for m in re.findall(r": (\d+) clicks", out)]
        assert counts and sum(counts) >= 101, out + err
