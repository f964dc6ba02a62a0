"""Remote repositories: a second policyhub process serves as the remote of the test server
(SpaceONE as a remote: test_spaceone_remote.py).

Registration asks the endpoint for its local repository; get/list/stat through a remote repository are served by the
remote's Policy API (read-only, marked with the remote repository); ids never shadow each
other; answers are cached within remote_cache_seconds; a remote that goes away answers
UNAVAILABLE naming its endpoint within the deadline, and local policies keep working.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, replace

import grpc
import pytest
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2_grpc

from helpers import as_dict, error_info, expect_error, expect_unavailable, field_violations, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, audit_pb2, policy_pb2_grpc, repository_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as rpb
from policyhub.api.errors import ErrorInterceptor
from policyhub.bootstrap import build_application
from policyhub.server import PolicyHubServer

REPO_ID_RE = re.compile(r"repo-[0-9a-f]{12}")
# The fast server's remote settings: one remote operation takes at most 1 s, answers are cached 1 s.
FAST_TIMEOUT = 1.0
FAST_CACHE = 1.0
SLACK = 1.0  # scheduling slack on a loaded build machine
REMOTE_TOKEN = "remote-service-token"


# -- a second policyhub process (the remote) -----------------------------------------------------


@dataclass
class RemoteProcess:
    process: subprocess.Popen
    port: int
    channel: grpc.Channel
    policy: policy_pb2_grpc.PolicyStub
    log: object

    @property
    def endpoint(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_remote() -> RemoteProcess:
    """`python -m policyhub` on the embedded store, development mode, a free loopback port."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("POLICYHUB_")}
    env.update(
        POLICYHUB_HOST="127.0.0.1",
        POLICYHUB_PORT=str(port),
        POLICYHUB_LOG_LEVEL="WARNING",
        POLICYHUB_SHUTDOWN_GRACE_SECONDS="1",
    )
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "policyhub"], env=env, stdout=log, stderr=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    except grpc.FutureTimeoutError:
        process.kill()
        log.seek(0)
        raise RuntimeError(f"remote policyhub did not start: {log.read().decode(errors='replace')}") from None
    return RemoteProcess(process, port, channel, policy_pb2_grpc.PolicyStub(channel), log)


@pytest.fixture(scope="module")
def remote():
    server = start_remote()
    yield server
    server.stop()


@pytest.fixture
def mongomock_only(client):
    if client.backend != "mongomock":
        pytest.skip(
            "remote reads go to another installation's API, not to our database; the repository "
            "record itself is covered on the wire backend by test_register_get_list_deregister"
        )


# -- a second in-process server on the same database, with short remote settings --------------


@dataclass
class Stubs:
    policy: policy_pb2_grpc.PolicyStub
    repository: repository_pb2_grpc.RepositoryStub
    address: str


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for localhost / 127.0.0.1 (server certificate and trust root)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "ca.pem").write_bytes(cert_pem)
    return {"ca_file": str(directory / "ca.pem"), "cert": cert_pem, "key": key_pem}


@pytest.fixture(scope="module")
def fast(client, tls_files):
    config = replace(
        client.app.config,
        port=free_port(),
        remote_timeout_seconds=FAST_TIMEOUT,
        remote_cache_seconds=FAST_CACHE,
        remote_token=REMOTE_TOKEN,
        remote_ca_file=tls_files["ca_file"],
    )
    app = build_application(config, client.app.database)
    server = PolicyHubServer(app)
    server.start()
    address = f"127.0.0.1:{server.port}"
    channel = grpc.insecure_channel(address)
    yield Stubs(policy_pb2_grpc.PolicyStub(channel), repository_pb2_grpc.RepositoryStub(channel), address)
    channel.close()
    server.stop(grace=1)


# -- helpers -----------------------------------------------------------------------------------


def register(stubs, name: str, endpoint: str, domain: str = "") -> rpb.RepositoryInfo:
    return stubs.repository.register(
        rpb.CreateRepositoryRequest(name=name, repository_type="remote", endpoint=endpoint, domain_id=domain),
        timeout=15,
    )


def deregister(stubs, repository_id: str) -> None:
    try:
        stubs.repository.deregister(rpb.RepositoryRequest(repository_id=repository_id), timeout=10)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(stub, domain: str, policy_id: str, name: str = "a policy", **fields) -> pb.PolicyInfo:
    request = parse(pb.CreatePolicyRequest, {"policy_id": policy_id, "name": name, "domain_id": domain, **fields})
    return stub.create(request, timeout=10)


