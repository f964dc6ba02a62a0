"""A client in another language: Node.js (@grpc/grpc-js, the .proto files loaded at run time by
@grpc/proto-loader) creates, reads, assigns and checks a policy against the real server.

Node.js is a requirement of the test suite: without `node` on PATH this test fails. The npm
packages are pinned in tests/node/package-lock.json and installed with `npm ci` when missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import empty_pb2

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, policy_pb2

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
CLIENT = NODE_DIR / "client.mjs"


def _locked_versions(lockfile: Path) -> dict[str, str]:
    packages = json.loads(lockfile.read_text())["packages"]
    return {name: entry.get("version", "") for name, entry in packages.items() if name}


def _node_modules_up_to_date() -> bool:
    """node_modules is there and holds exactly what package-lock.json pins (npm's hidden lockfile)."""
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    if not installed.is_file():
        return False
    try:
        return _locked_versions(installed) == _locked_versions(NODE_DIR / "package-lock.json")
    except (ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "`node` is not on PATH: the test suite requires Node.js (>= 20) and npm "
            "for tests/node (install them, e.g. `apt-get install nodejs npm`)",
            pytrace=False,
        )
    if not _node_modules_up_to_date():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "`npm` is not on PATH: it is needed once to install tests/node/node_modules "
                "from tests/node/package-lock.json",
                pytrace=False,
            )
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("`npm ci` in tests/node did not finish within 600 s", pytrace=False)
        if result.returncode != 0:
            pytest.fail(f"`npm ci` in tests/node failed ({result.returncode}):\n{result.stderr}", pytrace=False)
    return node


def test_node_client_creates_assigns_and_checks(client, domain, request):
    if client.backend != "mongomock":
        pytest.skip(
            "the Node client tests the gRPC/protobuf surface, which is the same on every storage "
            "backend; it runs on mongomock only"
        )
    node = request.getfixturevalue("node")
    result = subprocess.run(
        [node, str(CLIENT), client.address, domain], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"node client failed ({result.returncode}):\n{result.stderr}{result.stdout}"
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    out = json.loads(lines[0])

    assert out["ok"] is True
    assert out["policy"] == {
        "policy_id": "node-reader",
        "name": "Node reader",
        "state": "ENABLED",
        "permissions": ["inventory.Server.read"],
        "statements": [{"effect": "DENY", "actions": ["inventory.Server.*"], "resources": ["srv/secret/*"]}],
        "version": 1,
        "etag": out["policy"]["etag"],
        "is_managed": False,
        "domain_id": domain,
    }
    assert out["policy"]["etag"]
    assert out["assignment"]["assignment_id"].startswith("asg-")
    assert out["assignment"]["subject"] == {"type": "USER", "id": "node-alice"}
    assert out["assignment"]["grant"] == {"type": "POLICY", "id": "node-reader"}
    assert out["assignment"]["domain_id"] == domain
    # effective statements: the DENY statement (0), then one ALLOW per permissions entry (1)
    assert out["checks"]["allowed"] == {
        "decision": "ALLOW",
        "reason": "ALLOWED",
        "policy_id": "node-reader",
        "statement_index": 1,
        "via": [{"type": "USER", "id": "node-alice"}],
    }
    assert out["checks"]["denied"] == {
        "decision": "DENY",
        "reason": "EXPLICIT_DENY",
        "policy_id": "node-reader",
        "statement_index": 0,
        "via": [{"type": "USER", "id": "node-alice"}],
    }

    # What the Node client wrote and saw is what the Python client sees.
    assert out["server_version"] == client.server_info.get_version(empty_pb2.Empty(), timeout=10).version
    policy = client.policy.get(
        policy_pb2.GetRepositoryPolicyRequest(policy_id="node-reader", domain_id=domain), timeout=10
    )
    assert policy.etag == out["policy"]["etag"] and list(policy.permissions) == ["inventory.Server.read"]
    assignment = client.assignment.get(
        assignment_pb2.GetAssignmentRequest(assignment_id=out["assignment"]["assignment_id"], domain_id=domain),
        timeout=10,
    )
    assert assignment.subject.id == "node-alice" and assignment.grant.id == "node-reader"
