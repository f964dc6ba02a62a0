"""The README's grpcurl walk-through, run line by line against a test server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import parse
from policyhub._gen.spaceone.api.repository.v1 import api_key_pb2 as kpb
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb

README = Path(__file__).resolve().parents[2] / "README.md"
GRPCURL = Path(sys.executable).parent / "grpcurl"


def walkthrough_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Walk-through with grpcurl", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.startswith(".venv/bin/grpcurl")]


def test_readme_walkthrough_works_as_written(client):
    if client.backend != "mongomock":
        pytest.skip("the walk-through is about the commands, not the backend: run once")
    commands = walkthrough_commands()
    assert len(commands) >= 10
    for command in commands:
        command = [str(GRPCURL) if part == ".venv/bin/grpcurl" else part for part in command]
        command = [client.address if part == "127.0.0.1:50051" else part for part in command]
        command = [part.replace("domain-demo", "domain-readme") for part in command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"


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
