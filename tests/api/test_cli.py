"""The `policyhub` command's client subcommands, run as subprocesses against a real server:
policies from YAML and JSON files, get/list/delete, assign, check's exit codes, export then import
into another domain, the output formats, and one-line errors with their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

POLICYHUB = Path(sys.executable).parent / "policyhub"


@pytest.fixture
def cli(client, domain, tmp_path):
    """Runs `policyhub` in `tmp_path` against the test server (by POLICYHUB_ENDPOINT) in `domain`."""
    if client.backend != "mongomock":
        pytest.skip("the command line is about its arguments and answers, not the backend: run once")

    def run(*args: str, env: dict[str, str] | None = None, domain_id: str = domain) -> subprocess.CompletedProcess:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("POLICYHUB_")}
        environment.update({"POLICYHUB_ENDPOINT": client.address, **(env or {})})
        command = [str(POLICYHUB), "--domain-id", domain_id, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=environment)

    return run


OPS_YAML = """\
policy_id: ops-servers
name: Operate servers
permissions: ["inventory.Server.*"]
statements:
  - {effect: DENY, actions: [inventory.Server.delete], resources: ["prod/*"]}
---
policy_id: auditor
name: Auditor
permissions: ["*.get"]
"""


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_policies_from_yaml_and_json_get_list_delete(cli, tmp_path):
    (tmp_path / "ops.yaml").write_text(OPS_YAML)
    (tmp_path / "more.json").write_text(json.dumps([{"policy_id": "viewer", "name": "Viewer", "permissions": ["a.*"]}]))
    created = _ok(cli("policy", "create", "-f", "ops.yaml", "-f", "more.json"))
    assert [line.split()[0] for line in created.splitlines()] == ["POLICY_ID", "ops-servers", "auditor", "viewer"]
    got = json.loads(_ok(cli("-o", "json", "policy", "get", "ops-servers")))
    assert (got["name"], got["statements"][0]["resources"]) == ("Operate servers", ["prod/*"])
    # Options after the subcommand too; yaml output.
    listed = yaml.safe_load(_ok(cli("policy", "list", "--exclude-managed", "--output", "yaml")))
    assert [policy["policy_id"] for policy in listed["results"]] == ["ops-servers", "auditor", "viewer"]
    assert listed["total_count"] == 3
    _ok(cli("policy", "delete", "viewer"))
    gone = cli("policy", "get", "viewer")
    assert (gone.returncode, gone.stdout) == (4, "")
    [line] = gone.stderr.splitlines()
    assert line.startswith("policyhub: NOT_FOUND: ERROR_NOT_FOUND: ") and "viewer" in line


def test_assign_then_check_exit_codes(cli, tmp_path):
    (tmp_path / "ops.yaml").write_text(OPS_YAML)
    _ok(cli("policy", "create", "-f", "ops.yaml"))
    assigned = _ok(cli("assign", "USER:alice", "POLICY:ops-servers", "POLICY:auditor"))
    assert assigned.splitlines()[1].split() == ["USER:alice", "POLICY:ops-servers", "CREATED", *assigned.split()[7:8]]
    allowed = cli("check", "alice", "inventory.Server.reboot", "prod/web1")
    assert (allowed.returncode, allowed.stdout.splitlines()) == (
        0,
        ["ALLOW ALLOWED", "policy ops-servers statement 1", "via USER:alice"],
    )
    denied = cli("check", "USER:alice", "inventory.Server.delete", "prod/web1")
    assert (denied.returncode, denied.stdout.splitlines()[:2]) == (
        1,
        ["DENY EXPLICIT_DENY", "policy ops-servers statement 0"],
    )
    nothing = cli("-o", "json", "check", "bob", "inventory.Server.get", "srv/1")
    assert nothing.returncode == 1 and json.loads(nothing.stdout)["reason"] == "NO_MATCHING_ALLOW"


def test_check_conditional_has_its_own_exit_code(cli, tmp_path):
    policy = {
        "policy_id": "office",
        "name": "Office",
        "statements": [
            {
                "effect": "ALLOW",
                "actions": ["a.get"],
                "resources": ["*"],
                "conditions": {"all": [{"key": "request.ip", "operator": "ip_address", "value": "10.0.0.0/8"}]},
            }
        ],
    }
    (tmp_path / "office.json").write_text(json.dumps(policy))
    _ok(cli("policy", "create", "-f", "office.json"))
    _ok(cli("assign", "carol", "POLICY:office"))
    open_question = cli("check", "carol", "a.get", "r")
    assert open_question.returncode == 3 and "missing context: request.ip" in open_question.stdout
    answered = cli("check", "carol", "a.get", "r", "--context", '{"request": {"ip": "10.1.2.3"}}')
    assert answered.returncode == 0


def test_export_then_import_into_another_domain(cli, tmp_path, other_domain):
    (tmp_path / "ops.yaml").write_text(OPS_YAML)
    _ok(cli("policy", "create", "-f", "ops.yaml"))
    _ok(cli("assign", "alice", "POLICY:ops-servers"))
    exported = cli("export", "-f", "saved.jsonl", "--progress")
    assert exported.returncode == 0 and exported.stderr.endswith("exported 3/3 items\n")
    lines = [json.loads(line) for line in (tmp_path / "saved.jsonl").read_text().splitlines()]
    assert lines[0]["header"]["counts"] == {"policies": 2, "assignments": 1}
    assert not (tmp_path / "saved.jsonl.partial").exists()
    dry = cli("-o", "json", "import", "-f", "saved.jsonl", "--dry-run", domain_id=other_domain)
    assert json.loads(_ok(dry))["dry_run"] is True
    # Without --progress and with stderr not a terminal: nothing on stderr.
    imported = cli("import", "-f", "saved.jsonl", domain_id=other_domain)
    assert _ok(imported).splitlines()[1].split() == ["policies", "2", "0", "0"] and imported.stderr == ""
    copy = cli("check", "alice", "inventory.Server.reboot", "prod/web1", domain_id=other_domain)
    assert copy.returncode == 0


def test_import_reads_an_export_from_stdout_and_grpcurl_output(cli, tmp_path, other_domain):
    (tmp_path / "ops.yaml").write_text(OPS_YAML)
    _ok(cli("policy", "create", "-f", "ops.yaml"))
    exported = _ok(cli("export"))
    # grpcurl prints each message as indented JSON, one after the other.
    (tmp_path / "grpcurl.json").write_text(
        "\n".join(json.dumps(json.loads(line), indent=2) for line in exported.split("\n") if line)
    )
    imported = json.loads(_ok(cli("-o", "json", "import", "-f", "grpcurl.json", domain_id=other_domain)))
    assert imported["policies"] == {"created": 2}


def test_a_dry_run_refusing_items_exits_1(cli, tmp_path):
    stream = [
        {"header": {"counts": {"assignments": 1}}},
        {"items": [{"assignment": {"subject": {"type": "USER", "id": "a"}, "grant": {"type": "GROUP", "id": "no"}}}]},
    ]
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(message) for message in stream))
    dry = cli("import", "-f", "bad.jsonl", "--dry-run")
    assert dry.returncode == 1 and "refused items[0]: NOT_FOUND: " in dry.stdout


def test_server_errors_are_one_line_with_their_exit_code(cli, tmp_path):
    bad = cli("policy", "get", "Bad_Id")
    assert bad.returncode == 4
    [line] = bad.stderr.splitlines()
    assert line.startswith("policyhub: INVALID_ARGUMENT: ERROR_INVALID_PARAMETER: policy_id: ")
    unreachable = cli("--timeout", "3", "policy", "list", env={"POLICYHUB_ENDPOINT": "127.0.0.1:1"})
    assert unreachable.returncode == 5
    [line] = unreachable.stderr.splitlines()
    assert line.startswith("policyhub: UNAVAILABLE: ")


def test_usage_errors_exit_2(cli, tmp_path):
    missing = cli("policy", "create", "-f", "missing.yaml")
    assert (missing.returncode, missing.stderr) == (
        2,
        "policyhub: cannot read missing.yaml: No such file or directory\n",
    )
    (tmp_path / "broken.yaml").write_text("policy_id: [unclosed\n")
    broken = cli("policy", "create", "-f", "broken.yaml")
    assert broken.returncode == 2 and len(broken.stderr.splitlines()) == 1
    assert cli("check", "alice", "a.get").returncode == 2
    bad_type = cli("assign", "alice", "TEAM:x")
    assert (bad_type.returncode, bad_type.stderr) == (
        2,
        "policyhub: 'TEAM:x': type 'TEAM' is not one of POLICY, ROLE, GROUP\n",
    )
    assert cli("--output", "xml", "policy", "list").returncode == 2


def test_token_from_the_environment(secure, domain, tmp_path):
    if secure.app.config.mongodb_uri:
        pytest.skip("the command line is about its arguments and answers, not the backend: run once")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("POLICYHUB_")}
    environment.update(POLICYHUB_ENDPOINT=secure.address, POLICYHUB_TOKEN=secure.token(did=domain, rol="DOMAIN_ADMIN"))
    (tmp_path / "ops.yaml").write_text(OPS_YAML)

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [str(POLICYHUB), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=environment)

    _ok(run("policy", "create", "-f", "ops.yaml"))
    listed = json.loads(_ok(run("-o", "json", "policy", "list", "--exclude-managed")))
    assert {policy["domain_id"] for policy in listed["results"]} == {domain} and listed["total_count"] == 2
    environment.pop("POLICYHUB_TOKEN")
    anonymous = run("--domain-id", domain, "policy", "list")
    assert anonymous.returncode == 4 and anonymous.stderr.startswith("policyhub: UNAUTHENTICATED: ")