def get(stub, domain: str, policy_id: str, repository_id: str = "", **fields) -> pb.PolicyInfo:
    return stub.get(
        pb.GetRepositoryPolicyRequest(policy_id=policy_id, repository_id=repository_id, domain_id=domain, **fields),
        timeout=15,
    )


SEED = {
    "description": "seeded on the remote",
    "permissions": ["inventory.*"],
    "statements": [{"effect": "DENY", "actions": ["inventory.Server.delete"], "resources": ["prod/*"]}],
    "labels": ["ops", "remote"],
    "tags": {"team": "ops", "tier": 1},
}
COMPARED = (
    "policy_id",
    "name",
    "state",
    "permissions",
    "labels",
    "tags",
    "domain_id",
    "created_at",
    "updated_at",
    "description",
    "statements",
    "version",
    "etag",
)


# -- registration ------------------------------------------------------------------------------


def test_register_get_list_deregister(client, remote, domain):
    policy_id = unique("remote-one")
    seeded = create(remote.policy, domain, policy_id, "Remote one", **SEED)
    name = unique("remote")
    repository = register(client, name, remote.endpoint, domain)
    try:
        assert REPO_ID_RE.fullmatch(repository.repository_id)
        assert (repository.name, repository.repository_type, repository.endpoint) == (name, "remote", remote.endpoint)
        assert repository.remote_repository_id == "repo-local"  # the remote's, kept beside our own id
        assert repository.created_at.endswith("Z")
        got = client.repository.get(rpb.GetRepositoryRequest(repository_id=repository.repository_id), timeout=10)
        assert got == repository
        listed = client.repository.list(rpb.RepositoryQuery(repository_type="remote"), timeout=10)
        assert repository.repository_id in [r.repository_id for r in listed.results]
        # Without sort, oldest first: the built-ins, then the latest registration last.
        everything = [r.repository_id for r in client.repository.list(rpb.RepositoryQuery(), timeout=10).results]
        assert everything[:2] == ["repo-managed", "repo-local"] and everything[-1] == repository.repository_id
        audit = client.audit.list(
            audit_pb2.AuditQuery(domain_id=domain, resource_id=repository.repository_id), timeout=10
        )
        assert [entry.method for entry in audit.results] == ["repository.Repository.register"]

        # get through the remote repository: the remote's policy, in our remote repository
        fetched = get(client.policy, domain, policy_id, repository.repository_id)
        expected = {key: value for key, value in as_dict(seeded).items() if key in COMPARED}
        assert {key: value for key, value in as_dict(fetched).items() if key in COMPARED} == expected
        assert fetched.repository_info == repository
        assert not fetched.is_managed
        # without repository_id: not local, not managed, so found in the (only) remote
        assert get(client.policy, domain, policy_id) == fetched
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id="no-such-policy", repository_id=repository.repository_id, domain_id=domain
            ),
        )
        # another domain sees the remote's policies of that domain only
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id=policy_id, repository_id=repository.repository_id, domain_id=unique("domain")
            ),
        )

        # list through the remote repository: query passed through, total_count from the remote
        page = client.policy.list(
            parse(
                pb.PolicyQuery,
                {
                    "domain_id": domain,
                    "repository_id": repository.repository_id,
                    "exclude_managed": True,
                    "query": {"filter": [{"k": "labels", "v": "remote", "o": "eq"}], "page": {"start": 1, "limit": 10}},
                },
            ),
            timeout=15,
        )
        assert page.total_count == 1 and [p.policy_id for p in page.results] == [policy_id]
        assert page.results[0].repository_info == repository and page.results[0].name == "Remote one"
        # the remote repository serves the remote's local repository: not its managed policies
        everything = client.policy.list(
            pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id), timeout=15
        )
        assert (everything.total_count, [p.policy_id for p in everything.results]) == (1, [policy_id])
        assert everything.results[0].repository_info == repository
        none = client.policy.list(
            parse(
                pb.PolicyQuery,
                {
                    "domain_id": domain,
                    "repository_id": repository.repository_id,
                    "query": {"filter": [{"k": "name", "v": "nothing like it", "o": "eq"}]},
                },
            ),
            timeout=15,
        )
        assert (none.total_count, list(none.results)) == (0, [])
        # a malformed query is refused here, naming the bad part, before the remote is asked
        error = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            client.policy.list,
            parse(
                pb.PolicyQuery,
                {
                    "domain_id": domain,
                    "repository_id": repository.repository_id,
                    "query": {"filter": [{"k": "name", "v": "x", "o": "bogus"}]},
                },
            ),
        )
        assert field_violations(error) == ["query.filter[0].o"]
        # without repository_id a list is local + managed only (one round trip)
        local = client.policy.list(pb.PolicyQuery(domain_id=domain), timeout=10)
        assert policy_id not in [p.policy_id for p in local.results]
        # stat through the remote repository
        stat = as_dict(
            client.policy.stat(
                parse(
                    pb.PolicyStatQuery,
                    {
                        "domain_id": domain,
                        "repository_id": repository.repository_id,
                        "query": {
                            "aggregate": [
                                {
                                    "group": {
                                        "keys": [{"k": "state", "n": "state"}],
                                        "fields": [{"o": "count", "n": "n"}],
                                    }
                                }
                            ],
                            "filter": [{"k": "is_managed", "v": False, "o": "eq"}],
                        },
                    },
                ),
                timeout=15,
            )
        )
        assert stat["results"] == [{"state": "ENABLED", "n": 1}]

        # remote policies are read-only here: writes address local policies only
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.update,
            pb.UpdatePolicyRequest(policy_id=policy_id, name="changed", domain_id=domain),
        )
        expect_error(
            grpc.StatusCode.NOT_FOUND, client.policy.delete, pb.PolicyRequest(policy_id=policy_id, domain_id=domain)
        )
        assert get(remote.policy, domain, policy_id).name == "Remote one"

        renamed = client.repository.update(
            rpb.UpdateRepositoryRequest(repository_id=repository.repository_id, name=name + "-renamed"), timeout=10
        )
        assert renamed.name == name + "-renamed" and renamed.endpoint == remote.endpoint
    finally:
        deregister(client, repository.repository_id)
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.repository.get,
        rpb.GetRepositoryRequest(repository_id=repository.repository_id),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id=policy_id, repository_id=repository.repository_id, domain_id=domain),
    )
    expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.policy.get,
        pb.GetRepositoryPolicyRequest(policy_id=policy_id, domain_id=domain),
    )


