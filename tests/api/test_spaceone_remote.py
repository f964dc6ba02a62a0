"""A SpaceONE 1.12 repository service as a remote repository.

The remote is an in-test gRPC server that behaves like SpaceONE 1.12 on the calls federation
makes: `Repository.list {repository_type: local}` answers its local repository; Policy
`list`/`get`/`stat` require `repository_id` (INVALID_ARGUMENT `ERROR_REQUIRED_PARAMETER` without
it, NOT_FOUND for another id) and serve that repository's policies of the caller's domain.
"""

from __future__ import annotations

import re
import uuid
from concurrent import futures

import grpc
import pytest
from google.protobuf import struct_pb2

from helpers import as_dict, error_info, expect_error, expect_unavailable, parse
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2_grpc, repository_pb2_grpc
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as rpb

# SpaceONE's ids look like ours: `repo-` + 12 hex digits.
SPACEONE_LOCAL_ID = "repo-5e0c2b7d91aa"
REPO_ID_RE = re.compile(r"repo-[0-9a-f]{12}")
BOUND = 3 + 1.0  # the test server's remote_timeout_seconds, plus scheduling slack


class FakeSpaceONE:
    """Two policies per seeded domain in its local repository; `local_repository_id=None`: an
    installation without one. `stat_code`: the code stat answers with instead of a result."""

    def __init__(self, local_repository_id: str | None = SPACEONE_LOCAL_ID, stat_code: grpc.StatusCode | None = None):
        self.local_repository_id = local_repository_id
        self.stat_code = stat_code
        self.policies: list[pb.PolicyInfo] = []
        self.requests: list[tuple[str, object]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        repository_pb2_grpc.add_RepositoryServicer_to_server(_Repository(self), self.server)
        policy_pb2_grpc.add_PolicyServicer_to_server(_Policy(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def seed(self, domain: str) -> None:
        for policy_id, name in (("spaceone-viewer", "Viewer"), ("spaceone-admin", "Admin")):
            info = pb.PolicyInfo(
                policy_id=policy_id,
                name=name,
                state=pb.PolicyInfo.ENABLED,
                permissions=["inventory.*"],
                domain_id=domain,
                created_at="2023-05-01T10:00:00.123Z",
            )
            info.tags.update({"origin": "spaceone"})
            self.policies.append(info)

    def in_repository(self, request, context) -> list[pb.PolicyInfo]:
        """The request's repository's policies of its domain, after SpaceONE's checks."""
        self.requests.append((type(request).__name__, request))
        if not request.repository_id:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REQUIRED_PARAMETER: Required parameter. (key = repository_id)"
            )
        if request.repository_id != self.local_repository_id:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"ERROR_NOT_FOUND: Resource not found. (key = repository_id, value = {request.repository_id})",
            )
        return [info for info in self.policies if info.domain_id == request.domain_id]

    def stop(self) -> None:
        self.server.stop(0)


class _Repository(repository_pb2_grpc.RepositoryServicer):
    def __init__(self, remote: FakeSpaceONE):
        self.remote = remote

    def list(self, request, context):
        self.remote.requests.append(("RepositoryQuery", request))
        results = []
        if self.remote.local_repository_id and request.repository_type in ("", "local"):
            results.append(
                rpb.RepositoryInfo(
                    repository_id=self.remote.local_repository_id, name="Local Repository", repository_type="local"
                )
            )
        return rpb.RepositoriesInfo(results=results, total_count=len(results))


class _Policy(policy_pb2_grpc.PolicyServicer):
    def __init__(self, remote: FakeSpaceONE):
        self.remote = remote

    def get(self, request, context):
        for info in self.remote.in_repository(request, context):
            if info.policy_id == request.policy_id:
                return info
        context.abort(grpc.StatusCode.NOT_FOUND, f"ERROR_NOT_FOUND: (key = policy_id, value = {request.policy_id})")

    def list(self, request, context):
        found = [
            info
            for info in self.remote.in_repository(request, context)
            if not request.policy_id or info.policy_id == request.policy_id
        ]
        return pb.PoliciesInfo(results=found, total_count=len(found))

    def stat(self, request, context):
        found = self.remote.in_repository(request, context)
        if self.remote.stat_code is not None:
            context.abort(self.remote.stat_code, "not supported here")
        answer = struct_pb2.Struct()
        answer.update({"results": [{"policies": len(found)}]})
        return answer


@pytest.fixture
def spaceone():
    remote = FakeSpaceONE()
    yield remote
    remote.stop()


def register(client, endpoint: str) -> rpb.RepositoryInfo:
    return client.repository.register(
        rpb.CreateRepositoryRequest(
            name=f"spaceone-{uuid.uuid4().hex[:8]}", repository_type="remote", endpoint=endpoint
        ),
        timeout=15,
    )


def deregister(client, repository_id: str) -> None:
    client.repository.deregister(rpb.RepositoryRequest(repository_id=repository_id), timeout=10)


def test_the_fake_refuses_policy_calls_without_repository_id(spaceone, domain):
    """What registering SpaceONE with a bare Policy.list ran into: the fake is SpaceONE-strict."""
    spaceone.seed(domain)
    with grpc.insecure_channel(f"127.0.0.1:{spaceone.port}") as channel:
        stub = policy_pb2_grpc.PolicyStub(channel)
        for call, request in (
            (stub.list, pb.PolicyQuery(domain_id=domain)),
            (stub.get, pb.GetRepositoryPolicyRequest(policy_id="spaceone-viewer", domain_id=domain)),
        ):
            error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, call, request)
            assert "ERROR_REQUIRED_PARAMETER" in error.details() and "repository_id" in error.details()


