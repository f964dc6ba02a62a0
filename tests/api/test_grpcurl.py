"""grpcurl (a real client, knowing nothing but server reflection) against the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(address: str, *args: str, data: dict | None = None) -> subprocess.CompletedProcess:
    command = [str(GRPCURL), "-plaintext", "-max-time", "20"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run([*command, address, *args], capture_output=True, text=True, timeout=60)


def test_list_services_by_reflection(client):
    result = grpcurl(client.address, "list")
    assert result.returncode == 0, result.stderr
    assert {
        "spaceone.api.repository.v1.Policy",
        "spaceone.api.repository.v1.Repository",
        "spaceone.api.core.v1.ServerInfo",
        "grpc.health.v1.Health",
    } <= set(result.stdout.split())


def test_create_and_get_a_policy_with_json(client, domain):
    created = grpcurl(
        client.address,
        "spaceone.api.repository.v1.Policy/create",
        data={
            "policy_id": "curl-1",
            "name": "From grpcurl",
            "permissions": ["inventory.*"],
            "tags": {"owner": "me"},
            "domain_id": domain,
        },
    )
    assert created.returncode == 0, created.stderr
    got = grpcurl(
        client.address, "spaceone.api.repository.v1.Policy/get", data={"policy_id": "curl-1", "domain_id": domain}
    )
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    assert body["policy_id"] == "curl-1" and body["permissions"] == ["inventory.*"] and body["tags"] == {"owner": "me"}


def test_errors_carry_spaceone_text(client, domain):
    result = grpcurl(
        client.address, "spaceone.api.repository.v1.Policy/get", data={"policy_id": "Bad_Id", "domain_id": domain}
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "ERROR_INVALID_PARAMETER: policy_id" in result.stderr