@pytest.mark.parametrize(
    "endpoint, field",
    [
        ("", "endpoint"),
        ("http://x", "endpoint"),
        ("http://127.0.0.1:50051", "endpoint"),
        ("grpc://", "endpoint"),
        ("grpc://host", "endpoint"),
        ("grpc://host:", "endpoint"),
        ("grpc://host:99999", "endpoint"),
        ("grpc://host:0", "endpoint"),
        ("grpc://:50051", "endpoint"),
        ("grpc://host:50051/path", "endpoint"),
        ("grpc://user@host:50051", "endpoint"),
        ("grpc://ho st:50051", "endpoint"),
        ("grpc://-host-:50051", "endpoint"),
        ("grpc://999.1.1.1:50051", "endpoint"),
        ("grpc://[not-ipv6]:50051", "endpoint"),
        ("GRPC://host:50051", "endpoint"),
        ("grpcs://host:50051", "endpoint"),
        (" grpc://host:50051", "endpoint"),
    ],
)
def test_bad_endpoints_are_invalid_argument(client, endpoint, field):
    name = unique("bad")
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.repository.register,
        rpb.CreateRepositoryRequest(name=name, repository_type="remote", endpoint=endpoint),
    )
    assert field_violations(error) == [field]
    assert client.repository.list(rpb.RepositoryQuery(name=name), timeout=10).total_count == 0


def test_unreachable_endpoint_at_register_is_unavailable_and_nothing_stored(client, fast):
    # nothing listens on this port: connection refused, retried with backoff, then UNAVAILABLE
    for stubs, bound in ((client, 3 + SLACK), (fast, FAST_TIMEOUT + SLACK)):
        endpoint = f"grpc://127.0.0.1:{free_port()}"
        name = unique("unreachable")
        expect_unavailable(
            endpoint,
            stubs.repository.register,
            rpb.CreateRepositoryRequest(name=name, repository_type="remote", endpoint=endpoint),
            bound,
        )
        assert client.repository.list(rpb.RepositoryQuery(name=name), timeout=10).total_count == 0
    # an unknown host name
    expect_unavailable(
        "grpc://no-such-host.invalid:50051",
        fast.repository.register,
        rpb.CreateRepositoryRequest(
            name=unique("nohost"), repository_type="remote", endpoint="grpc://no-such-host.invalid:50051"
        ),
        FAST_TIMEOUT + SLACK,
    )


