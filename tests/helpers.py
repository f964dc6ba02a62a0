"""Small helpers for API tests."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from policyhub._gen.spaceone.api.repository.v1 import (
    assignment_pb2,
    audit_pb2,
    bulk_pb2,
    change_pb2,
    group_pb2,
    policy_pb2,
    role_pb2,
)


def expect_error(code: grpc.StatusCode, call, request, **kwargs) -> grpc.RpcError:
    """Calls (within 10 s unless `timeout` says otherwise) and asserts the exact status code;
    returns the error for further checks."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, **{"timeout": 10, **kwargs})
    error = info.value
    assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()}"
    return error


def field_violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The status's ErrorInfo detail (empty when there is none)."""
    status = rpc_status.from_call(error)
    info = error_details_pb2.ErrorInfo()
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
    return info


def error_reason(error: grpc.RpcError) -> str:
    return error_info(error).reason


def parse(message_type, data: dict):
    """Builds a request from the JSON form (as grpcurl users write it)."""
    return json_format.ParseDict(data, message_type())


def as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def grant_policy(stub, domain: str, user: str, policy_id: str, metadata=()):
    """Assigns a policy to a user, as the caller the metadata names."""
    return stub.assignment.create(
        parse(
            assignment_pb2.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": user},
                "grant": {"type": "POLICY", "id": policy_id},
                "domain_id": domain,
            },
        ),
        metadata=metadata,
        timeout=10,
    )


def create_sets(stub, domain: str, groups=(), roles=(), metadata=()) -> None:
    """Creates groups and roles (name = id), as the caller the metadata names: an assignment may
    name only groups and roles that exist."""
    for group_id in groups:
        stub.group.create(
            group_pb2.CreateGroupRequest(group_id=group_id, name=group_id, domain_id=domain),
            metadata=metadata,
            timeout=10,
        )
    for role_id in roles:
        stub.role.create(
            role_pb2.CreateRoleRequest(role_id=role_id, name=role_id, domain_id=domain), metadata=metadata, timeout=10
        )


def expect_unavailable(endpoint: str, call, request, bound: float) -> grpc.RpcError:
    """UNAVAILABLE naming the endpoint (never INTERNAL, never a hang), within `bound` seconds."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=bound + 10)
    elapsed = time.monotonic() - started
    error = info.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE, f"{error.code()}: {error.details()}"
    assert endpoint in error.details()
    assert error.details().startswith("ERROR_UNAVAILABLE: remote repository ")
    assert error_reason(error) == "ERROR_UNAVAILABLE"
    assert error_info(error).metadata["endpoint"] == endpoint
    assert elapsed < bound, f"took {elapsed:.2f}s, bound {bound}s"
    return error


def allowed(client, domain: str, user: str, action: str = "a.read", metadata=()) -> bool:
    """Does `check` allow the user the action on resource `r`?"""
    result = client.assignment.check(
        parse(
            assignment_pb2.CheckRequest,
            {"subject": {"type": "USER", "id": user}, "action": action, "resource": "r", "domain_id": domain},
        ),
        metadata=metadata,
        timeout=10,
    )
    return result.decision == assignment_pb2.CheckResult.ALLOW


def without_token(answer):
    """A write's answer (a message or its dict) without its consistency token, which must be
    there: what a read of the same resource answers."""
    if isinstance(answer, dict):
        assert answer.get("consistency_token", "").startswith("ct1."), answer
        return {key: value for key, value in answer.items() if key != "consistency_token"}
    assert answer.consistency_token.startswith("ct1."), answer
    copy = type(answer)()
    copy.CopyFrom(answer)
    copy.ClearField("consistency_token")
    return copy


def outcomes(answer):
    """(subject id, outcome) of each item of an AssignmentChangesInfo answer (as a dict)."""
    return [(r["subject"]["id"], r["outcome"]) for r in answer.get("results", [])]


def create_policy(stub, domain, policy_id, permissions=(), statements=(), metadata=()):
    stub.policy.create(
        parse(
            policy_pb2.CreatePolicyRequest,
            {
                "policy_id": policy_id,
                "name": policy_id,
                "domain_id": domain,
                "permissions": list(permissions),
                "statements": list(statements),
            },
        ),
        metadata=metadata,
        timeout=10,
    )


def assign(stub, domain, subject_type, subject_id, grant_type, grant_id, metadata=()):
    return as_dict(
        stub.assignment.create(
            parse(
                assignment_pb2.CreateAssignmentRequest,
                {
                    "subject": {"type": subject_type, "id": subject_id},
                    "grant": {"type": grant_type, "id": grant_id},
                    "domain_id": domain,
                },
            ),
            metadata=metadata,
            timeout=10,
        )
    )


def edges(stub, domain, metadata=()) -> set[tuple[str, str, str, str]]:
    """(subject type, subject id, grant type, grant id) of every assignment of the domain."""
    found = stub.assignment.list(assignment_pb2.AssignmentQuery(domain_id=domain), metadata=metadata, timeout=10)
    assert found.total_count == len(found.results)
    return {
        (
            assignment_pb2.Subject.Type.Name(a.subject.type),
            a.subject.id,
            assignment_pb2.Grant.Type.Name(a.grant.type),
            a.grant.id,
        )
        for a in found.results
    }


def check_user(stub, domain, user, action, resource="r", metadata=()):
    return as_dict(
        stub.assignment.check(
            parse(
                assignment_pb2.CheckRequest,
                {"subject": {"type": "USER", "id": user}, "action": action, "resource": resource, "domain_id": domain},
            ),
            metadata=metadata,
            timeout=10,
        )
    )


def audits(stub, domain, metadata=(), **fields):
    """The domain's audit entries (as dicts) matching the AuditQuery fields."""
    found = stub.audit.list(audit_pb2.AuditQuery(domain_id=domain, **fields), metadata=metadata, timeout=10)
    return [as_dict(a) for a in found.results]


