"""The README's grpcurl walk-throughs, run line by line against a test server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest

from helpers import expect_error, parse
from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as kpb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import group_pb2, policy_pb2
from policyhub.manager.api_key_manager import ApiKeyManager
from policyhub.manager.assignment_manager import AssignmentManager
from policyhub.manager.audit_manager import AuditManager
from policyhub.manager.policy_manager import PolicyManager
from policyhub.manager.repository_manager import RepositoryManager
from policyhub.manager.subject_set_manager import SubjectSetManager
from policyhub.model import GroupDocument, RoleDocument

README = Path(__file__).resolve().parents[2] / "README.md"
GRPCURL = Path(sys.executable).parent / "grpcurl"
README_ADDRESS = "127.0.0.1:50051"
README_DOMAIN = "domain-demo"
GROUPS_SECTION = "Walk-through: groups and roles (Authing-style)"


def section_commands(title: str) -> list[list[str]]:
    """The `.venv/bin/grpcurl` lines of every ```sh block of the README section `## <title>`, split
    as a shell would."""
    text = README.read_text(encoding="utf-8")
    heading = f"\n## {title}\n"
    assert heading in text, f"README.md has no section '## {title}'"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, f"README.md section '{title}' has no sh block"
    return [
        shlex.split(line) for block in blocks for line in block.splitlines() if line.startswith(".venv/bin/grpcurl")
    ]


def run_commands(client, commands: list[list[str]], domain: str) -> list[tuple[str, str]]:
    """Runs README commands in order against the test server, in `domain`; every one must exit 0.
    Returns (method, stdout) per command (method: grpcurl's last argument)."""
    if client.backend != "mongomock":
        pytest.skip("the walk-through is about the commands, not the backend: run once")
    outputs = []
    for command in commands:
        command = [str(GRPCURL) if part == ".venv/bin/grpcurl" else part for part in command]
        command = [client.address if part == README_ADDRESS else part for part in command]
        command = [part.replace(README_DOMAIN, domain) for part in command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
        outputs.append((command[-1], result.stdout))
    return outputs


def answers(outputs: list[tuple[str, str]], method: str) -> list[dict]:
    """The JSON answers of the commands calling `method` (`Group/create`, …), in order."""
    return [json.loads(out) for called, out in outputs if called == f"spaceone.api.repository.v1.{method}"]


def via(answer: dict) -> list[tuple[str, str]]:
    return [(step["type"], step["id"]) for step in answer.get("via", [])]


def test_readme_walkthrough_works_as_written(client):
    outputs = run_commands(client, section_commands("Walk-through with grpcurl"), "domain-readme")
    assert len(outputs) >= 10
    # carol's checks: from the office in office hours, then without the request's context
    *_, in_office, without_context = answers(outputs, "Assignment/check")
    assert (in_office["decision"], in_office["policy_id"]) == ("ALLOW", "office-hours")
    assert (without_context["decision"], without_context["reason"]) == ("CONDITIONAL", "MISSING_CONTEXT")
    assert without_context["missing_context"] == ["request.ip"]
    (batch,) = answers(outputs, "Assignment/batch_check")
    assert all(result["correlation_id"] for result in batch["results"])
    # Consistency: each write's token, then alice's checks (the default, MINIMIZE_LATENCY) and
    # bob's with the token of Assignment/add, all at that revision.
    tokens = [answers(outputs, method)[0]["consistency_token"] for method in ("Policy/create", "Policy/update")]
    (added,) = answers(outputs, "Assignment/add")
    assert tokens + [added["consistency_token"]] == ["ct1.1", "ct1.2", "ct1.3"]
    alice, alice_fast, bob_fresh, *_ = answers(outputs, "Assignment/check")
    for answer in (alice, alice_fast, bob_fresh):
        assert (answer["decision"], answer["consistency_token"]) == ("ALLOW", "ct1.3"), answer
    assert bob_fresh["via"][0]["id"] == "bob"
    # Policy/delete (-v) shows its token in the trailing metadata.
    (deleted,) = [out for called, out in outputs if called.endswith(".Policy/delete")]
    assert "consistency-token: ct1.6" in deleted
    # the bulk export of the domain as it was then, and a dry-run import of three items inline
    (exported,) = [out for called, out in outputs if called.endswith("Bulk/export_domain")]
    header = json.JSONDecoder().raw_decode(exported)[0]["header"]
    assert header["counts"] == {"policies": 2, "assignments": 3}
    (dry,) = answers(outputs, "Bulk/import_domain")
    assert (dry["dry_run"], dry["groups"], dry["assignments"]) == (True, {"created": 1}, {"created": 1})
    assert [(c["kind"], c["operation"]) for c in dry["changes"]] == [("GROUP", "CREATE"), ("ASSIGNMENT", "CREATE")]
    assert [(r["item_index"], r["code"], r["field"]) for r in dry["refused"]] == [(2, "NOT_FOUND", "items[2].grant.id")]
    # the policy changes so far, oldest first, each with the token its write answered
    (changes,) = answers(outputs, "Change/list")
    assert [(c["kind"], c["id"], c["operation"]) for c in changes["results"]] == [
        ("POLICY", "ops-admin", "CREATE"),
        ("POLICY", "ops-admin", "UPDATE"),
        ("POLICY", "office-hours", "CREATE"),
        ("POLICY", "ops-admin", "DELETE"),
    ]
    (created, *_) = answers(outputs, "Policy/create")
    assert changes["results"][0]["consistency_token"] == created["consistency_token"]
    # the page resumes where its last change does (the token's last part is a time bound, read apart)
    position = changes["continuation_token"].rsplit(".", 1)[0]
    assert position == changes["results"][-1]["continuation_token"].rsplit(".", 1)[0]


def test_readme_watch_example_streams_the_log(client):
    """The walk-through's `Change/watch` line (outside the block: it runs until -max-time)."""
    if client.backend != "mongomock":
        pytest.skip("the walk-through is about the commands, not the backend: run once")
    text = README.read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if line.startswith(".venv/bin/grpcurl") and "Change/watch" in line]
    domain = "domain-readme-watch"
    client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="watched", name="w", domain_id=domain), timeout=10)
    command = [str(GRPCURL) if part == ".venv/bin/grpcurl" else part for part in shlex.split(line)]
    command = [client.address if part == README_ADDRESS else part.replace(README_DOMAIN, domain) for part in command]
    command[command.index("-max-time") + 1] = "2"
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    # grpcurl ends the stream at -max-time: DeadlineExceeded, after what it received
    assert "DeadlineExceeded" in result.stderr, result.stderr
    received = [json.loads(part) for part in re.split(r"(?<=\n})\n", result.stdout.strip()) if part]
    assert received[0]["change"]["id"] == "watched" and received[0]["change"]["operation"] == "CREATE"
    assert "heartbeat" in received[1]


