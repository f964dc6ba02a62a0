"""A client in another language: Node.js (@grpc/grpc-js, the .proto files loaded at run time by
@grpc/proto-loader) creates, reads, assigns and checks a policy against the real server, and
follows the change log across a reconnect.

Node.js is a requirement of the test suite: without `node` on PATH this test fails. The npm
packages are pinned in tests/node/package-lock.json and installed with `npm ci` when missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import empty_pb2

from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, change_pb2, policy_pb2

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


WATCHER = NODE_DIR / "watch.mjs"


class NodeWatcher:
    """tests/node/watch.mjs running: the JSON lines it prints, as they come."""

    def __init__(self, node: str, address: str, domain: str, after: str, count: int):
        self.process = subprocess.Popen(
            [node, str(WATCHER), address, domain, after or "-", str(count)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def next(self) -> dict:
        line = self.process.stdout.readline()
        assert line, f"the node watcher ended: {self.process.wait(timeout=10)} {self.process.stderr.read()}"
        return json.loads(line)

    def live(self) -> dict:
        """Reads up to its first heartbeat (it has caught up); returns the changes before it."""
        changes = []
        while "heartbeat" not in (message := self.next()):
            changes.append(message["change"])
        return changes

    def changes(self) -> list[dict]:
        """The rest of its changes, until it exits (0: it got all it asked for)."""
        rest = [message["change"] for line in self.process.stdout if "change" in (message := json.loads(line))]
        assert self.process.wait(timeout=60) == 0, self.process.stderr.read()
        return rest


def test_node_client_follows_the_change_log_across_a_reconnect(client, domain, request):
    if client.backend != "mongomock":
        pytest.skip("the Node client tests the gRPC surface, the same on every backend; it runs on mongomock")
    node = request.getfixturevalue("node")
    client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="before", name="b", domain_id=domain), timeout=10)
    watcher = NodeWatcher(node, client.address, domain, "", 4)
    try:
        assert [c["id"] for c in watcher.live()] == ["before"]
        for policy_id in ("p1", "p2"):
            client.policy.create(
                policy_pb2.CreatePolicyRequest(policy_id=policy_id, name=policy_id, domain_id=domain), timeout=10
            )
        client.policy.delete(policy_pb2.PolicyRequest(policy_id="p1", domain_id=domain), timeout=10)
        first = watcher.changes()
    finally:
        watcher.process.kill()
    assert [(c["kind"], c["id"], c["operation"]) for c in first] == [
        ("POLICY", "p1", "CREATE"),
        ("POLICY", "p2", "CREATE"),
        ("POLICY", "p1", "DELETE"),
    ]
    # Written while no watcher runs; then it reconnects with its last token.
    client.policy.update(policy_pb2.UpdatePolicyRequest(policy_id="p2", name="two", domain_id=domain), timeout=10)
    again = NodeWatcher(node, client.address, domain, first[-1]["continuation_token"], 2)
    try:
        missed = again.live()
        client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="p3", name="p3", domain_id=domain), timeout=10)
        second = missed + again.changes()
    finally:
        again.process.kill()
    assert [(c["id"], c["operation"]) for c in second] == [("p2", "UPDATE"), ("p3", "CREATE")]
    # What Node saw is the log as Python lists it, tokens and all.
    listed = client.change.list(change_pb2.ChangeQuery(domain_id=domain), timeout=10).results
    assert [(c.id, c.continuation_token, c.consistency_token) for c in listed[1:]] == [
        (c["id"], c["continuation_token"], c["consistency_token"]) for c in first + second
    ]