def test_silent_endpoint_at_register_is_unavailable_within_the_deadline(client, fast):
    """A peer that accepts TCP connections and never answers: bounded by the deadline, not a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"grpc://127.0.0.1:{silent.getsockname()[1]}"
        name = unique("silent")
        error = expect_unavailable(
            endpoint,
            fast.repository.register,
            rpb.CreateRepositoryRequest(name=name, repository_type="remote", endpoint=endpoint),
            FAST_TIMEOUT + SLACK,
        )
        assert dict(error_info(error).metadata)["remote_code"] in ("DEADLINE_EXCEEDED", "UNAVAILABLE")
    assert client.repository.list(rpb.RepositoryQuery(name=name), timeout=10).total_count == 0


def test_endpoint_without_a_policy_api_is_refused(client, fast, mongomock_only):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        endpoint = f"grpc://127.0.0.1:{port}"
        name = unique("not-policy")
        error = expect_unavailable(
            endpoint,
            fast.repository.register,
            rpb.CreateRepositoryRequest(name=name, repository_type="remote", endpoint=endpoint),
            FAST_TIMEOUT + SLACK,
        )
        assert "answered UNIMPLEMENTED" in error.details()
        assert dict(error_info(error).metadata)["remote_code"] == "UNIMPLEMENTED"
        assert client.repository.list(rpb.RepositoryQuery(name=name), timeout=10).total_count == 0
    finally:
        server.stop(0)


def test_duplicate_name_or_endpoint_is_already_exists(client, remote, mongomock_only):
    name = unique("remote")
    repository = register(client, name, remote.endpoint)
    try:
        error = expect_error(
            grpc.StatusCode.ALREADY_EXISTS,
            client.repository.register,
            rpb.CreateRepositoryRequest(
                name=name, repository_type="remote", endpoint=f"grpc://localhost:{remote.port}"
            ),
        )
        assert "name=" in error.details()
        error = expect_error(
            grpc.StatusCode.ALREADY_EXISTS,
            client.repository.register,
            rpb.CreateRepositoryRequest(name=unique("other"), repository_type="remote", endpoint=remote.endpoint),
        )
        assert "endpoint=" in error.details()
        expect_error(
            grpc.StatusCode.ALREADY_EXISTS,
            client.repository.update,
            rpb.UpdateRepositoryRequest(repository_id=repository.repository_id, name="Managed Repository"),
        )
    finally:
        deregister(client, repository.repository_id)


# -- no shadowing ------------------------------------------------------------------------------


def test_remote_policies_never_shadow_local_or_managed_ones(client, remote, domain, mongomock_only):
    shared = unique("shared")
    create(remote.policy, domain, shared, "remote copy")
    create(client.policy, domain, shared, "local copy")
    only_remote = unique("only-remote")
    create(remote.policy, domain, only_remote, "remote only")
    repository = register(client, unique("remote"), remote.endpoint)
    try:
        local = get(client.policy, domain, shared)
        assert (local.name, local.repository_info.repository_id) == ("local copy", "repo-local")
        qualified = get(client.policy, domain, shared, repository.repository_id)
        assert (qualified.name, qualified.repository_info.repository_id) == ("remote copy", repository.repository_id)
        # managed ids are ours (repo-managed); the remote repository serves the remote's local ones
        managed = get(client.policy, domain, "managed-read-only")
        assert managed.repository_info.repository_id == "repo-managed" and managed.is_managed
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id="managed-read-only", repository_id=repository.repository_id, domain_id=domain
            ),
        )
        # a soft-deleted local policy still holds its id: the remote one does not show through
        client.policy.delete(pb.PolicyRequest(policy_id=shared, domain_id=domain), timeout=10)
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(policy_id=shared, domain_id=domain),
        )
        deleted = get(client.policy, domain, shared, include_deleted=True)
        assert (deleted.name, deleted.state) == ("local copy", pb.PolicyInfo.DELETED)
        # qualified by another repository: only there
        assert get(client.policy, domain, only_remote).repository_info == repository
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(policy_id=only_remote, repository_id="repo-local", domain_id=domain),
        )
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(policy_id=only_remote, repository_id="repo-nope", domain_id=domain),
        )
        # remote policies are not granted by assignments here (they are read-only mirrors)
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.assignment.add,
            parse(
                assignment_pb2.AssignmentsRequest,
                {
                    "domain_id": domain,
                    "grants": [{"type": "POLICY", "id": only_remote}],
                    "subject_type": "USER",
                    "subject_ids": ["alice"],
                },
            ),
        )
    finally:
        deregister(client, repository.repository_id)


def test_an_id_in_two_remotes_needs_a_repository_id(client, remote, domain, mongomock_only):
    policy_id = unique("twice")
    create(remote.policy, domain, policy_id, "in both")
    first = register(client, unique("remote-a"), remote.endpoint)
    # the same installation under another name: every remote id is in two remote repositories
    second = register(client, unique("remote-b"), f"grpc://localhost:{remote.port}")
    try:
        error = expect_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(policy_id=policy_id, domain_id=domain),
        )
        assert first.repository_id in error.details() and second.repository_id in error.details()
        assert "pass repository_id" in error.details()
        for repository in (first, second):
            assert get(client.policy, domain, policy_id, repository.repository_id).repository_info == repository
    finally:
        deregister(client, first.repository_id)
        deregister(client, second.repository_id)
    assert get(remote.policy, domain, policy_id).name == "in both"


def test_an_installation_that_is_its_own_remote_does_not_loop(fast, domain, mongomock_only):
    repository = register(fast, unique("myself"), f"grpc://{fast.address}")
    try:
        started = time.monotonic()
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            fast.policy.get,
            pb.GetRepositoryPolicyRequest(policy_id=unique("missing"), domain_id=domain),
        )
        assert time.monotonic() - started < FAST_TIMEOUT
        create(fast.policy, domain, "mine", "mine")
        assert get(fast.policy, domain, "mine").repository_info.repository_id == "repo-local"
        assert get(fast.policy, domain, "mine", repository.repository_id).repository_info == repository
    finally:
        deregister(fast, repository.repository_id)


# -- cache -------------------------------------------------------------------------------------


def test_remote_changes_are_visible_within_remote_cache_seconds(fast, remote, domain, mongomock_only):
    policy_id = unique("cached")
    create(remote.policy, domain, policy_id, "before")
    repository = register(fast, unique("remote"), remote.endpoint)
    try:
        filled = time.monotonic()
        assert get(fast.policy, domain, policy_id, repository.repository_id).name == "before"
        listed = fast.policy.list(
            pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id, policy_id=policy_id), timeout=15
        )
        assert [p.name for p in listed.results] == ["before"]
        remote.policy.update(pb.UpdatePolicyRequest(policy_id=policy_id, name="after", domain_id=domain), timeout=10)
        changed = time.monotonic()
        first = get(fast.policy, domain, policy_id, repository.repository_id).name
        if time.monotonic() - filled < FAST_CACHE * 0.8:
            assert first == "before", "served from the cache within remote_cache_seconds"
        # visible at most remote_cache_seconds after the change (plus one remote call)
        while True:
            got = get(fast.policy, domain, policy_id, repository.repository_id).name
            listed = fast.policy.list(
                pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id, policy_id=policy_id),
                timeout=15,
            )
            if got == "after" and [p.name for p in listed.results] == ["after"]:
                break
            assert time.monotonic() - changed < FAST_CACHE + SLACK, "stale beyond remote_cache_seconds"
            time.sleep(0.05)
        assert time.monotonic() - changed < FAST_CACHE + SLACK
    finally:
        deregister(fast, repository.repository_id)


# -- the remote goes away ----------------------------------------------------------------------


def test_remote_stopped_mid_test_answers_unavailable_and_local_policies_still_work(
    client, fast, domain, mongomock_only
):
    doomed = start_remote()
    repository = None
    try:
        create(doomed.policy, domain, "remote-a", "remote a")
        create(doomed.policy, domain, "remote-b", "remote b")
        create(fast.policy, domain, "local-a", "local a", permissions=["inventory.*"])
        repository = register(fast, unique("doomed"), doomed.endpoint)
        endpoint = doomed.endpoint
        assert get(fast.policy, domain, "remote-a", repository.repository_id).name == "remote a"
        assert (
            fast.policy.list(
                pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id), timeout=15
            ).total_count
            == 2
        )

        doomed.stop()
        bound = FAST_TIMEOUT + SLACK
        # not in the cache: asked, and the remote is gone
        expect_unavailable(
            endpoint,
            fast.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id="remote-b", repository_id=repository.repository_id, domain_id=domain
            ),
            bound,
        )
        expect_unavailable(
            endpoint,
            fast.policy.list,
            parse(
                pb.PolicyQuery,
                {
                    "domain_id": domain,
                    "repository_id": repository.repository_id,
                    "query": {"filter": [{"k": "name", "v": "remote", "o": "contain"}]},
                },
            ),
            bound,
        )
        expect_unavailable(
            endpoint,
            fast.policy.stat,
            parse(
                pb.PolicyStatQuery,
                {"domain_id": domain, "repository_id": repository.repository_id, "query": {"distinct": "state"}},
            ),
            bound,
        )
        # unqualified: cannot tell whether the gone remote holds the id
        expect_unavailable(
            endpoint, fast.policy.get, pb.GetRepositoryPolicyRequest(policy_id="remote-b", domain_id=domain), bound
        )
        # the default settings (3 s deadline, 2 retries) bound it too
        expect_unavailable(
            endpoint,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id="remote-b", repository_id=repository.repository_id, domain_id=domain
            ),
            3 + SLACK,
        )
        # cached answers expire after remote_cache_seconds; then UNAVAILABLE too
        time.sleep(FAST_CACHE)
        expect_unavailable(
            endpoint,
            fast.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id="remote-a", repository_id=repository.repository_id, domain_id=domain
            ),
            bound,
        )

        # local and managed policies never depend on a remote
        assert get(fast.policy, domain, "local-a").name == "local a"
        assert get(fast.policy, domain, "managed-read-only").is_managed
        assert [
            p.policy_id
            for p in fast.policy.list(pb.PolicyQuery(domain_id=domain, exclude_managed=True), timeout=10).results
        ] == ["local-a"]
        fast.policy.update(
            pb.UpdatePolicyRequest(policy_id="local-a", name="still works", domain_id=domain), timeout=10
        )
        # a missing id is NOT_FOUND locally but the remote cannot be asked
        expect_unavailable(
            endpoint, fast.policy.get, pb.GetRepositoryPolicyRequest(policy_id="nowhere", domain_id=domain), bound
        )

        fast.repository.deregister(rpb.RepositoryRequest(repository_id=repository.repository_id), timeout=10)
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            fast.policy.get,
            pb.GetRepositoryPolicyRequest(policy_id="nowhere", domain_id=domain),
        )
    finally:
        doomed.stop()
        if repository is not None:
            deregister(fast, repository.repository_id)


# -- TLS and the service token -----------------------------------------------------------------


class _RecordMetadata(grpc.ServerInterceptor):
    def __init__(self):
        self.seen: list[dict] = []

    def intercept_service(self, continuation, handler_call_details):
        self.seen.append(dict(handler_call_details.invocation_metadata))
        return continuation(handler_call_details)


def test_tls_remote_with_service_token(client, fast, tls_files, domain, remote, mongomock_only):
    """grpc+ssl:// to a TLS server trusted through remote_ca_file; remote_token sent as `token`."""
    recorder = _RecordMetadata()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[recorder, ErrorInterceptor()])
    policy_pb2_grpc.add_PolicyServicer_to_server(client.app.policy_api, server)
    repository_pb2_grpc.add_RepositoryServicer_to_server(client.app.repository_api, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(tls_files["key"], tls_files["cert"])]))
    server.start()
    repository = None
    try:
        create(client.policy, domain, "over-tls", "over tls")
        endpoint = f"grpc+ssl://localhost:{port}"
        repository = register(fast, unique("tls"), endpoint)
        assert repository.endpoint == endpoint
        fetched = get(fast.policy, domain, "over-tls", repository.repository_id)
        assert fetched.name == "over tls" and fetched.repository_info == repository
        assert recorder.seen and all(m.get("token") == REMOTE_TOKEN for m in recorder.seen)
        assert all(m.get("policyhub-remote-hop") == "1" for m in recorder.seen)
        # plaintext to the TLS server, TLS to the plaintext server: UNAVAILABLE, nothing stored
        for wrong in (f"grpc://127.0.0.1:{port}", f"grpc+ssl://127.0.0.1:{remote.port}"):
            expect_unavailable(
                wrong,
                fast.repository.register,
                rpb.CreateRepositoryRequest(name=unique("wrong"), repository_type="remote", endpoint=wrong),
                FAST_TIMEOUT + SLACK,
            )
    finally:
        if repository is not None:
            deregister(fast, repository.repository_id)
        server.stop(0)


