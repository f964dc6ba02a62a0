"""A server whose caller keys come from an identity provider's jwks_uri (a local HTTPS JWKS
server that rotates keys), through gRPC; and start-up against a provider that is down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import grpc
import jwt
import pytest
from conftest import free_port
from cryptography.hazmat.primitives.asymmetric import ec
from jwks_server import JwksServer

from helpers import expect_error
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2_grpc
from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

ISSUER = "https://idp.test"
AUDIENCE = "policyhub"


@pytest.fixture
def provider(tmp_path):
    server = JwksServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def serve(embedded_app, provider):
    """Starts a server on `embedded_app`'s database with keys from `provider`, its background
    jobs (the periodic key refresh among them) running; returns a Policy stub."""
    started = []

    def start(**settings) -> policy_pb2_grpc.PolicyStub:
        identity = {
            "jwks_uri": provider.uri,
            "jwks_ca_file": provider.ca_file,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwks_refresh_seconds": 3600,
            "jwks_refresh_min_seconds": 3600,
        }
        config = replace(embedded_app.config, port=free_port(), **{**identity, **settings})
        app = build_application(config, embedded_app.database)
        server = PolicyHubServer(app)
        server.start()
        for job in app.jobs:
            job.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((app, server, channel))
        return policy_pb2_grpc.PolicyStub(channel)

    yield start
    for app, server, channel in started:
        for job in app.jobs:
            job.stop()
        channel.close()
        server.stop(grace=1)


def token(key, kid: str, domain: str) -> tuple:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "admin", "did": domain, "typ": "USER", "rol": "DOMAIN_ADMIN"}
    encoded = jwt.encode({**claims, "iat": now, "exp": now + 300}, key, algorithm="ES256", headers={"kid": kid})
    return (("token", encoded),)


def get(stub, domain: str, metadata) -> pb.PolicyInfo:
    request = pb.GetRepositoryPolicyRequest(policy_id="managed-read-only", domain_id=domain)
    return stub.get(request, metadata=metadata, timeout=10)


def refused(stub, domain: str, metadata) -> str:
    request = pb.GetRepositoryPolicyRequest(policy_id="managed-read-only", domain_id=domain)
    return expect_error(grpc.StatusCode.UNAUTHENTICATED, stub.get, request, metadata=metadata).details()


def test_rotated_keys_are_accepted_and_forged_kids_do_not_hammer_the_provider(serve, provider, domain):
    stub = serve()
    old = provider.signing_keys["key-1"]
    assert get(stub, domain, token(old, "key-1", domain)).is_managed
    new = provider.rotate("key-2")
    assert get(stub, domain, token(new, "key-2", domain)).is_managed
    assert provider.requests == 2
    forger = ec.generate_private_key(ec.SECP256R1())
    for _ in range(20):
        details = refused(stub, domain, token(forger, uuid.uuid4().hex, domain))
        assert details == "ERROR_AUTHENTICATE_FAILURE: unknown key id"
    assert provider.requests == 2
    # The rotation took key-1 out of the published set.
    assert refused(stub, domain, token(old, "key-1", domain)).endswith("unknown key id")


def test_old_keys_keep_working_while_the_provider_is_down(serve, provider, domain, caplog):
    stub = serve()
    key = provider.signing_keys["key-1"]
    provider.stop()
    with caplog.at_level(logging.WARNING, logger="policyhub.identity.provider_keys"):
        # An unknown kid makes the server try the provider, which is down.
        assert refused(stub, domain, token(key, "key-2", domain)).endswith("unknown key id")
    assert any("Connection refused" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert get(stub, domain, token(key, "key-1", domain)).is_managed


def test_the_keys_are_refreshed_periodically(serve, provider, domain):
    stub = serve(jwks_refresh_seconds=1, jwks_refresh_min_seconds=1)
    new = provider.rotate("key-2")
    deadline = time.monotonic() + 30
    while provider.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    provider.stop()
    # Accepted with the provider down: the periodic refresh, not the token, fetched key-2.
    assert get(stub, domain, token(new, "key-2", domain)).is_managed


def spawn(env_extra: dict) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
    env.update({"POLICYHUB_PORT": str(free_port()), "POLICYHUB_JWT_ISSUER": ISSUER, "POLICYHUB_JWT_AUDIENCE": AUDIENCE})
    env.update(env_extra)
    process = subprocess.run(
        [sys.executable, "-m", "policyhub"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return process.returncode, process.stderr


def test_an_unreachable_provider_at_start_stops_the_server_with_one_line(provider):
    provider.stop()
    code, err = spawn({"POLICYHUB_JWKS_URI": provider.uri, "POLICYHUB_JWKS_CA_FILE": provider.ca_file})
    assert code == 1
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("policyhub:")]
    assert line.startswith(f"policyhub: cannot start: config key jwks_uri: cannot fetch keys from {provider.uri}")
    assert "Connection refused" in line


def test_an_untrusted_provider_at_start_stops_the_server(provider):
    # Without jwks_ca_file the system's roots apply, and they do not know the test CA.
    code, err = spawn({"POLICYHUB_JWKS_URI": provider.uri})
    assert code == 1 and "Traceback" not in err
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert provider.requests == 0


def test_both_key_settings_are_a_configuration_error(provider, tmp_path):
    keys = tmp_path / "jwks.json"
    keys.write_text('{"keys": []}')
    code, err = spawn({"POLICYHUB_JWKS_URI": provider.uri, "POLICYHUB_JWKS_FILE": str(keys)})
    assert code == 2 and "Traceback" not in err
    assert "configuration error: config keys jwks_file and jwks_uri: set one of them, not both" in err
    assert provider.requests == 0
