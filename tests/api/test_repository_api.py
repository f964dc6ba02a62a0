"""Repository API: the built-in repositories and the rules around them."""

from __future__ import annotations

import grpc
import pytest

from helpers import as_dict, error_reason, expect_error, field_violations, parse
from policyhub._gen.spaceone.api.core.v1 import query_pb2
from policyhub._gen.spaceone.api.repository.v1 import audit_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import repository_pb2 as pb


def test_managed_and_local_repositories_exist_from_first_start(client):
    listed = client.repository.list(pb.RepositoryQuery(), timeout=10)
    by_id = {r.repository_id: r for r in listed.results}
    assert by_id["repo-managed"].repository_type == "managed"
    assert by_id["repo-local"].repository_type == "local"
    assert listed.total_count == len(listed.results) >= 2


def test_get_and_only(client):
    got = client.repository.get(pb.GetRepositoryRequest(repository_id="repo-managed", only=["name"]), timeout=10)
    assert as_dict(got) == {"name": "Managed Repository"}
    expect_error(grpc.StatusCode.NOT_FOUND, client.repository.get, pb.GetRepositoryRequest(repository_id="repo-x"))
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.repository.get, pb.GetRepositoryRequest())
    assert field_violations(error) == ["repository_id"]


def test_list_filters_by_type(client):
    listed = client.repository.list(pb.RepositoryQuery(repository_type="managed"), timeout=10)
    assert [r.repository_id for r in listed.results] == ["repo-managed"]


@pytest.mark.parametrize(
    "request_fields, code, field",
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"repository_type": "remote"}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"name": "r"}, grpc.StatusCode.INVALID_ARGUMENT, "repository_type"),
        ({"name": "r", "repository_type": "git"}, grpc.StatusCode.INVALID_ARGUMENT, "repository_type"),
        ({"name": "x" * 256, "repository_type": "local"}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"name": "r", "repository_type": "managed"}, grpc.StatusCode.FAILED_PRECONDITION, None),
        ({"name": "r", "repository_type": "remote"}, grpc.StatusCode.INVALID_ARGUMENT, "endpoint"),
        (
            {"name": "r", "repository_type": "remote", "endpoint": "http://127.0.0.1:1"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "endpoint",
        ),
        (
            {"name": "r", "repository_type": "remote", "endpoint": "grpc://127.0.0.1:1"},
            grpc.StatusCode.UNAVAILABLE,
            None,
        ),
    ],
)
def test_register_rules(client, request_fields, code, field):
    error = expect_error(code, client.repository.register, pb.CreateRepositoryRequest(**request_fields))
    if field:
        assert field_violations(error) == [field]


def test_registering_the_local_repository_answers_the_built_in_one(client, domain):
    """SpaceONE deployments register their local repository at first start; doing so again
    (each restart) must keep working and keep the same repository."""
    original = client.repository.get(pb.GetRepositoryRequest(repository_id="repo-local"), timeout=10)
    register = client.repository.register
    try:
        first = register(pb.CreateRepositoryRequest(name="Ours", repository_type="local", domain_id=domain))
        again = register(pb.CreateRepositoryRequest(name="Ours", repository_type="local", domain_id=domain))
        unnamed = register(pb.CreateRepositoryRequest(repository_type="local", domain_id=domain))
        assert first.repository_id == again.repository_id == unnamed.repository_id == "repo-local"
        assert first.repository_type == "local" and first.name == again.name == unnamed.name == "Ours"
        assert first.created_at == original.created_at
        listed = client.repository.list(pb.RepositoryQuery(repository_type="local"), timeout=10)
        assert [r.repository_id for r in listed.results] == ["repo-local"]
        # Only the rename is audited; registering under the current name changes nothing.
        entries = client.audit.list(apb.AuditQuery(domain_id=domain, resource_id="repo-local"), timeout=10).results
        assert [(e.method, e.before["name"], e.after["name"]) for e in entries] == [
            ("repository.Repository.register", original.name, "Ours")
        ]
        error = expect_error(
            grpc.StatusCode.ALREADY_EXISTS,
            register,
            pb.CreateRepositoryRequest(name="Managed Repository", repository_type="local"),
        )
        assert error_reason(error) == "ERROR_ALREADY_EXISTS"
    finally:
        client.repository.update(pb.UpdateRepositoryRequest(repository_id="repo-local", name=original.name))


def test_built_in_repositories_cannot_be_deregistered_or_managed_renamed(client):
    for repository_id in ("repo-managed", "repo-local"):
        expect_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            client.repository.deregister,
            pb.RepositoryRequest(repository_id=repository_id),
        )
    expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.repository.update,
        pb.UpdateRepositoryRequest(repository_id="repo-managed", name="x"),
    )
    expect_error(grpc.StatusCode.NOT_FOUND, client.repository.deregister, pb.RepositoryRequest(repository_id="nope"))


def test_local_repository_can_be_renamed(client):
    original = client.repository.get(pb.GetRepositoryRequest(repository_id="repo-local")).name
    try:
        renamed = client.repository.update(pb.UpdateRepositoryRequest(repository_id="repo-local", name="Ours"))
        assert renamed.name == "Ours"
        error = expect_error(
            grpc.StatusCode.ALREADY_EXISTS,
            client.repository.update,
            pb.UpdateRepositoryRequest(repository_id="repo-local", name="Managed Repository"),
        )
        assert error.details().startswith("ERROR_ALREADY_EXISTS")
    finally:
        client.repository.update(pb.UpdateRepositoryRequest(repository_id="repo-local", name=original))


def test_stat_counts_by_type(client):
    query = parse(
        query_pb2.StatisticsQuery,
        {
            "aggregate": [
                {
                    "group": {
                        "keys": [{"key": "repository_type", "name": "type"}],
                        "fields": [{"operator": "count", "name": "n"}],
                    }
                },
                {"sort": {"key": "type"}},
            ]
        },
    )
    result = as_dict(client.repository.stat(pb.RepositoryStatQuery(query=query), timeout=10))
    assert result["results"] == [{"type": "local", "n": 1}, {"type": "managed", "n": 1}]


def test_stat_requires_a_query(client):
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.repository.stat, pb.RepositoryStatQuery())
    assert field_violations(error) == ["query"]