def bulk_export(stub, domain: str, metadata=()) -> tuple[dict, list[dict]]:
    """Bulk/export_domain: (the header, every item in order), as JSON dicts."""
    messages = list(
        stub.bulk.export_domain(bulk_pb2.ExportDomainRequest(domain_id=domain), metadata=metadata, timeout=30)
    )
    assert messages and messages[0].HasField("header"), messages
    items = [as_dict(item) for message in messages for item in message.items]
    return as_dict(messages[0].header), items


def bulk_import(stub, domain: str, items: list[dict], metadata=(), per_message: int = 50, **header) -> dict:
    """Bulk/import_domain of JSON items (as bulk_export gives them), `per_message` items per
    message after the header's; `header` fields: mode, dry_run, counts. Returns the answer as a dict."""
    return as_dict(
        stub.bulk.import_domain(bulk_stream(domain, items, per_message, **header), metadata=metadata, timeout=60)
    )


def bulk_stream(domain: str, items: list[dict], per_message: int = 50, **header):
    """The messages of an import: the header first, then the items in messages of `per_message`."""
    yield parse(bulk_pb2.BulkChunk, {"header": {"domain_id": domain, **header}})
    for start in range(0, len(items), per_message):
        yield parse(bulk_pb2.BulkChunk, {"items": items[start : start + per_message]})


def changes_after(stub, domain: str, after: str = "") -> tuple[list[tuple[str, str, str]], str]:
    """(kind, id, operation) of every change logged after the continuation token `after` (all
    kept, when empty), paging until caught up; and the token to read on from."""
    seen, token = [], after
    for _ in range(1000):
        page = stub.change.list(change_pb2.ChangeQuery(domain_id=domain, after=token), timeout=10)
        if page.continuation_token == token:  # caught up: `after` itself comes back
            return seen, token
        seen += [
            (
                change_pb2.ChangeInfo.Kind.Name(c.kind),
                c.id,
                change_pb2.ChangeInfo.Operation.Name(c.operation),
            )
            for c in page.results
        ]
        token = page.continuation_token
    raise AssertionError("the continuation token never stopped moving")


def audited(stub, domain: str, method: str) -> list[dict]:
    """The domain's audit entries of one method (all of them: at most a page of 1,000), as dicts."""
    query = {"filter": [{"k": "method", "v": method, "o": "eq"}], "page": {"limit": 1000}}
    found = stub.audit.list(parse(audit_pb2.AuditQuery, {"domain_id": domain, "query": query}), timeout=30)
    assert found.total_count == len(found.results)
    return [as_dict(a) for a in found.results]


def audited_ids(stub, domain: str, method: str) -> list[str]:
    """The resource ids of the domain's audit entries of one method."""
    return [entry["resource_id"] for entry in audited(stub, domain, method)]