def test_readme_groups_walkthrough_works_as_written(client):
    domain = "domain-readme-groups"
    outputs = run_commands(client, section_commands(GROUPS_SECTION), domain)

    before, after_rename, after_delete = answers(outputs, "Assignment/check")
    assert (before["decision"], before["reason"], before["policy_id"]) == ("ALLOW", "ALLOWED", "ops-servers")
    assert before["statement_index"] == 1
    assert via(before) == [("USER", "alice"), ("GROUP", "ops")]
    # After the rename, a nested member is allowed through the renamed group.
    assert (after_rename["decision"], after_rename["policy_id"]) == ("ALLOW", "ops-servers")
    assert via(after_rename) == [("USER", "carol"), ("GROUP", "oncall"), ("GROUP", "sre")]
    # After the cascade delete the group's grant is gone.
    assert (after_delete["decision"], after_delete["reason"]) == ("DENY", "NO_MATCHING_ALLOW")

    (renamed,) = answers(outputs, "Group/update")
    assert (renamed["group_id"], renamed["name"]) == ("sre", "Site reliability")
    assert (renamed["member_count"], renamed["policy_ids"]) == (3, ["ops-servers"])

    (users,) = answers(outputs, "Group/list_users")
    assert [(u["user_id"], via(u)) for u in users["results"]] == [
        ("alice", []),
        ("bob", []),
        ("carol", [("GROUP", "oncall")]),
    ]
    assert users["total_count"] == 3

    (resources,) = answers(outputs, "Group/list_authorized_resources")
    assert resources["results"] == [
        {
            "resource": "*",
            "actions": ["inventory.Server.*"],
            "exceptions": [{"resource": "prod/*", "actions": ["inventory.Server.delete"]}],
        }
    ]

    # Deleted with its memberships and grants; the nested group stays, in no group now.
    expect_error(grpc.StatusCode.NOT_FOUND, client.group.get, group_pb2.GroupRequest(group_id="sre", domain_id=domain))
    oncall = client.group.get(group_pb2.GroupRequest(group_id="oncall", domain_id=domain), timeout=10)
    assert oncall.member_count == 1

    (role,) = answers(outputs, "Role/get")
    assert (role["role_id"], role["member_count"], role["is_bound"]) == ("auditor", 2, True)
    assert role["policy_ids"] == ["inventory-reader"]
    grouped = {
        group["service"]: [action for s in group["statements"] for action in s["statement"]["actions"]]
        for group in role["permission_groups"]
    }
    assert grouped == {"identity": ["identity.Project.get"], "inventory": ["inventory.*.get", "inventory.*.list"]}


