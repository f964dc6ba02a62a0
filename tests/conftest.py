"""Shared fixtures: a started application once on the embedded mongomock store and once over
the real MongoDB wire protocol (a secantusdb server started and stopped by the test session),
and a real policyhub gRPC server serving it on a free loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import jwt
import pymongo
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2_grpc

from policyhub._gen.spaceone.api.core.v1 import server_info_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import (
    api_key_pb2_grpc,
    assignment_pb2_grpc,
    audit_pb2_grpc,
    bulk_pb2_grpc,
    change_pb2_grpc,
    group_pb2_grpc,
    policy_pb2_grpc,
    repository_pb2_grpc,
    role_pb2_grpc,
)
from policyhub.bootstrap import Application, bootstrap, build_application
from policyhub.config import Config
from policyhub.server import PolicyHubServer

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def wire_mongodb_uri():
    """A MongoDB wire-protocol server (secantusdb, in memory) for the whole session: one per
    pytest-xdist worker, as each worker is a session of its own."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            pymongo.MongoClient(uri, serverSelectionTimeoutMS=500).admin.command("ping")
            break
        except pymongo.errors.PyMongoError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("secantusdb server did not start") from None
            time.sleep(0.2)
    yield uri
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session", params=["mongomock", "wire"])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def app(backend, request) -> Application:
    """The started application of `backend` for one test module, on a database of its own; the
    managers, services and servers of the module's tests run on it (mongoengine's connection is
    process-wide). Per module, not per session: the embedded store scans whole collections, so
    a database holding every earlier module's documents would make each call slower than the last."""
    uri = request.getfixturevalue("wire_mongodb_uri") if backend == "wire" else ""
    config = Config(
        host="127.0.0.1",
        port=free_port(),
        mongodb_uri=uri,
        database=f"policyhub_test_{uuid.uuid4().hex[:8]}",
        shutdown_grace_seconds=1,
    )
    app = bootstrap(config)
    app.start()
    yield app
    app.close()
    if uri:  # the embedded store goes with its client; the wire server keeps what it is not told to drop
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as admin:
            admin.drop_database(config.database)


@pytest.fixture
def long_calls(app, monkeypatch) -> None:
    """Raises the per-call database bounds (db_timeout_ms, and db_query_timeout_ms of the batch
    writes) for one test: a call writing a thousand documents takes seconds on the wire-protocol
    server (written in Python) of a busy machine, as its undo does. Tests assert behaviour, never
    time (tests/bench/ measures it)."""
    monkeypatch.setattr(app.database, "timeout_ms", 120_000)
    monkeypatch.setattr(app.database, "query_timeout_ms", 120_000)


@pytest.fixture
def embedded_app(app, backend) -> Application:
    """`app` on the embedded store only, for tests that do not depend on the backend."""
    if backend != "mongomock":
        pytest.skip("runs on the embedded store only")
    return app


@dataclass
class Client:
    channel: grpc.Channel
    policy: policy_pb2_grpc.PolicyStub
    repository: repository_pb2_grpc.RepositoryStub
    assignment: assignment_pb2_grpc.AssignmentStub
    audit: audit_pb2_grpc.AuditStub
    server_info: server_info_pb2_grpc.ServerInfoStub
    health: health_pb2_grpc.HealthStub
    address: str
    backend: str
    app: Application
    group: group_pb2_grpc.GroupStub
    role: role_pb2_grpc.RoleStub
    change: change_pb2_grpc.ChangeStub
    bulk: bulk_pb2_grpc.BulkStub


@pytest.fixture(scope="module")
def client(app, backend):
    """One server per backend and module; tests keep apart by using their own domain ids."""
    server = PolicyHubServer(app)
    server.start()
    address = f"127.0.0.1:{server.port}"
    channel = grpc.insecure_channel(address)
    yield Client(
        channel,
        policy_pb2_grpc.PolicyStub(channel),
        repository_pb2_grpc.RepositoryStub(channel),
        assignment_pb2_grpc.AssignmentStub(channel),
        audit_pb2_grpc.AuditStub(channel),
        server_info_pb2_grpc.ServerInfoStub(channel),
        health_pb2_grpc.HealthStub(channel),
        address,
        backend,
        app,
        group_pb2_grpc.GroupStub(channel),
        role_pb2_grpc.RoleStub(channel),
        change_pb2_grpc.ChangeStub(channel),
        bulk_pb2_grpc.BulkStub(channel),
    )
    channel.close()
    server.stop(grace=1)


@pytest.fixture
def domain() -> str:
    """A fresh tenant per test."""
    return f"domain-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def other_domain() -> str:
    return f"domain-{uuid.uuid4().hex[:12]}"


@dataclass
class SecureClient:
    """A server with authentication on (same database as `client`) and a token factory."""

    channel: grpc.Channel
    policy: policy_pb2_grpc.PolicyStub
    repository: repository_pb2_grpc.RepositoryStub
    assignment: assignment_pb2_grpc.AssignmentStub
    audit: audit_pb2_grpc.AuditStub
    api_key: api_key_pb2_grpc.ApiKeyStub
    signing_key: object
    app: Application
    group: group_pb2_grpc.GroupStub
    role: role_pb2_grpc.RoleStub
    address: str
    bulk: bulk_pb2_grpc.BulkStub

    def token(
        self,
        sub: str = "alice",
        did: str = "",
        rol: str = "USER",
        typ: str = "USER",
        *,
        key=None,
        algorithm: str = "RS256",
        **claims,
    ) -> str:
        now = int(time.time())
        payload = {
            "sub": sub,
            "did": did,
            "rol": rol,
            "typ": typ,
            "iss": SECURE_ISSUER,
            "aud": SECURE_AUDIENCE,
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        return jwt.encode(
            {k: v for k, v in payload.items() if v is not None},
            key or self.signing_key,
            algorithm=algorithm,
            headers={"kid": "test-key"},
        )

    def metadata(self, *args, **kwargs) -> tuple:
        return (("token", self.token(*args, **kwargs)),)


SECURE_ISSUER = "policyhub-tests"
SECURE_AUDIENCE = "policyhub"


@pytest.fixture(scope="session")
def jwt_keys(tmp_path_factory):
    """The token signing key of the session and the JWKS file that publishes it."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwks_file = tmp_path_factory.mktemp("keys") / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [{**public_jwk, "kid": "test-key", "use": "sig", "alg": "RS256"}]}))
    return private_key, jwks_file


@pytest.fixture(scope="module")
def secure(client, jwt_keys):
    """Shares `client`'s database connection (mongoengine's is process-wide), so it follows its backend."""
    private_key, jwks_file = jwt_keys
    config = replace(
        client.app.config,
        port=free_port(),
        jwks_file=str(jwks_file),
        jwt_issuer=SECURE_ISSUER,
        jwt_audience=SECURE_AUDIENCE,
    )
    app = build_application(config, client.app.database)
    server = PolicyHubServer(app)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield SecureClient(
        channel,
        policy_pb2_grpc.PolicyStub(channel),
        repository_pb2_grpc.RepositoryStub(channel),
        assignment_pb2_grpc.AssignmentStub(channel),
        audit_pb2_grpc.AuditStub(channel),
        api_key_pb2_grpc.ApiKeyStub(channel),
        private_key,
        app,
        group_pb2_grpc.GroupStub(channel),
        role_pb2_grpc.RoleStub(channel),
        f"127.0.0.1:{server.port}",
        bulk_pb2_grpc.BulkStub(channel),
    )
    channel.close()
    server.stop(grace=1)
