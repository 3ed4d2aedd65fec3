"""docs/deploy.md's IAM policies stay in step with the AWS calls the code makes.

A static scan of kpl/, kcl/ and agent/ finds every call of a method named like an operation of the AWS
services the toolkit uses (names from botocore's own service models, so a new call cannot hide behind
a name this test does not know), ``get_paginator("op")``, and, in modules that use pynamodb, the
DynamoDB operation names they pass to their request wrappers (``_request("UpdateItem:renew", ...)``).
The appendix of docs/deploy.md must list exactly those calls, and each policy must hold exactly the
actions of the rows that name it.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy.md"
PACKAGES = ("kpl", "kcl", "agent")
#: The services whose clients the toolkit builds (kpl.aws.async_client / sync_client callers).
SERVICES = ("kinesis", "firehose", "cloudwatch", "dynamodb", "ec2", "sts")
#: Which policies may name a call in each package (kpl/ is shared by all three).
POLICIES_OF_PACKAGE = {
    "kcl": {"kcl-worker", "kcl-worker-fanout"},
    "agent": {"agent-kinesis", "agent-firehose", "agent-ec2-tags"},
}
Call = tuple[str, str]  # (file relative to the repository, method or operation name)


@cache
def operations() -> dict[str, set[str]]:
    """snake_case method name -> the IAM actions it can be ("kinesis:ListShards")."""
    session = botocore.session.get_session()
    by_method: dict[str, set[str]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        prefix = model.signing_name if service != "cloudwatch" else "cloudwatch"
        for operation in model.operation_names:
            by_method.setdefault(xform_name(operation), set()).add(f"{prefix}:{operation}")
    return by_method


@cache
def dynamodb_operations() -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_service_model("dynamodb").operation_names)


def scan_calls() -> dict[Call, set[str]]:
    """Every AWS call in the packages: (file, method) -> the IAM actions it may be."""
    found: dict[Call, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), filename=relative)
            uses_pynamodb = any(
                (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynamodb"))
                or (isinstance(node, ast.Import) and any(a.name.startswith("pynamodb") for a in node.names))
                for node in ast.walk(tree))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    name = node.func.attr
                    if name in ("get_paginator", "get_waiter") and node.args and isinstance(node.args[0], ast.Constant):
                        name = str(node.args[0].value)
                    if name in operations():
                        found.setdefault((relative, name), set()).update(operations()[name])
                if uses_pynamodb and isinstance(node, ast.Constant) and isinstance(node.value, str):
                    operation = node.value.split(":", 1)[0]
                    if operation in dynamodb_operations():
                        found.setdefault((relative, operation), set()).add(f"dynamodb:{operation}")
    return found


def appendix() -> dict[Call, tuple[str, set[str]]]:
    """The appendix table: (file, method) -> (IAM action, policies)."""
    text = DEPLOY.read_text()
    section = text.split("## Appendix: every AWS call the code makes", 1)[1]
    rows: dict[Call, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        match = re.match(r"\| `([^`]+)` \| `([^`]+)`(?: \(pynamodb\))? \| `([^`]+)` \| ([^|]+) \|$", line)
        if match:
            path, method, action, policies = match.groups()
            assert (path, method) not in rows, f"appendix lists {path} {method} twice"
            rows[(path, method)] = (action, {p.strip() for p in policies.split(",")})
    assert rows, "the appendix table was not found"
    return rows


def policies() -> dict[str, set[str]]:
    """Each ``<!-- iam-policy: NAME -->`` JSON block: NAME -> its actions."""
    found: dict[str, set[str]] = {}
    for name, body in re.findall(r"<!-- iam-policy: ([\w-]+) -->\n```json\n(.*?)\n```", DEPLOY.read_text(), re.S):
        document = json.loads(body)
        assert document["Version"] == "2012-10-17"
        actions: set[str] = set()
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow" and "*" not in "".join(statement["Action"]), statement
            actions.update([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        assert name not in found, f"two policies named {name}"
        found[name] = actions
    return found


def test_the_scan_finds_the_calls_it_is_meant_to_find() -> None:
    calls = scan_calls()
    assert calls[("kpl/sender.py", "put_records")] == {"kinesis:PutRecords"}
    assert ("kcl/leases.py", "UpdateItem") in calls
    assert ("agent/ec2_metadata.py", "describe_tags") in calls


def test_the_appendix_lists_every_call_the_code_makes_and_no_other() -> None:
    calls, rows = scan_calls(), appendix()
    missing = sorted(set(calls) - set(rows))
    assert not missing, f"calls missing from docs/deploy.md's appendix (add a row and the action): {missing}"
    stale = sorted(set(rows) - set(calls))
    assert not stale, f"docs/deploy.md's appendix lists calls the code no longer makes: {stale}"
    for call, (action, _) in rows.items():
        assert action in calls[call], f"{call}: {action} is not what the call is ({sorted(calls[call])})"


def test_each_policy_holds_exactly_the_actions_of_its_rows() -> None:
    rows, documented = appendix(), policies()
    assert set(documented) == {"producer", "kcl-worker", "kcl-worker-fanout", "agent-kinesis", "agent-firehose",
                               "agent-ec2-tags"}
    for (path, method), (_, names) in rows.items():
        assert names <= set(documented), f"{path} {method}: unknown policy in {names}"
        allowed = POLICIES_OF_PACKAGE.get(path.split("/", 1)[0])
        assert allowed is None or names <= allowed, f"{path} {method} belongs to {allowed}, not {names}"
    for name, actions in documented.items():
        expected = {action for action, names in rows.values() if name in names}
        assert actions == expected, (f"policy {name}: has {sorted(actions - expected)} that no call needs, "
                                     f"lacks {sorted(expected - actions)}")
