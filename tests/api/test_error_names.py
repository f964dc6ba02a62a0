"""Every error carries SpaceONE's name for its condition in ErrorInfo.metadata["spaceone_error"]
(our own name where SpaceONE has none or the same), next to our gRPC code and ERROR_<NAME>."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from helpers import error_info, expect_error, parse
from policyhub._gen.spaceone.api.repository.v1 import policy_pb2 as pb
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as rpb
from policyhub.api.errors import ErrorInterceptor

Code = grpc.StatusCode


def list_filter(operator: str):
    """A policy list whose only filter gives `operator` the scalar "a"."""
    return lambda d: parse(
        pb.PolicyQuery, {"domain_id": d, "query": {"filter": [{"k": "name", "v": "a", "o": operator}]}}
    )


# (condition, stub, method, request of the domain, code, ErrorInfo.reason, spaceone_error)
CASES = [
    ("missing policy", "policy", "get", lambda d: pb.GetRepositoryPolicyRequest(policy_id="nope", domain_id=d),
     Code.NOT_FOUND, "ERROR_NOT_FOUND", "ERROR_NO_POLICY"),
    ("missing repository", "repository", "get", lambda d: rpb.GetRepositoryRequest(repository_id="repo-nope"),
     Code.NOT_FOUND, "ERROR_NOT_FOUND", "ERROR_NOT_FOUND"),
    ("duplicate policy", "policy", "create", lambda d: pb.CreatePolicyRequest(policy_id="taken", name="n", domain_id=d),
     Code.ALREADY_EXISTS, "ERROR_ALREADY_EXISTS", "ERROR_SAVE_UNIQUE_VALUES"),
    ("duplicate repository name", "repository", "update",
     lambda d: rpb.UpdateRepositoryRequest(repository_id="repo-local", name="Managed Repository"),
     Code.ALREADY_EXISTS, "ERROR_ALREADY_EXISTS", "ERROR_SAVE_UNIQUE_VALUES"),
    ("bad policy_id", "policy", "get", lambda d: pb.GetRepositoryPolicyRequest(policy_id="Bad_Id", domain_id=d),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_INVALID_POLICY_ID_FORMAT"),
    ("bad repository_type", "repository", "register",
     lambda d: rpb.CreateRepositoryRequest(name="r", repository_type="git"),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_INVALID_REPOSITORY_TYPE"),
    ("rename the managed repository", "repository", "update",
     lambda d: rpb.UpdateRepositoryRequest(repository_id="repo-managed", name="x"),
     Code.FAILED_PRECONDITION, "ERROR_MANAGED_RESOURCE_READ_ONLY", "ERROR_NOT_UPDATE_MANAGED_REPOSITORY"),
    ("register a managed repository", "repository", "register",
     lambda d: rpb.CreateRepositoryRequest(name="r", repository_type="managed"),
     Code.FAILED_PRECONDITION, "ERROR_FAILED_PRECONDITION", "ERROR_MANAGED_REPOSITORY_ALREADY_EXIST"),
    ("in with a scalar", "policy", "list", list_filter("in"),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_OPERATOR_LIST_VALUE_TYPE"),
    ("not_in with a scalar", "policy", "list", list_filter("not_in"),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_OPERATOR_LIST_VALUE_TYPE"),
    ("contain_in with a scalar", "policy", "list", list_filter("contain_in"),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_OPERATOR_LIST_VALUE_TYPE"),
    ("regex_in with a scalar", "policy", "list", list_filter("regex_in"),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_OPERATOR_LIST_VALUE_TYPE"),
    ("unknown operator", "policy", "list", list_filter("nope"),
     Code.INVALID_ARGUMENT, "ERROR_INVALID_PARAMETER", "ERROR_INVALID_PARAMETER"),
    ("missing policy_id", "policy", "get", lambda d: pb.GetRepositoryPolicyRequest(domain_id=d),
     Code.INVALID_ARGUMENT, "ERROR_REQUIRED_PARAMETER", "ERROR_REQUIRED_PARAMETER"),
    ("change a managed policy", "policy", "update",
     lambda d: pb.UpdatePolicyRequest(policy_id="managed-read-only", name="x", domain_id=d),
     Code.FAILED_PRECONDITION, "ERROR_MANAGED_RESOURCE_READ_ONLY", "ERROR_MANAGED_RESOURCE_READ_ONLY"),
    ("deregister a built-in repository", "repository", "deregister",
     lambda d: rpb.RepositoryRequest(repository_id="repo-local"),
     Code.FAILED_PRECONDITION, "ERROR_FAILED_PRECONDITION", "ERROR_FAILED_PRECONDITION"),
    ("stale etag", "policy", "update",
     lambda d: pb.UpdatePolicyRequest(policy_id="taken", name="x", domain_id=d, etag="stale"),
     Code.ABORTED, "ERROR_ETAG_MISMATCH", "ERROR_ETAG_MISMATCH"),
]  # fmt: skip


@pytest.mark.parametrize(
    "stub, method, request_of, code, reason, spaceone_error", [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_error_carries_spaceone_name(client, domain, stub, method, request_of, code, reason, spaceone_error):
    client.policy.create(pb.CreatePolicyRequest(policy_id="taken", name="n", domain_id=domain), timeout=10)
    error = expect_error(code, getattr(getattr(client, stub), method), request_of(domain))
    info = error_info(error)
    assert (info.reason, info.metadata["spaceone_error"]) == (reason, spaceone_error)
    assert error.details().startswith(f"{reason}: ")


def test_authentication_and_permission_errors_carry_spaceone_name(secure, domain):
    request = pb.GetRepositoryPolicyRequest(policy_id="managed-read-only", domain_id=domain)
    error = expect_error(Code.UNAUTHENTICATED, secure.policy.get, request)
    assert error_info(error).metadata["spaceone_error"] == "ERROR_AUTHENTICATE_FAILURE"
    outsider = secure.metadata("bob", did=domain, rol="USER")
    error = expect_error(
        Code.PERMISSION_DENIED,
        secure.policy.create,
        pb.CreatePolicyRequest(policy_id="p", name="n", domain_id=domain),
        metadata=outsider,
    )
    assert error_info(error).metadata["spaceone_error"] == "ERROR_PERMISSION_DENIED"


def test_a_bug_is_internal_with_no_details_but_the_names():
    def broken(request, context):
        raise ZeroDivisionError("secret internals")

    handler = grpc.method_handlers_generic_handler(
        "test.Broken", {"call": grpc.unary_unary_rpc_method_handler(broken, bytes, bytes)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), interceptors=[ErrorInterceptor()])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            error = expect_error(Code.INTERNAL, channel.unary_unary("/test.Broken/call"), b"")
    finally:
        server.stop(0)
    assert error.details() == "ERROR_UNKNOWN: internal error; see the server log"
    info = error_info(error)
    assert (info.reason, dict(info.metadata)) == ("ERROR_UNKNOWN", {"spaceone_error": "ERROR_UNKNOWN"})