# -- a remote whose answers do not convert -------------------------------------------------------


class _LocalRepository(repository_pb2_grpc.RepositoryServicer):
    """A remote's Repository API as far as registration asks it: one local repository."""

    def list(self, request, context):
        return rpb.RepositoriesInfo(
            results=[rpb.RepositoryInfo(repository_id="repo-remote-local", repository_type="local")], total_count=1
        )


class _NonFiniteRemote(policy_pb2_grpc.PolicyServicer):
    """Answers get/list with a policy tagged {"x": NaN} and stat with Infinity, until `fixed`."""

    def __init__(self, policy_id: str):
        self.policy_id = policy_id
        self.fixed = False
        self.calls = 0

    def _info(self) -> pb.PolicyInfo:
        self.calls += 1
        info = pb.PolicyInfo(policy_id=self.policy_id, name="remote", state=pb.PolicyInfo.ENABLED)
        info.tags.update({"x": "fine" if self.fixed else float("nan")})
        return info

    def get(self, request, context):
        if request.policy_id != self.policy_id:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such policy")
        return self._info()

    def list(self, request, context):
        return pb.PoliciesInfo(results=[self._info()], total_count=1)

    def stat(self, request, context):
        from google.protobuf import struct_pb2

        self.calls += 1
        answer = struct_pb2.Struct()
        answer.update({"results": [{"v": 1 if self.fixed else float("inf")}], "total_count": 1})
        return answer