def test_readme_groups_walkthrough_delete_without_cascade_is_refused(client):
    """What the README says `Group/delete` without `cascade` answers, at the same point of the
    walk-through (not in the block: a command there must succeed)."""
    domain = "domain-readme-refused"
    commands = section_commands(GROUPS_SECTION)
    cascade = next(i for i, c in enumerate(commands) if c[-1].endswith(".Group/delete"))
    run_commands(client, commands[:cascade], domain)
    error = expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.group.delete,
        group_pb2.DeleteGroupRequest(group_id="sre", domain_id=domain),
    )
    assert "sre has 3 members and 1 grant;" in error.details()


BACKUP_SECTION = "Backup and restore with grpcurl"


def section_lines(title: str) -> list[str]:
    """The command lines of every ```sh block of the README section `## <title>`, as written."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_backup_and_restore_works_as_written(client, tmp_path):
    """The backup section's lines (redirections and a pipe: run by a shell, in a temporary
    directory) after the walk-through, in the walk-through's domain."""
    domain = "domain-readme-backup"
    run_commands(client, section_commands("Walk-through with grpcurl"), domain)
    outputs = []
    for line in section_lines(BACKUP_SECTION):
        command = line.replace(".venv/bin/grpcurl", str(GRPCURL)).replace(README_ADDRESS, client.address)
        command = command.replace(README_DOMAIN, domain)
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        outputs.append(result.stdout)
    assert len(outputs) == 4
    saved = (tmp_path / f"{domain}.json").read_text()
    decoder, position, messages = json.JSONDecoder(), 0, []
    while saved[position:].strip():
        message, end = decoder.raw_decode(saved, position)
        messages.append(message)
        position = end
        while position < len(saved) and saved[position].isspace():
            position += 1
    assert messages[0]["header"]["counts"] == {"policies": 1, "assignments": 3}
    dry, imported, check = (json.loads(out) for out in outputs[1:])
    assert (dry["mode"], dry["dry_run"]) == ("REPLACE", True)
    assert (dry["policies"], dry["assignments"]) == ({"created": 1}, {"created": 3})
    assert [c["operation"] for c in dry["changes"]] == ["CREATE"] * 4
    assert (imported["domain_id"], imported["assignments"]) == (f"{domain}-copy", {"created": 3})
    assert "dry_run" not in imported and imported["consistency_token"] != dry["consistency_token"]
    assert (check["decision"], check["policy_id"]) == ("ALLOW", "office-hours")


def bearer_examples() -> list[list[str]]:
    """The README's grpcurl lines that send `authorization: Bearer $TOKEN` (outside the
    walk-through, which runs in development mode)."""
    text = README.read_text(encoding="utf-8")
    return [
        shlex.split(line.strip())
        for line in text.splitlines()
        if line.strip().startswith(".venv/bin/grpcurl") and "authorization: Bearer $TOKEN" in line
    ]


