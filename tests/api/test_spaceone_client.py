"""SpaceONE's own client library: spaceone-core's gRPC client (what every SpaceONE microservice
calls other services with) connects to the SpaceONE listener and reads a managed policy, with
no domain and no token, as an installation fetching public policies does.

The client runs in its own virtualenv (tests/spaceone/.venv, created here once and reused
while it holds exactly SPACEONE_REQUIREMENTS), installed from the package index by uv (which
the Makefile puts in the project's virtualenv). The test is skipped only when the index is out
of reach; any other failure fails it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port

from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

ROOT = Path(__file__).resolve().parents[2]
SPACEONE_DIR = ROOT / "tests" / "spaceone"
VENV = SPACEONE_DIR / ".venv"
CLIENT = SPACEONE_DIR / "client.py"
SPACEONE_REQUIREMENTS = ("spaceone-core==1.12.39", "spaceone-api==1.12.54", "protobuf==3.20.3")
MANAGED = "managed-read-only"
# What pip or uv says when the index is out of reach (as opposed to a broken requirement or build).
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Network is unreachable|Max retries exceeded|No route to host|Connection refused|ConnectTimeout"
    r"|error sending request|dns error"
)


@pytest.fixture(scope="module")
def spaceone_python() -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    wanted = "\n".join(SPACEONE_REQUIREMENTS)
    if marker.is_file() and marker.read_text() == wanted and python.is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "uv"),
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            *SPACEONE_REQUIREMENTS,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        if UNREACHABLE.search(result.stderr + result.stdout):
            pytest.skip(f"uv cannot reach the package index to install {', '.join(SPACEONE_REQUIREMENTS)}")
        pytest.fail(
            f"uv pip install of the SpaceONE client failed ({result.returncode}):\n{result.stderr}", pytrace=False
        )
    marker.write_text(wanted)
    return python


def _run(python: Path, port: int) -> dict:
    result = subprocess.run(
        [str(python), str(CLIENT), f"127.0.0.1:{port}", MANAGED],
        cwd=SPACEONE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"SpaceONE client failed ({result.returncode}):\n{result.stderr}{result.stdout}"
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_spaceone_core_client_reads_a_managed_policy(client, request):
    if client.backend != "mongomock":
        pytest.skip("the SpaceONE client tests the gRPC surface, the same on every backend; it runs on mongomock")
    python = request.getfixturevalue("spaceone_python")
    config = replace(client.app.config, port=free_port(), spaceone_port=free_port())
    server = PolicyHubServer(build_application(config, client.app.database))
    server.start()
    try:
        out = _run(python, server.spaceone_port)
        # The main port lists services spaceone-api 1.12 lacks: the client cannot connect there.
        main = _run(python, server.port)
    finally:
        server.stop(grace=1)

    assert out["ok"] is True, out
    assert out["services"] == ["Health", "Policy", "Repository", "ServerInfo", "ServerReflection"]
    assert [r["repository_id"] for r in out["local_repositories"]] == ["repo-local"]
    assert out["policy"] == {
        "policy_id": MANAGED,
        "name": "Read only",
        "permissions": ["*.get", "*.list", "*.stat", "*.list_users", "repository.Change.watch"],
    }
    (listed,) = out["listed"]["results"]
    assert out["listed"]["total_count"] == 1
    assert (listed["policy_id"], listed["name"], listed["state"]) == (MANAGED, "Read only", "ENABLED")
    assert listed["repository_info"]["repository_id"] == "repo-managed"
    assert main["ok"] is False and "ERROR_GRPC_CONNECTION" in main["error"]