def test_unconvertible_remote_answers_are_unavailable_never_internal(fast, domain, mongomock_only):
    """NaN / Infinity in a remote's Struct fields cannot become our records: UNAVAILABLE naming
    the endpoint (remote_code INVALID_RESPONSE), not cached, for every read that asks the remote."""
    policy_id = unique("nan-tag")
    servicer = _NonFiniteRemote(policy_id)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    policy_pb2_grpc.add_PolicyServicer_to_server(servicer, server)
    repository_pb2_grpc.add_RepositoryServicer_to_server(_LocalRepository(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    repository = None
    try:
        endpoint = f"grpc://127.0.0.1:{port}"
        repository = register(fast, unique("nan"), endpoint)  # registration asks the Repository API only
        servicer.calls = 0
        bound = FAST_TIMEOUT + SLACK
        by_repository = pb.GetRepositoryPolicyRequest(
            policy_id=policy_id, repository_id=repository.repository_id, domain_id=domain
        )
        searching = pb.GetRepositoryPolicyRequest(policy_id=policy_id, domain_id=domain)
        listing = pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id)
        stat = parse(
            pb.PolicyStatQuery,
            {"domain_id": domain, "repository_id": repository.repository_id, "query": {"distinct": "name"}},
        )
        for _ in range(2):  # a bad answer is not cached: asked again, UNAVAILABLE again
            for call, request, method in (
                (fast.policy.get, by_repository, "get"),
                (fast.policy.get, searching, "get"),
                (fast.policy.list, listing, "list"),
                (fast.policy.stat, stat, "stat"),
            ):
                error = expect_unavailable(endpoint, call, request, bound)
                assert dict(error_info(error).metadata)["remote_code"] == "INVALID_RESPONSE"
                assert f"unusable {method} answer" in error.details()
        assert servicer.calls == 8

        servicer.fixed = True  # the remote's next answers convert, and are served at once
        assert get(fast.policy, domain, policy_id, repository.repository_id).tags["x"] == "fine"
        assert get(fast.policy, domain, policy_id).repository_info.repository_id == repository.repository_id
        assert fast.policy.list(listing, timeout=15).total_count == 1
        assert as_dict(fast.policy.stat(stat, timeout=15))["results"] == [{"v": 1}]
    finally:
        if repository is not None:
            deregister(fast, repository.repository_id)
        server.stop(0)