def test_a_spaceone_repository_service_is_a_remote(client, spaceone, domain):
    spaceone.seed(domain)
    repository = register(client, spaceone.endpoint)
    try:
        # our own id (unique here), the remote's local repository beside it
        assert REPO_ID_RE.fullmatch(repository.repository_id) and repository.repository_id != SPACEONE_LOCAL_ID
        assert repository.remote_repository_id == SPACEONE_LOCAL_ID
        stored = client.repository.get(rpb.GetRepositoryRequest(repository_id=repository.repository_id), timeout=10)
        assert stored == repository
        kind, asked = spaceone.requests[0]
        assert (kind, asked.repository_type) == ("RepositoryQuery", "local")

        fetched = client.policy.get(
            pb.GetRepositoryPolicyRequest(
                policy_id="spaceone-viewer", repository_id=repository.repository_id, domain_id=domain
            ),
            timeout=15,
        )
        assert (fetched.name, fetched.permissions, as_dict(fetched)["tags"]) == (
            "Viewer",
            ["inventory.*"],
            {"origin": "spaceone"},
        )
        assert fetched.repository_info == repository and fetched.created_at == "2023-05-01T10:00:00.123Z"
        # without repository_id: neither local nor managed, so found in the remote
        unqualified = client.policy.get(pb.GetRepositoryPolicyRequest(policy_id="spaceone-admin", domain_id=domain))
        assert unqualified.repository_info == repository
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            client.policy.get,
            pb.GetRepositoryPolicyRequest(
                policy_id="nowhere", repository_id=repository.repository_id, domain_id=domain
            ),
        )

        listed = client.policy.list(
            pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id), timeout=15
        )
        assert listed.total_count == 2
        assert sorted(p.policy_id for p in listed.results) == ["spaceone-admin", "spaceone-viewer"]
        assert all(p.repository_info == repository for p in listed.results)
        stat = client.policy.stat(
            parse(
                pb.PolicyStatQuery,
                {"domain_id": domain, "repository_id": repository.repository_id, "query": {"distinct": "name"}},
            ),
            timeout=15,
        )
        assert as_dict(stat)["results"] == [{"policies": 2}]

        # every Policy call named the remote's local repository and the caller's domain
        policy_calls = [request for kind, request in spaceone.requests if kind != "RepositoryQuery"]
        assert len(policy_calls) >= 4
        assert all((r.repository_id, r.domain_id) == (SPACEONE_LOCAL_ID, domain) for r in policy_calls)
    finally:
        deregister(client, repository.repository_id)


def test_a_remote_without_a_local_repository_is_refused(client):
    remote = FakeSpaceONE(local_repository_id=None)
    try:
        name = f"empty-{uuid.uuid4().hex[:8]}"
        error = expect_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            client.repository.register,
            rpb.CreateRepositoryRequest(name=name, repository_type="remote", endpoint=remote.endpoint),
        )
        assert remote.endpoint in error.details() and "no local repository" in error.details()
        assert dict(error_info(error).metadata)["endpoint"] == remote.endpoint
        assert client.repository.list(rpb.RepositoryQuery(name=name), timeout=10).total_count == 0
    finally:
        remote.stop()


@pytest.mark.parametrize("code", [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT])
def test_a_remote_refusing_stat_is_unavailable_naming_it(client, domain, code):
    remote = FakeSpaceONE(stat_code=code)
    remote.seed(domain)
    repository = register(client, remote.endpoint)
    try:
        error = expect_unavailable(
            remote.endpoint,
            client.policy.stat,
            parse(
                pb.PolicyStatQuery,
                {"domain_id": domain, "repository_id": repository.repository_id, "query": {"distinct": "name"}},
            ),
            BOUND,
        )
        assert dict(error_info(error).metadata)["remote_code"] == code.name
        assert f"answered {code.name}" in error.details()
        # the remote's other calls still work
        listed = client.policy.list(
            pb.PolicyQuery(domain_id=domain, repository_id=repository.repository_id), timeout=15
        )
        assert listed.total_count == 2
    finally:
        deregister(client, repository.repository_id)
        remote.stop()