def test_readme_bearer_example_works_as_written(secure, domain):
    """The same command against a server with authentication on, with a JWT and with an API key
    as $TOKEN: a caller with read access asks "may I?" and is answered for itself."""
    commands = bearer_examples()
    assert commands
    admin = secure.metadata(f"admin-{domain}", did=domain, rol="DOMAIN_ADMIN")
    system = secure.metadata("root", did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")
    key = secure.api_key.create(
        kpb.CreateApiKeyRequest(service_account_id="sibling", name="readme", domain_id=domain),
        metadata=system,
        timeout=10,
    ).api_key
    for subject_type, subject_id in [("USER", "alice"), ("SERVICE_ACCOUNT", "sibling")]:
        secure.assignment.create(
            parse(
                apb.CreateAssignmentRequest,
                {
                    "subject": {"type": subject_type, "id": subject_id},
                    "grant": {"type": "POLICY", "id": "managed-read-only"},
                    "domain_id": domain,
                },
            ),
            metadata=admin,
            timeout=10,
        )
    credentials = {"alice": secure.token("alice", did=domain, rol="USER"), "sibling": key}
    for command in commands:
        for caller, credential in credentials.items():
            run = [str(GRPCURL) if part == ".venv/bin/grpcurl" else part for part in command]
            run = [secure.address if part == "127.0.0.1:50051" else part.replace("$TOKEN", credential) for part in run]
            result = subprocess.run(run, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"{caller}: {result.stderr}"
            answer = json.loads(result.stdout)
            assert answer["decision"] == "ALLOW" and answer["policy_id"] == "managed-read-only", answer
            assert answer["via"][0]["id"] == caller
    # The same shape with a malformed value is refused.
    broken = [part.replace("Bearer $TOKEN", "Basic x") for part in commands[0]]
    broken = [str(GRPCURL) if part == ".venv/bin/grpcurl" else part for part in broken]
    broken = [secure.address if part == "127.0.0.1:50051" else part for part in broken]
    result = subprocess.run(broken, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Unauthenticated" in result.stderr
    assert "must use the Bearer scheme" in result.stderr


def test_readme_command_line_works_as_written(client, tmp_path):
    """The command-line block as one shell script (its `export` carries to the lines after it), in
    a temporary directory, in a fresh domain."""
    if client.backend != "mongomock":
        pytest.skip("the walk-through is about the commands, not the backend: run once")
    domain = f"domain-cli-{uuid.uuid4().hex[:8]}"
    script = "\n".join(section_lines("Command line"))
    script = script.replace(".venv/bin/policyhub", str(Path(sys.executable).parent / "policyhub"))
    script = script.replace(README_ADDRESS, client.address).replace("domain-cli", domain)
    result = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    allowed = "ALLOW ALLOWED\npolicy ops-servers statement 1\nvia USER:alice\n"
    assert out.count(allowed) == 2  # the original and the copy
    assert "DENY EXPLICIT_DENY\npolicy ops-servers statement 0\nvia USER:alice\nexit code 1\n" in out
    assert '"policy_id": "ops-servers"' in out
    assert (tmp_path / f"{domain}.jsonl").read_text().startswith('{"header":{"domain_id":"' + domain + '"')


def test_readme_python_sdk_example_works_as_written(client):
    if client.backend != "mongomock":
        pytest.skip("the example is about the SDK, not the backend: run once")
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.S)
    example = example.replace(README_ADDRESS, client.address).replace(
        "domain-sdk", f"domain-sdk-{uuid.uuid4().hex[:8]}"
    )
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ALLOW reader ['alice']", "INVALID_ARGUMENT ['policy_id']"]


def test_readme_query_keys_table_is_what_each_resource_accepts():
    managers = {
        "Policy": PolicyManager(10),
        "Repository": RepositoryManager(10),
        "Assignment": AssignmentManager(10),
        "Group": SubjectSetManager(GroupDocument, "Group", "group_id", 10),
        "Role": SubjectSetManager(RoleDocument, "Role", "role_id", 10),
        "Audit": AuditManager(10),
        "ApiKey": ApiKeyManager(10),
    }
    text = README.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\w+) \| (`.*`) \|$", text.split("**Keys.**", 1)[1].split("\n\n", 2)[1], re.M))
    assert set(rows) == set(managers)
    for resource, manager in managers.items():
        keys = manager.schema.keys
        accepted = {
            *keys.fields,
            *keys.aliases,
            *(f"{name}.<key>" for name in keys.maps),
            *(f"{join.prefix}.{name}" for join in keys.joins for name in join.fields),
        }
        assert set(re.findall(r"`([^`]+)`", rows[resource])) == accepted, resource
